#!/usr/bin/env python3
"""Stand-in for Entra ID: an RSA key made here, its key set served on loopback, one token.

    python jwks.py --port 8092 --token-out WORK/token.txt --settings-out WORK/aad.env

Writes one valid v1 Secure Webhook token (as Entra issues it to Azure Monitor's AzNS app,
role ActionGroupsSecureWebhook, 3 h lifetime) and the AAD_* settings that make the app
accept it, then serves {"keys": [...]} at http://127.0.0.1:PORT/keys until SIGTERM. The app
fetches the key set once per process and caches it, so this server idles during the load.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AZNS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"  # Azure Monitor's AzNS AAD Webhook app
TENANT = "5b1a7e2c-9f3d-4c1e-8a2b-0d6f4e3c2b1a"  # made up for the benchmark
AUDIENCE = "api://peer-bench-secure-export"
ROLE = "ActionGroupsSecureWebhook"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-out", required=True)
    ap.add_argument("--settings-out", required=True)
    args = ap.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig", x5t=kid)
    body = json.dumps({"keys": [jwk]}).encode()

    now = int(time.time())
    claims = {
        "aud": AUDIENCE,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3 * 3600,
        "appid": AZNS_APP_ID,
        "appidacr": "2",
        "idp": f"https://sts.windows.net/{TENANT}/",
        "oid": str(uuid.uuid4()),
        "roles": [ROLE],
        "sub": str(uuid.uuid4()),
        "tid": TENANT,
        "uti": uuid.uuid4().hex[:22],
        "ver": "1.0",
    }
    token = jwt.encode(
        claims, key, algorithm="RS256", headers={"kid": kid, "x5t": kid, "typ": "JWT"}
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.split("?")[0].endswith("/keys") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    with open(args.token_out, "w") as f:
        f.write(token + "\n")
    with open(args.settings_out, "w") as f:
        f.write(f"export AAD_TENANT_IDS='{TENANT}'\n")
        f.write(f"export AAD_AUDIENCES='{AUDIENCE}'\n")
        f.write(f"export AAD_ALLOWED_CALLER_APP_IDS='{AZNS_APP_ID}'\n")
        f.write(f"export AAD_REQUIRED_ROLE='{ROLE}'\n")
        f.write(f"export AAD_JWKS_URI='http://127.0.0.1:{args.port}/keys'\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
