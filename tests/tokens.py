"""Mint Entra-shaped access tokens with keys made in the test run (no network, no Entra).

    key = SigningKey.generate()
    token = key.sign(v1_claims(now=clock()))                     # valid v1 AzNS token
    token = key.sign(v2_claims(tenant_id=TENANT_B, roles=[]))    # v2, no role
    token = key.sign(v1_claims(exp=DELETE))                      # claim removed
    forge_none(v1_claims()), forge_hs256(claims, key.public_pem(), kid=key.kid)

Claims builders take overrides as keyword arguments; ``DELETE`` removes a claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from jwt.algorithms import RSAAlgorithm

from shared.config import AZNS_AAD_WEBHOOK_APP_ID, DEFAULT_REQUIRED_ROLE

TENANT_A = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
TENANT_B = "0b7e1c5a-3f2d-4e8a-9c6b-1d2e3f4a5b6c"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"  # never configured
CLIENT_ID = "8e4c2d1b-6a5f-4b3e-9d8c-7f6e5d4c3b2a"  # our app registration
AUDIENCE_URI = "api://itsm-receiver-test"  # its Application ID URI
AZNS_APP_ID = AZNS_AAD_WEBHOOK_APP_ID
AZNS_OBJECT_ID = "3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4"  # AzNS SP in our tenant
OTHER_APP_ID = "99999999-8888-7777-6666-555555555555"
ROLE = DEFAULT_REQUIRED_ROLE
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
LIFETIME = 3600
# What the ``verifier`` fixture uses: short, so tests move a FakeClock instead of sleeping.
TEST_REFRESH_INTERVAL = 1.0
TEST_FAILURE_BACKOFF = 1.0


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()  # pass as a claim override to remove the claim


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def v1_issuer(tenant_id: str, sts_host: str = "sts.windows.net") -> str:
    return f"https://{sts_host}/{tenant_id}/"


def v2_issuer(tenant_id: str, authority: str = DEFAULT_AUTHORITY) -> str:
    return f"{authority}/{tenant_id}/v2.0"


def _apply(claims: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for name, value in overrides.items():
        if value is DELETE:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def v1_claims(
    *,
    tenant_id: str = TENANT_A,
    audience: str = AUDIENCE_URI,
    app_id: str = AZNS_APP_ID,
    roles: list[str] | None = None,
    now: float | None = None,
    lifetime: int = LIFETIME,
    issuer: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Claims of a v1 app-only token as Entra issues it to the AzNS service principal."""
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuer or v1_issuer(tenant_id),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "aio": "E2RgYJg" + "x" * 80,
        "appid": app_id,
        "appidacr": "2",
        "idp": v1_issuer(tenant_id),
        "oid": AZNS_OBJECT_ID,
        "rh": "0.AXEAv4j5cvGGr0GRqy180BHbRw" + "y" * 30,
        "roles": [ROLE] if roles is None else roles,
        "sub": AZNS_OBJECT_ID,
        "tid": tenant_id,
        "uti": uuid.uuid4().hex[:22],  # makes every minted token distinct
        "ver": "1.0",
    }
    return _apply(claims, {"roles": roles, **overrides} if roles is DELETE else overrides)


def v2_claims(
    *,
    tenant_id: str = TENANT_A,
    audience: str = CLIENT_ID,
    app_id: str = AZNS_APP_ID,
    roles: list[str] | None = None,
    now: float | None = None,
    lifetime: int = LIFETIME,
    issuer: str | None = None,
    authority: str = DEFAULT_AUTHORITY,
    **overrides: Any,
) -> dict[str, Any]:
    """Claims of a v2 app-only token (app manifest requestedAccessTokenVersion = 2)."""
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuer or v2_issuer(tenant_id, authority),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "aio": "E2RgYJg" + "x" * 80,
        "azp": app_id,
        "azpacr": "2",
        "oid": AZNS_OBJECT_ID,
        "rh": "0.AXEAv4j5cvGGr0GRqy180BHbRw" + "y" * 30,
        "roles": [ROLE] if roles is None else roles,
        "sub": AZNS_OBJECT_ID,
        "tid": tenant_id,
        "uti": uuid.uuid4().hex[:22],
        "ver": "2.0",
    }
    return _apply(claims, {"roles": roles, **overrides} if roles is DELETE else overrides)


