"""Mint Secure Webhook tokens for local development, signed by a local key.

    .venv/bin/python scripts/mint_token.py                  # token on stdout, settings on stderr
    .venv/bin/python scripts/mint_token.py --version 2 --audience <client id>
    .venv/bin/python scripts/mint_token.py --serve          # also serve the key set

The first run creates an RSA-2048 key in .local-dev/signing-key.pem (kept out of git) and
writes the matching key set to .local-dev/jwks.json; later runs reuse them. ``--serve``
publishes that key set at http://127.0.0.1:<port>/keys until Ctrl-C. Point the app at it
with AAD_JWKS_URI in local.settings.json (printed below the token): the app then verifies
these tokens exactly like Entra's, with every check in place. Nothing here, and no setting,
turns verification off; never set AAD_JWKS_URI in Azure.

    TOKEN=$(.venv/bin/python scripts/mint_token.py)
    curl -i -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
         --data @alert.json http://localhost:7071/api/alerts
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The app's own defaults, so tokens match its settings.
from shared.config import AZNS_AAD_WEBHOOK_APP_ID, DEFAULT_AUTHORITY_HOST, DEFAULT_REQUIRED_ROLE

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DIR = ROOT / ".local-dev"
DEFAULT_PORT = 7072
DEV_TENANT = "00000000-0000-4000-8000-000000000001"
DEV_AUDIENCE = "api://itsm-receiver-local"
DEV_OBJECT_ID = "00000000-0000-4000-8000-0000000000a2"  # stands for the AzNS SP


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_key(directory: Path) -> rsa.RSAPrivateKey:
    path = directory / "signing-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SystemExit(f"{path} is not an RSA private key; delete it to start over")
        return key
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    print(
        f"created {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr
    )
    return key


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    # RFC 7638 thumbprint: a kid that stays the same for the same key.
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


def write_jwks(directory: Path, jwk: dict[str, Any]) -> Path:
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    return path


def claims_for(args: argparse.Namespace, now: int) -> dict[str, Any]:
    tenant = args.tenant
    claims: dict[str, Any] = {
        "aud": args.audience,
        "iat": now,
        "nbf": now,
        "exp": now + args.lifetime,
        "oid": DEV_OBJECT_ID,
        "sub": DEV_OBJECT_ID,
        "tid": tenant,
        "uti": uuid.uuid4().hex[:22],
    }
    if args.role:
        claims["roles"] = args.role
    if args.version == "1":
        claims.update(
            iss=f"https://sts.windows.net/{tenant}/",
            appid=args.app_id,
            appidacr="2",
            ver="1.0",
        )
    else:
        claims.update(
            iss=f"{args.authority.rstrip('/')}/{tenant}/v2.0",
            azp=args.app_id,
            azpacr="2",
            ver="2.0",
        )
    return claims


def serve(jwks_path: Path, port: int) -> None:
    body = jwks_path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?", 1)[0].endswith("/keys")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b'{"error":"not found"}')

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(
        f"serving {jwks_path.name} at http://127.0.0.1:{port}/keys (Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _first(env_name: str, default: str) -> str:
    values = [v.strip() for v in os.environ.get(env_name, "").split(",") if v.strip()]
    return values[0] if values else default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mint a Secure Webhook token signed by a local key (local development).",
    )
    parser.add_argument("--tenant", default=_first("AAD_TENANT_IDS", DEV_TENANT))
    parser.add_argument(
        "--audience",
        default=_first("AAD_AUDIENCES", DEV_AUDIENCE),
        help="v1: Application ID URI or client id; v2: the client id",
    )
    parser.add_argument("--version", choices=("1", "2"), default="1", help="token version")
    parser.add_argument("--app-id", default=AZNS_AAD_WEBHOOK_APP_ID, help="caller app id")
    parser.add_argument(
        "--role",
        action="append",
        help=f"app role (repeatable; default {DEFAULT_REQUIRED_ROLE}); --role '' for none",
    )
    parser.add_argument("--lifetime", type=int, default=3600, help="seconds")
    parser.add_argument(
        "--authority",
        default=os.environ.get("AAD_AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST),
        help="for the v2 issuer",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="key and key set folder")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port for --serve")
    parser.add_argument("--serve", action="store_true", help="serve the key set after minting")
    args = parser.parse_args(argv)
    args.role = [r for r in (args.role or [DEFAULT_REQUIRED_ROLE]) if r]

    key = load_or_create_key(args.dir)
    jwk = public_jwk(key)
    jwks_path = write_jwks(args.dir, jwk)
    token = jwt.encode(
        claims_for(args, int(time.time())), key, algorithm="RS256", headers={"kid": jwk["kid"]}
    )
    print(token)

    settings = {
        "AAD_TENANT_IDS": args.tenant,
        "AAD_AUDIENCES": args.audience,
        "AAD_JWKS_URI": f"http://127.0.0.1:{args.port}/keys",
    }
    print(
        '\nlocal.settings.json "Values" for these tokens (run with --serve to publish the keys):',
        file=sys.stderr,
    )
    for name, value in settings.items():
        print(f'    "{name}": "{value}",', file=sys.stderr)
    if args.version == "2" and args.audience.startswith("api://"):
        print("note: Entra v2 tokens carry the client id as aud, not the URI", file=sys.stderr)
    if args.serve:
        serve(jwks_path, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
