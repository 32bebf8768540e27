"""Mint Secure Webhook and API tokens for local development, signed by a local key.

    .venv/bin/python scripts/mint_token.py                  # token on stdout, settings on stderr
    .venv/bin/python scripts/mint_token.py --role WorkItems.ReadWrite --app-id <any client id>
    .venv/bin/python scripts/mint_token.py --version 2 --audience <client id>
    .venv/bin/python scripts/mint_token.py --serve          # also serve the key set

The first run creates an RSA-2048 key in .local-dev/ (kept out of git; LOCAL_DEV_DIR or
--dir to use another folder) and writes the matching key set there; later runs reuse them.
``--serve`` publishes that key set at http://127.0.0.1:<port>/discovery/v2.0/keys (any path
ending in /keys) until stopped. Tenant, audience and key URL default to the app's settings
as Core Tools would see them: the environment, then local.settings.json, then
local.settings.json.example, so the settings printed below the token are that file's when
nothing was changed. The app verifies these tokens exactly like Entra's, with every check
in place. Nothing here, and no setting, turns verification off; never set AAD_JWKS_URI in
Azure.

    TOKEN=$(.venv/bin/python scripts/mint_token.py)
    curl -i -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
         --data @samples/metric-alert-static-fired.json http://localhost:7071/api/alerts
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
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The app's own defaults, so tokens match its settings.
from shared.config import AZNS_AAD_WEBHOOK_APP_ID, DEFAULT_AUTHORITY_HOST, DEFAULT_REQUIRED_ROLE

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DIR = Path(os.environ.get("LOCAL_DEV_DIR") or ROOT / ".local-dev")
DEFAULT_PORT = 7072
JWKS_PATH = "/discovery/v2.0/keys"
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


def serve(jwks_path: Path, port: int) -> int:
    body = jwks_path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?", 1)[0].endswith("/keys")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b'{"error":"not found"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per key fetch is noise

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        print(f"cannot serve the key set on 127.0.0.1:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = int(server.server_address[1])
    print(
        f"serving {jwks_path.name} at http://127.0.0.1:{port}{JWKS_PATH} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def app_settings() -> dict[str, str]:
    """The app's settings as Core Tools gives them to it: local.settings.json "Values" (the
    example when there is none yet), each overridden by a non-empty environment variable."""
    path = ROOT / "local.settings.json"
    if not path.exists():
        path = ROOT / "local.settings.json.example"
    values = {k: str(v) for k, v in json.loads(path.read_text())["Values"].items()}
    values.update({k: v for k, v in os.environ.items() if k in values and v})
    return values


def _listed(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _jwks_port(uri: str) -> int:
    """The port of a loopback AAD_JWKS_URI (the key server's); the default otherwise."""
    parts = urlsplit(uri)
    if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
        return parts.port
    return DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Mint a Secure Webhook token signed by a local key (local development).",
    )
    configured = app_settings()
    tenants = _listed(configured.get("AAD_TENANT_IDS", ""))
    audiences = _listed(configured.get("AAD_AUDIENCES", ""))
    parser.add_argument(
        "--tenant", default=tenants[0] if tenants else None, help="default: AAD_TENANT_IDS[0]"
    )
    parser.add_argument(
        "--audience",
        default=audiences[0] if audiences else None,
        help="v1: Application ID URI or client id; v2: the client id (default: AAD_AUDIENCES[0])",
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
        default=configured.get("AAD_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST,
        help="for the v2 issuer",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="key and key set folder")
    parser.add_argument(
        "--port",
        type=int,
        default=_jwks_port(configured.get("AAD_JWKS_URI", "")),
        help="port for --serve (default: AAD_JWKS_URI's; 0: any free one)",
    )
    parser.add_argument("--serve", action="store_true", help="serve the key set after minting")
    args = parser.parse_args(argv)
    args.role = [r for r in (args.role or [DEFAULT_REQUIRED_ROLE]) if r]
    if not args.tenant or not args.audience:
        parser.error("no tenant or audience: set AAD_TENANT_IDS and AAD_AUDIENCES, or pass them")

    key = load_or_create_key(args.dir)
    jwk = public_jwk(key)
    jwks_path = write_jwks(args.dir, jwk)
    token = jwt.encode(
        claims_for(args, int(time.time())), key, algorithm="RS256", headers={"kid": jwk["kid"]}
    )
    print(token)

    # The configured lists when they hold these values, so an unchanged setup prints
    # local.settings.json(.example)'s own lines.
    settings = {
        "AAD_TENANT_IDS": ",".join(tenants) if args.tenant in tenants else args.tenant,
        "AAD_AUDIENCES": ",".join(audiences) if args.audience in audiences else args.audience,
        "AAD_JWKS_URI": f"http://127.0.0.1:{args.port}{JWKS_PATH}",
    }
    if args.serve:
        return serve(jwks_path, args.port)
    print(
        'local.settings.json "Values" these tokens verify with (scripts/start serves the keys):',
        file=sys.stderr,
    )
    for name, value in settings.items():
        print(f'    "{name}": "{value}",', file=sys.stderr)
    if args.version == "2" and args.audience.startswith("api://"):
        print("note: Entra v2 tokens carry the client id as aud, not the URI", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