def delegated(claims: dict[str, Any], scp: str = "access_as_user") -> dict[str, Any]:
    """Turn app-token claims into a delegated (user) token: ``scp``, user oid, name, upn."""
    claims = dict(claims, scp=scp, name="Ada Lovelace", oid=str(uuid.uuid4()), roles=[])
    upn_claim = "upn" if claims.get("ver") == "1.0" else "preferred_username"
    claims[upn_claim] = "ada@contoso.example"
    return claims


@dataclass
class SigningKey:
    """An RSA key with a kid: signs tokens and publishes its public JWK."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls, kid: str | None = None, bits: int = 2048) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(kid or f"test-{uuid.uuid4().hex[:12]}", key)

    @classmethod
    def from_pem(cls, pem: bytes, kid: str) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("not an RSA private key")
        return cls(kid, key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as Entra publishes it (kty, use, kid, x5t, n, e)."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", x5t=self.kid)
        return jwk

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str | _Delete | None = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A compact JWS of ``claims``; ``kid=DELETE`` leaves the kid out.

        RS256 is signed here rather than by PyJWT, which refuses some of the malformed
        claims the tests need (a numeric ``iss``, for one).
        """
        header: dict[str, Any] = {"typ": "JWT", "alg": algorithm, "x5t": self.kid}
        if kid is not DELETE:
            header["kid"] = self.kid if kid is None else kid
        header.update(headers or {})
        if algorithm != "RS256":
            header.pop("alg")
            return jwt.encode(claims, self.private_key, algorithm=algorithm, headers=header)
        signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
        signature = self.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{b64url(signature)}"


class FakeClock:
    """A clock for TokenVerifier(clock=...): starts at the real time, moves when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time()) if start is None else start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Mint(Protocol):
    """The ``mint`` fixture: a valid AzNS token, any claim overridable."""

    def __call__(
        self,
        version: str = "1.0",
        *,
        key: SigningKey | None = None,
        now: float | None = None,
        **claims: Any,
    ) -> str: ...


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}.{b64url(signature)}"


def forge_none(claims: dict[str, Any], kid: str = "any") -> str:
    """``alg: none``: no signature at all."""
    return f"{b64url_json({'typ': 'JWT', 'alg': 'none', 'kid': kid})}.{b64url_json(claims)}."


def forge_hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 with ``secret`` (the classic confusion attack passes the public key PEM).

    Built by hand: PyJWT itself refuses a PEM key as an HMAC secret.
    """
    header = {"typ": "JWT", "alg": "HS256", "kid": kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url(signature)}"


def forge_es256(claims: dict[str, Any], kid: str) -> str:
    """ES256 with a fresh EC key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def forge_header(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """Any header, a junk signature: for checks that must fail before the signature."""
    return _compact(header, claims, b"\x00" * 256)


def tamper_payload(token: str, **changes: Any) -> str:
    """The same header and signature over a modified payload."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64url_json(_apply(claims, changes))}.{signature}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def webhook_settings(jwks_uri: str) -> dict[str, str]:
    """The app's token settings for Azure Monitor's calls (tenant A, the ingest role), with
    its keys served at `jwks_uri` (for the benchmarks, which set the environment themselves)."""
    return {
        "AAD_TENANT_IDS": TENANT_A,
        "AAD_AUDIENCES": AUDIENCE_URI,
        "AAD_ALLOWED_CALLER_APP_IDS": AZNS_APP_ID,
        "AAD_REQUIRED_ROLE": ROLE,
        "AAD_JWKS_URI": jwks_uri,
    }
