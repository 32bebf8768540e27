"""Entra token verification (shared/auth.py) against real RSA keys and a real key endpoint.

The table at the top drives one verifier through every check; the tests below it cover
what a table cannot: the key endpoint's lifecycle, rotation, rate limits, the cache,
logging, threads and the issuer map.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import shared.auth as auth
from shared.auth import (
    AccessPolicy,
    AuthError,
    KeyFetchError,
    Principal,
    TokenVerifier,
    issuers_for_tenant,
    parse_jwks,
)
from shared.config import AuthSettings
from tests.jwks_server import JwksServer
from tests.tokens import (
    AUDIENCE_URI,
    AZNS_APP_ID,
    AZNS_OBJECT_ID,
    CLIENT_ID,
    DELETE,
    OTHER_APP_ID,
    OTHER_TENANT,
    ROLE,
    TENANT_A,
    TENANT_B,
    TEST_FAILURE_BACKOFF,
    TEST_REFRESH_INTERVAL,
    FakeClock,
    Mint,
    SigningKey,
    b64url,
    b64url_json,
    bearer,
    delegated,
    forge_es256,
    forge_header,
    forge_hs256,
    forge_none,
    tamper_payload,
    v1_claims,
    v1_issuer,
    v2_claims,
    v2_issuer,
)

# The fixtures live in tests/auth_fixtures.py, registered by tests/conftest.py.

# --------------------------------------------------------------------------- the table


@dataclass
class Ctx:
    """What a case needs to build its Authorization header."""

    key: SigningKey
    other: SigningKey
    now: float
    leeway: float

    def v1(self, **claims: Any) -> dict[str, Any]:
        return v1_claims(now=self.now, **claims)

    def v2(self, **claims: Any) -> dict[str, Any]:
        return v2_claims(now=self.now, **claims)

    def sign(self, claims: dict[str, Any], **kwargs: Any) -> str:
        return bearer(self.key.sign(claims, **kwargs))


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], str | None]
    status: int
    error: str | None = None  # body["error"]: which check failed
    detail: str | None = None  # a fragment of body["detail"]


OK = 200
CASES = [
    # ---- accepted shapes: v1 / v2, both audience forms, two tenants, header spellings
    Case("v1 audience = Application ID URI", lambda c: c.sign(c.v1()), OK),
    Case("v1 audience = client id", lambda c: c.sign(c.v1(audience=CLIENT_ID)), OK),
    Case("v2 audience = client id", lambda c: c.sign(c.v2()), OK),
    Case("v2 audience = Application ID URI", lambda c: c.sign(c.v2(audience=AUDIENCE_URI)), OK),
    Case("v1 tenant B", lambda c: c.sign(c.v1(tenant_id=TENANT_B)), OK),
    Case("v2 tenant B", lambda c: c.sign(c.v2(tenant_id=TENANT_B)), OK),
    Case(
        "client id audience in upper case", lambda c: c.sign(c.v1(audience=CLIENT_ID.upper())), OK
    ),
    Case("caller app id in upper case", lambda c: c.sign(c.v2(app_id=AZNS_APP_ID.upper())), OK),
    Case("scheme in lower case", lambda c: "bearer " + c.key.sign(c.v1()), OK),
    Case("scheme in upper case, two spaces", lambda c: "BEARER  " + c.key.sign(c.v1()), OK),
    Case("no nbf", lambda c: c.sign(c.v1(nbf=DELETE)), OK),
    Case("no ver (taken from the issuer)", lambda c: c.sign(c.v2(ver=DELETE)), OK),
    Case("exp a float", lambda c: c.sign(c.v1(exp=c.now + 600.5)), OK),
    Case("extra roles", lambda c: c.sign(c.v1(roles=["Reader", ROLE])), OK),
    # ---- clock skew at and beyond the leeway
    Case("exp exactly leeway ago", lambda c: c.sign(c.v1(exp=c.now - c.leeway)), OK),
    Case(
        "exp 1 s beyond leeway",
        lambda c: c.sign(c.v1(exp=c.now - c.leeway - 1)),
        401,
        "token_expired",
        "expired at",
    ),
    Case("nbf exactly leeway ahead", lambda c: c.sign(c.v1(nbf=c.now + c.leeway)), OK),
    Case(
        "nbf 1 s beyond leeway",
        lambda c: c.sign(c.v1(nbf=c.now + c.leeway + 1)),
        401,
        "token_not_yet_valid",
        "not valid before",
    ),
    Case("iat exactly leeway ahead", lambda c: c.sign(c.v1(iat=c.now + c.leeway)), OK),
    Case(
        "iat 1 s beyond leeway",
        lambda c: c.sign(c.v1(iat=c.now + c.leeway + 1)),
        401,
        "token_not_yet_valid",
        "issued in the future",
    ),
    # ---- Authorization header
    Case("no header", lambda c: None, 401, "missing_token"),
    Case("empty header", lambda c: "", 401, "missing_token"),
    Case("blank header", lambda c: "   ", 401, "missing_token"),
    Case("scheme missing", lambda c: c.key.sign(c.v1()), 401, "invalid_scheme"),
    Case("scheme misspelled", lambda c: "Baerer " + c.key.sign(c.v1()), 401, "invalid_scheme"),
    Case("scheme glued to token", lambda c: "Bearer:" + c.key.sign(c.v1()), 401, "invalid_scheme"),
    Case("Basic scheme", lambda c: "Basic dXNlcjpwYXNzd29yZA==", 401, "invalid_scheme"),
    Case("Bearer without token", lambda c: "Bearer", 401, "invalid_authorization_header"),
    Case(
        "two tokens after Bearer",
        lambda c: c.sign(c.v1()) + " " + c.key.sign(c.v1()),
        401,
        "invalid_authorization_header",
    ),
    Case(
        "two Authorization headers (joined by the host)",
        lambda c: c.sign(c.v1()) + ", " + c.sign(c.v1()),
        401,
        "multiple_authorization_headers",
    ),
    Case("100 KB of junk", lambda c: "Bearer " + "A" * 100_000, 401, "token_too_large"),
    Case(
        "100 KB signed token",
        lambda c: c.sign(c.v1(padding="x" * 100_000)),
        401,
        "token_too_large",
    ),
    # ---- JWS structure
    Case("not ASCII", lambda c: "Bearer eyJhbGciOi\u00e9.e30.sig", 401, "malformed_token"),
    Case("two segments", lambda c: "Bearer eyJhbGciOiJSUzI1NiJ9.e30", 401, "malformed_token"),
    Case(
        "header not JSON",
        lambda c: f"Bearer {b64url(b'not json')}.{b64url_json(c.v1())}.c2ln",
        401,
        "malformed_token",
        "header",
    ),
    Case(
        "payload not JSON",
        lambda c: bearer(f"{c.key.sign(c.v1()).split('.')[0]}.{b64url(b'{oops')}.c2ln"),
        401,
        "malformed_token",
        "payload",
    ),
    Case(
        "payload a JSON array",
        lambda c: bearer(f"{c.key.sign(c.v1()).split('.')[0]}.{b64url_json([1, 2])}.c2ln"),
        401,
        "malformed_token",
        "payload",
    ),
    Case(
        "payload with a character outside base64url",
        lambda c: c.sign(c.v1()).replace(".", ".!", 1),
        401,
        "malformed_token",
    ),
    Case("exp NaN (not JSON)", lambda c: c.sign(c.v1(exp=float("nan"))), 401, "malformed_token"),
    # ---- algorithm and key id
    Case(
        "alg none",
        lambda c: bearer(forge_none(c.v1(), kid=c.key.kid)),
        401,
        "unsupported_algorithm",
    ),
    Case(
        "HS256 signed with the public key PEM",
        lambda c: bearer(forge_hs256(c.v1(), c.key.public_pem(), kid=c.key.kid)),
        401,
        "unsupported_algorithm",
        "HS256",
    ),
    Case("RS512", lambda c: c.sign(c.v1(), algorithm="RS512"), 401, "unsupported_algorithm"),
    Case("PS256", lambda c: c.sign(c.v1(), algorithm="PS256"), 401, "unsupported_algorithm"),
    Case(
        "ES256",
        lambda c: bearer(forge_es256(c.v1(), kid=c.key.kid)),
        401,
        "unsupported_algorithm",
    ),
    Case(
        "alg in lower case",
        lambda c: bearer(forge_header(c.v1(), {"alg": "rs256", "kid": c.key.kid})),
        401,
        "unsupported_algorithm",
    ),
    Case(
        "alg missing",
        lambda c: bearer(forge_header(c.v1(), {"kid": c.key.kid})),
        401,
        "unsupported_algorithm",
    ),
    Case(
        "crit header",
        lambda c: bearer(forge_header(c.v1(), {"alg": "RS256", "kid": c.key.kid, "crit": ["x"]})),
        401,
        "unsupported_header",
    ),
    Case("kid missing", lambda c: c.sign(c.v1(), kid=DELETE), 401, "missing_kid"),
    Case(
        "kid not a string",
        lambda c: bearer(forge_header(c.v1(), {"alg": "RS256", "kid": 7})),
        401,
        "missing_kid",
    ),
    Case("kid unknown", lambda c: c.sign(c.v1(), kid="no-such-key"), 401, "unknown_kid"),
    # ---- signature
    Case(
        "another key with the right kid",
        lambda c: bearer(c.other.sign(c.v1(), kid=c.key.kid)),
        401,
        "invalid_signature",
    ),
    Case(
        "tampered payload (role added)",
        lambda c: bearer(tamper_payload(c.key.sign(c.v1(roles=[])), roles=[ROLE])),
        401,
        "invalid_signature",
    ),
    Case(
        "tampered payload (tenant switched)",
        lambda c: bearer(tamper_payload(c.key.sign(c.v1()), tid=TENANT_B, iss=v1_issuer(TENANT_B))),
        401,
        "invalid_signature",
    ),
    Case(
        "signature stripped",
        lambda c: c.sign(c.v1()).rsplit(".", 1)[0] + ".",
        401,
        "invalid_signature",
    ),
    Case("signature truncated", lambda c: c.sign(c.v1())[:-4], 401, "invalid_signature"),
    # ---- issuer and tenant
    Case("iss missing", lambda c: c.sign(c.v1(iss=DELETE)), 401, "invalid_issuer", "no iss"),
    Case("iss a number", lambda c: c.sign(c.v1(iss=42)), 401, "invalid_issuer", "not a string"),
    Case(
        "iss of an unconfigured tenant",
        lambda c: c.sign(c.v1(tenant_id=OTHER_TENANT)),
        401,
        "invalid_issuer",
        OTHER_TENANT,
    ),
    Case(
        "v2 iss of an unconfigured tenant",
        lambda c: c.sign(c.v2(tenant_id=OTHER_TENANT)),
        401,
        "invalid_issuer",
    ),
    Case(
        "v1 iss without the trailing slash",
        lambda c: c.sign(c.v1(iss=v1_issuer(TENANT_A).rstrip("/"))),
        401,
        "invalid_issuer",
    ),
    Case(
        "v2 iss with a trailing slash",
        lambda c: c.sign(c.v2(iss=v2_issuer(TENANT_A) + "/")),
        401,
        "invalid_issuer",
    ),
    Case(
        "v2 iss on the v1 host",
        lambda c: c.sign(c.v2(iss=f"https://sts.windows.net/{TENANT_A}/v2.0")),
        401,
        "invalid_issuer",
    ),
    Case(
        "iss of another cloud (China v1)",
        lambda c: c.sign(c.v1(iss=v1_issuer(TENANT_A, "sts.chinacloudapi.cn"))),
        401,
        "invalid_issuer",
    ),
    Case("tid missing", lambda c: c.sign(c.v1(tid=DELETE)), 401, "invalid_tenant", "no tid"),
    Case(
        "tid of the other configured tenant",
        lambda c: c.sign(c.v1(tid=TENANT_B)),
        401,
        "invalid_tenant",
    ),
    Case("tid a number", lambda c: c.sign(c.v2(tid=1)), 401, "invalid_tenant"),
    # ---- lifetime claims missing or of the wrong type
    Case("exp missing", lambda c: c.sign(c.v1(exp=DELETE)), 401, "invalid_claim", "no exp"),
    Case("exp a string", lambda c: c.sign(c.v1(exp="tomorrow")), 401, "invalid_claim", "exp"),
    Case("exp a boolean", lambda c: c.sign(c.v1(exp=True)), 401, "invalid_claim", "exp"),
    Case("nbf a string", lambda c: c.sign(c.v1(nbf="0")), 401, "invalid_claim", "nbf"),
    Case("iat missing", lambda c: c.sign(c.v1(iat=DELETE)), 401, "invalid_claim", "no iat"),
    Case("iat a list", lambda c: c.sign(c.v2(iat=[1])), 401, "invalid_claim", "iat"),
    # ---- identity claims
    Case("ver 2.0 on a v1 issuer", lambda c: c.sign(c.v1(ver="2.0")), 401, "invalid_claim", "ver"),
    Case("ver 1.0 on a v2 issuer", lambda c: c.sign(c.v2(ver="1.0")), 401, "invalid_claim", "ver"),
    Case("oid missing", lambda c: c.sign(c.v1(oid=DELETE)), 401, "invalid_claim", "no oid"),
    Case("oid a number", lambda c: c.sign(c.v2(oid=5)), 401, "invalid_claim", "oid"),
    Case("v1 without appid", lambda c: c.sign(c.v1(appid=DELETE)), 401, "invalid_claim", "appid"),
    Case(
        "v1 with azp instead of appid",
        lambda c: c.sign(c.v1(appid=DELETE, azp=AZNS_APP_ID)),
        401,
        "invalid_claim",
        "appid",
    ),
    Case(
        "v2 with appid instead of azp",
        lambda c: c.sign(c.v2(azp=DELETE, appid=AZNS_APP_ID)),
        401,
        "invalid_claim",
        "azp",
    ),
    Case("roles a string", lambda c: c.sign(c.v1(roles=ROLE)), 401, "invalid_claim", "roles"),
    Case("roles holding a number", lambda c: c.sign(c.v1(roles=[ROLE, 3])), 401, "invalid_claim"),
    Case("scp a list", lambda c: c.sign(c.v2(scp=["a"])), 401, "invalid_claim", "scp"),
    # ---- audience
    Case("aud missing", lambda c: c.sign(c.v1(aud=DELETE)), 401, "invalid_audience", "no aud"),
    Case(
        "aud of another API",
        lambda c: c.sign(c.v1(audience="api://someone-else")),
        401,
        "invalid_audience",
        "api://someone-else",
    ),
    Case(
        "aud Microsoft Graph",
        lambda c: c.sign(c.v2(audience="00000003-0000-0000-c000-000000000000")),
        401,
        "invalid_audience",
    ),
    Case("aud a list", lambda c: c.sign(c.v1(aud=[AUDIENCE_URI])), 401, "invalid_audience"),
    Case(
        "aud differing in case (URI)",
        lambda c: c.sign(c.v1(audience=AUDIENCE_URI.upper())),
        401,
        "invalid_audience",
    ),
    # ---- authorization: caller app, role, delegated tokens (403)
    Case(
        "caller app not allowed",
        lambda c: c.sign(c.v1(app_id=OTHER_APP_ID)),
        403,
        "caller_app_not_allowed",
        OTHER_APP_ID,
    ),
    Case("roles missing", lambda c: c.sign(c.v1(roles=DELETE)), 403, "missing_role", ROLE),
    Case("roles empty", lambda c: c.sign(c.v2(roles=[])), 403, "missing_role", ROLE),
    Case("another role only", lambda c: c.sign(c.v1(roles=["Reader"])), 403, "missing_role"),
    Case(
        "role differing in case",
        lambda c: c.sign(c.v1(roles=[ROLE.lower()])),
        403,
        "missing_role",
    ),
    Case(
        "delegated user token",
        lambda c: c.sign(delegated(c.v2())),
        403,
        "delegated_token_not_allowed",
    ),
]


def _ids(case: Case) -> str:
    return case.id


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_token_table(
    case: Case,
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
    fake_clock: FakeClock,
) -> None:
    ctx = Ctx(signing_key, other_signing_key, fake_clock(), verifier.leeway)
    header = case.build(ctx)
    if case.status == OK:
        principal = verifier.verify(header, ingest_policy)
        assert principal.tenant_id in (TENANT_A, TENANT_B)
        assert principal.caller_app_id == AZNS_APP_ID
        assert ROLE in principal.roles
        return
    with pytest.raises(AuthError) as info:
        verifier.verify(header, ingest_policy)
    err = info.value
    assert (err.status, err.error) == (case.status, case.error), err.detail
    if case.detail:
        assert case.detail in err.detail
    assert err.body["error"] == case.error
    assert err.body["detail"] == err.detail
    json.dumps(err.body)  # serializable as is
    challenge = err.headers["WWW-Authenticate"]
    expected = "invalid_token" if err.status == 401 else "insufficient_scope"
    assert challenge.startswith(f'Bearer error="{expected}", error_description="')
    assert challenge.count('"') == 4  # the description cannot break out of its quotes
    if header:
        # The answer never echoes the token (nor a long piece of it).
        token = header.split(" ", 1)[-1]
        for piece in [token, *token.split(".")]:
            if len(piece) > 16:
                assert piece not in err.detail
                assert piece not in challenge


# --------------------------------------------------------------------------- answers


def test_principal_from_v1_and_v2(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint, fake_clock: FakeClock
) -> None:
    v1 = verifier.verify(bearer(mint("1.0", now=fake_clock())), ingest_policy)
    assert isinstance(v1, Principal)
    assert dataclasses.is_dataclass(v1)
    assert v1.token_version == "1.0"
    assert v1.issuer == v1_issuer(TENANT_A)
    assert v1.audience == AUDIENCE_URI
    assert v1.object_id == AZNS_OBJECT_ID
    assert v1.roles == (ROLE,)
    assert v1.scopes == ()
    assert not v1.is_delegated
    assert v1.expires_at.timestamp() == fake_clock() + 3600
    v2 = verifier.verify(bearer(mint("2.0", now=fake_clock(), tenant_id=TENANT_B)), ingest_policy)
    assert (v2.token_version, v2.tenant_id, v2.audience) == ("2.0", TENANT_B, CLIENT_ID)
    assert v2.issuer == v2_issuer(TENANT_B)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v2.roles = ()  # type: ignore[misc]


def test_delegated_tokens_when_the_policy_accepts_them(
    verifier: TokenVerifier, signing_key: SigningKey, fake_clock: FakeClock
) -> None:
    policy = AccessPolicy(
        audiences=(CLIENT_ID,),
        allowed_caller_app_ids=None,  # any app
        accept_delegated=True,
        required_scopes=("WorkItems.ReadWrite", "access_as_user"),
    )
    claims = delegated(v2_claims(now=fake_clock(), app_id=OTHER_APP_ID))
    user = verifier.verify(bearer(signing_key.sign(claims)), policy)
    assert user.is_delegated
    assert user.scopes == ("access_as_user",)
    assert (user.name, user.upn) == ("Ada Lovelace", "ada@contoso.example")
    v1_user = delegated(v1_claims(now=fake_clock(), audience=CLIENT_ID))
    assert verifier.verify(bearer(signing_key.sign(v1_user)), policy).upn == "ada@contoso.example"

    wrong_scope = delegated(v2_claims(now=fake_clock()), scp="User.Read")
    with pytest.raises(AuthError) as info:
        verifier.verify(bearer(signing_key.sign(wrong_scope)), policy)
    assert (info.value.status, info.value.error) == (403, "missing_scope")
    assert info.value.body["required_scopes"] == ["WorkItems.ReadWrite", "access_as_user"]


def test_roles_are_any_of_and_optional(
    verifier: TokenVerifier, signing_key: SigningKey, fake_clock: FakeClock
) -> None:
    any_of = AccessPolicy(audiences=(CLIENT_ID,), required_roles=("WorkItems.Read", "Admin"))
    token = bearer(signing_key.sign(v2_claims(now=fake_clock(), roles=["Admin"])))
    assert verifier.verify(token, any_of).roles == ("Admin",)
    no_role = AccessPolicy(audiences=(CLIENT_ID,))
    bare = bearer(signing_key.sign(v2_claims(now=fake_clock(), roles=DELETE)))
    assert verifier.verify(bare, no_role).roles == ()
    with pytest.raises(ValueError, match="audience"):
        AccessPolicy(audiences=())


def test_ingest_policy_from_settings(auth_settings: AuthSettings) -> None:
    policy = AccessPolicy.from_settings(auth_settings)
    assert policy.required_roles == (ROLE,)
    assert policy.allowed_caller_app_ids == (AZNS_APP_ID,)
    assert not policy.accept_delegated
    no_role = AccessPolicy.from_settings(dataclasses.replace(auth_settings, required_role=None))
    assert no_role.required_roles == ()


def test_forbidden_answer_names_role_and_caller(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint
) -> None:
    with pytest.raises(AuthError) as info:
        verifier.verify(bearer(mint(roles=[])), ingest_policy)
    assert info.value.status == 403
    assert info.value.body["required_roles"] == [ROLE]
    assert info.value.body["caller_app_id"] == AZNS_APP_ID
    with pytest.raises(AuthError) as info:
        verifier.verify(bearer(mint(app_id=OTHER_APP_ID)), ingest_policy)
    assert info.value.body["caller_app_id"] == OTHER_APP_ID


def test_leeway_is_capped(auth_settings: AuthSettings) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(auth_settings, leeway=301)
    assert TokenVerifier(auth_settings, leeway=300).leeway == 300


# --------------------------------------------------------------------------- key endpoint


def test_keys_fetched_once(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint, jwks_server: JwksServer
) -> None:
    for version in ("1.0", "2.0", "1.0"):
        verifier.verify(bearer(mint(version)), ingest_policy)
    assert jwks_server.request_count == 1
    assert jwks_server.paths == ["/keys"]


def _status(verifier: TokenVerifier, header: str, policy: AccessPolicy) -> tuple[int, str]:
    try:
        verifier.verify(header, policy)
    except AuthError as exc:
        return exc.status, exc.error
    return 200, "ok"


def test_key_endpoint_down_then_back_up(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    header = bearer(mint())
    jwks_server.stop()  # connection refused
    with pytest.raises(AuthError) as info:
        verifier.verify(header, ingest_policy)
    assert (info.value.status, info.value.error) == (503, "signing_keys_unavailable")
    assert int(info.value.headers["Retry-After"]) >= 1
    assert "WWW-Authenticate" not in info.value.headers
    attempts = verifier.keys.fetches
    # Within the failure backoff nobody waits on the network again.
    assert _status(verifier, header, ingest_policy) == (503, "signing_keys_unavailable")
    assert verifier.keys.fetches == attempts

    jwks_server.start()  # same port
    assert _status(verifier, header, ingest_policy) == (503, "signing_keys_unavailable")
    fake_clock.advance(TEST_FAILURE_BACKOFF)
    assert _status(verifier, header, ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 1


@pytest.mark.parametrize("status", [500, 502, 503, 404])
def test_key_endpoint_errors_answer_503(
    status: int,
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    jwks_server.fail_with(status)
    header = bearer(mint())
    assert _status(verifier, header, ingest_policy) == (503, "signing_keys_unavailable")
    assert _status(verifier, header, ingest_policy) == (503, "signing_keys_unavailable")
    assert jwks_server.request_count == 1  # the second answer came from the backoff
    jwks_server.recover()
    fake_clock.advance(TEST_FAILURE_BACKOFF)
    assert _status(verifier, header, ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 2


@pytest.mark.parametrize(
    "document",
    [
        {"keys": []},
        {"nokeys": True},
        {"keys": [{"kty": "EC", "kid": "key-1", "crv": "P-256", "x": "AA", "y": "AA"}]},
        [1, 2, 3],
    ],
    ids=["empty", "no keys list", "only EC keys", "not an object"],
)
def test_unusable_key_sets_answer_503(
    document: Any,
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    jwks_server: JwksServer,
) -> None:
    jwks_server.serve_document(document)
    assert _status(verifier, bearer(mint()), ingest_policy) == (503, "signing_keys_unavailable")


def test_slow_key_endpoint_times_out(
    auth_settings: AuthSettings, ingest_policy: AccessPolicy, mint: Mint, jwks_server: JwksServer
) -> None:
    jwks_server.delay = 1.0
    verifier = TokenVerifier(auth_settings, fetch_timeout=0.2)
    assert _status(verifier, bearer(mint()), ingest_policy) == (503, "signing_keys_unavailable")


def test_a_failing_fetcher_is_503_not_500(
    auth_settings: AuthSettings, ingest_policy: AccessPolicy, mint: Mint
) -> None:
    def broken(url: str, timeout: float) -> bytes:
        raise RuntimeError("bug in the fetcher")

    verifier = TokenVerifier(auth_settings, fetch=broken)
    assert _status(verifier, bearer(mint()), ingest_policy) == (503, "signing_keys_unavailable")


def test_an_unexpected_bug_is_401_not_500(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(verifier, "_check", boom)
    assert _status(verifier, bearer(mint()), ingest_policy) == (401, "verification_failed")


def test_key_rotation_without_restart(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    jwks_server: JwksServer,
    other_signing_key: SigningKey,
    fake_clock: FakeClock,
) -> None:
    assert _status(verifier, bearer(mint()), ingest_policy) == (200, "ok")
    rotated = bearer(mint(key=other_signing_key))
    # The new kid is not published yet: one refresh, still unknown.
    fake_clock.advance(TEST_REFRESH_INTERVAL)
    assert _status(verifier, rotated, ingest_policy) == (401, "unknown_kid")
    assert jwks_server.request_count == 2
    # Entra publishes the key; the refresh is rate-limited, so it shows up next interval.
    jwks_server.rotate(other_signing_key, keep_old=False)
    assert _status(verifier, rotated, ingest_policy) == (401, "unknown_kid")
    assert jwks_server.request_count == 2
    fake_clock.advance(TEST_REFRESH_INTERVAL)
    assert _status(verifier, rotated, ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 3
    # The retired key is gone from the set, but tokens already verified stay cached;
    # a new token signed with it is rejected.
    assert _status(verifier, bearer(mint()), ingest_policy) == (401, "unknown_kid")


def test_unknown_kid_flood_costs_one_refresh_per_interval(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    claims = v1_claims(now=fake_clock())
    assert _status(verifier, bearer(signing_key.sign(claims)), ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 1
    for interval in range(1, 4):
        fake_clock.advance(TEST_REFRESH_INTERVAL)
        for i in range(50):
            bogus = bearer(signing_key.sign(claims, kid=f"bogus-{interval}-{i}"))
            assert _status(verifier, bogus, ingest_policy) == (401, "unknown_kid")
        assert jwks_server.request_count == 1 + interval


def test_unknown_kid_flood_from_threads(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    claims = v1_claims(now=fake_clock())
    bogus = [bearer(signing_key.sign(claims, kid=f"bogus-{i}")) for i in range(16)]
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(bogus))

    def attack(header: str) -> None:
        barrier.wait()
        results.append(_status(verifier, header, ingest_policy))

    threads = [threading.Thread(target=attack, args=(h,)) for h in bogus]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [(401, "unknown_kid")] * len(bogus)
    assert jwks_server.request_count == 1  # the initial load; no refresh within the interval


def test_stale_keys_survive_a_failed_refresh(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    assert _status(verifier, bearer(signing_key.sign(v1_claims(now=fake_clock()))), ingest_policy)
    jwks_server.stop()
    fake_clock.advance(auth.DEFAULT_KEYS_MAX_AGE_SECONDS + 60)
    fresh = bearer(signing_key.sign(v1_claims(now=fake_clock())))
    assert _status(verifier, fresh, ingest_policy) == (200, "ok")
    assert verifier.keys.fetches == 2  # it tried, failed, and kept the keys


def test_default_key_uri_per_tenant(
    jwks_server: JwksServer, signing_key: SigningKey, auth_settings: AuthSettings
) -> None:
    # No AAD_JWKS_URI: {authority}/{tid}/discovery/v2.0/keys, one key set per tenant.
    settings = dataclasses.replace(
        auth_settings, authority_host=jwks_server.base_url, jwks_uri=None
    )
    verifier = TokenVerifier(settings)
    policy = AccessPolicy.from_settings(settings)
    for tenant in (TENANT_A, TENANT_B, TENANT_A):
        claims = v2_claims(tenant_id=tenant, authority=jwks_server.base_url)
        verifier.verify(bearer(signing_key.sign(claims)), policy)
    assert jwks_server.paths == [
        f"/{TENANT_A}/discovery/v2.0/keys",
        f"/{TENANT_B}/discovery/v2.0/keys",
    ]


def test_parse_jwks_keeps_only_rsa_signature_keys(
    signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    small = SigningKey.generate(kid="small", bits=1024)
    good = signing_key.jwk()
    document = {
        "keys": [
            good,
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "rs512", "alg": "RS512"},
            {**good, "kid": None},
            {**good, "kid": "private", "d": "AAAA"},
            {**good, "kid": "broken", "n": "!!"},
            small.jwk(),
            {"kty": "EC", "kid": "ec"},
            "not a key",
        ]
    }
    keys = parse_jwks(json.dumps(document).encode())
    assert list(keys) == [signing_key.kid]
    assert "private key material" in caplog.text
    with pytest.raises(KeyFetchError):
        parse_jwks(b"not json")


# --------------------------------------------------------------------------- the cache


def test_cache_hit_does_not_verify_again(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint, jwks_server: JwksServer
) -> None:
    header = bearer(mint())
    first = verifier.verify(header, ingest_policy)
    assert verifier.verify(header, ingest_policy) is first
    assert verifier.verify("bearer " + header[7:], ingest_policy) is first
    assert verifier.stats["verifications"] == 1
    jwks_server.stop()  # a hit needs neither keys nor network
    assert verifier.verify(header, ingest_policy) is first


def test_cache_never_serves_past_exp(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint, fake_clock: FakeClock
) -> None:
    header = bearer(mint(now=fake_clock(), lifetime=600))
    verifier.verify(header, ingest_policy)
    fake_clock.advance(600)  # at exp: within the leeway, verified again, not from cache
    verifier.verify(header, ingest_policy)
    assert verifier.stats["verifications"] == 2
    fake_clock.advance(verifier.leeway + 1)
    with pytest.raises(AuthError) as info:
        verifier.verify(header, ingest_policy)
    assert info.value.error == "token_expired"
    assert verifier.stats["verifications"] == 3


def test_cache_is_a_bounded_lru(
    auth_settings: AuthSettings, ingest_policy: AccessPolicy, mint: Mint
) -> None:
    verifier = TokenVerifier(auth_settings, cache_size=2)
    a, b, c = (bearer(mint()) for _ in range(3))
    for header in (a, b, a, c):  # a is used again, so b is the least recently used
        verifier.verify(header, ingest_policy)
    assert verifier.stats["cached"] == 2
    assert verifier.stats["verifications"] == 3
    verifier.verify(a, ingest_policy)
    assert verifier.stats["verifications"] == 3
    verifier.verify(b, ingest_policy)
    assert verifier.stats["verifications"] == 4


def test_policy_checked_on_every_hit(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint
) -> None:
    header = bearer(mint())
    verifier.verify(header, ingest_policy)
    other_api = AccessPolicy(audiences=("api://work-items",))
    assert _status(verifier, header, other_api) == (401, "invalid_audience")
    admins = AccessPolicy(audiences=(AUDIENCE_URI,), required_roles=("Admin",))
    assert _status(verifier, header, admins) == (403, "missing_role")
    assert _status(verifier, header, ingest_policy) == (200, "ok")
    assert verifier.stats["verifications"] == 1


def test_settings_change_invalidates(
    auth_env: dict[str, str], mint: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # get_settings() validates every setting, storage included.
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    header = bearer(mint())  # v1, audience = Application ID URI
    principal = auth.verify(header)
    assert principal.audience == AUDIENCE_URI
    assert auth.verify_ingest(header) is principal
    verifier = auth.get_verifier()
    assert verifier.stats["verifications"] == 1

    monkeypatch.setenv("AAD_AUDIENCES", CLIENT_ID)  # the URI is no longer accepted
    assert auth.get_verifier() is not verifier
    with pytest.raises(AuthError) as info:
        auth.verify(header)
    assert info.value.error == "invalid_audience"

    monkeypatch.setenv("AAD_AUDIENCES", AUDIENCE_URI)
    monkeypatch.setenv("AAD_TENANT_IDS", TENANT_B)  # tenant A no longer trusted
    with pytest.raises(AuthError) as info:
        auth.verify(header)
    assert info.value.error == "invalid_issuer"


def test_verifier_keyed_on_settings_value(auth_settings: AuthSettings) -> None:
    same = dataclasses.replace(auth_settings)
    assert auth.get_verifier(auth_settings) is auth.get_verifier(same)
    changed = dataclasses.replace(auth_settings, required_role=None)
    assert auth.get_verifier(changed) is not auth.get_verifier(auth_settings)


# --------------------------------------------------------------------------- logging


def test_rejections_are_logged_without_the_token(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = fake_clock()
    tokens = {
        "token_expired": signing_key.sign(v1_claims(now=now - 7200)),
        "invalid_signature": other_signing_key.sign(v1_claims(now=now), kid=signing_key.kid),
        "invalid_audience": signing_key.sign(v2_claims(now=now, audience="api://x")),
        "missing_role": signing_key.sign(v1_claims(now=now, roles=[])),
        "caller_app_not_allowed": signing_key.sign(v1_claims(now=now, app_id=OTHER_APP_ID)),
        "unsupported_algorithm": forge_none(v1_claims(now=now)),
        "invalid_issuer": signing_key.sign(v1_claims(now=now, tenant_id=OTHER_TENANT)),
    }
    caplog.set_level(logging.INFO, logger="shared.auth")
    for reason, token in tokens.items():
        with pytest.raises(AuthError) as info:
            verifier.verify(bearer(token), ingest_policy, correlation_id=f"corr-{reason}")
        assert info.value.correlation_id == f"corr-{reason}"
        record = caplog.records[-1]
        message = record.getMessage()
        assert f"reason={reason}" in message
        assert f"correlation_id=corr-{reason}" in message
        if reason in ("token_expired", "invalid_signature", "missing_role"):
            assert f"tid={TENANT_A}" in message
            assert f"caller_app={AZNS_APP_ID}" in message
    duplicated = bearer(tokens["missing_role"]) + ", " + bearer(tokens["token_expired"])
    with pytest.raises(AuthError):
        verifier.verify(duplicated, ingest_policy)
    assert caplog.records[-1].getMessage().count("correlation_id=") == 1
    text = caplog.text
    for token in tokens.values():
        for piece in [token, *token.split(".")]:
            if len(piece) > 16:
                assert piece not in text


def test_unverified_claims_are_logged_only_when_guid_shaped(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    other_signing_key: SigningKey,
    signing_key: SigningKey,
    fake_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    claims = v1_claims(now=fake_clock(), appid="<script>alert(1)</script>")
    token = other_signing_key.sign(claims, kid=signing_key.kid)
    caplog.set_level(logging.WARNING, logger="shared.auth")
    with pytest.raises(AuthError):
        verifier.verify(bearer(token), ingest_policy)
    message = caplog.records[-1].getMessage()
    assert "caller_app=-" in message
    assert "<script>" not in caplog.text


def test_successes_are_not_logged(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    authorization: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="shared.auth")
    verifier.verify(authorization, ingest_policy)
    verifier.verify(authorization, ingest_policy)
    assert all("rejected" not in r.getMessage() for r in caplog.records)
    assert authorization[7:] not in caplog.text


# --------------------------------------------------------------------------- threads


def test_concurrent_verification(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    headers = [bearer(signing_key.sign(v1_claims(now=fake_clock()))) for _ in range(10)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        barrier.wait()
        try:
            for i in range(100):
                principal = verifier.verify(headers[(i + offset) % len(headers)], ingest_policy)
                assert principal.tenant_id == TENANT_A
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert jwks_server.request_count == 1
    assert verifier.stats["cached"] == len(headers)


# --------------------------------------------------------------------------- issuers


def test_issuers_per_cloud() -> None:
    tid = TENANT_A
    assert issuers_for_tenant("https://login.microsoftonline.com", tid) == {
        f"https://login.microsoftonline.com/{tid}/v2.0": "2.0",
        f"https://sts.windows.net/{tid}/": "1.0",
    }
    assert issuers_for_tenant("https://login.microsoftonline.us", tid) == {
        f"https://login.microsoftonline.us/{tid}/v2.0": "2.0",
        f"https://sts.windows.net/{tid}/": "1.0",
        f"https://login.microsoftonline.us/{tid}/": "1.0",
    }
    assert issuers_for_tenant("https://login.chinacloudapi.cn/", tid) == {
        f"https://login.chinacloudapi.cn/{tid}/v2.0": "2.0",
        f"https://login.partner.microsoftonline.cn/{tid}/v2.0": "2.0",
        f"https://sts.chinacloudapi.cn/{tid}/": "1.0",
    }
    # An alias of the public cloud still yields the canonical v2 issuer.
    assert f"https://login.microsoftonline.com/{tid}/v2.0" in issuers_for_tenant(
        "https://login.windows.net", tid
    )
    # Unknown authority: only its own v2 issuer, no v1 guess.
    assert issuers_for_tenant("http://127.0.0.1:8080", tid) == {
        f"http://127.0.0.1:8080/{tid}/v2.0": "2.0"
    }


def test_us_government_cloud(
    auth_settings: AuthSettings, signing_key: SigningKey, fake_clock: FakeClock
) -> None:
    gov = "https://login.microsoftonline.us"
    settings = dataclasses.replace(auth_settings, authority_host=gov)
    verifier = TokenVerifier(settings, clock=fake_clock)
    policy = AccessPolicy.from_settings(settings)
    now = fake_clock()
    for claims in (
        v1_claims(now=now),  # sts.windows.net
        v1_claims(now=now, issuer=f"{gov}/{TENANT_A}/"),
        v2_claims(now=now, authority=gov),
    ):
        assert _status(verifier, bearer(signing_key.sign(claims)), policy) == (200, "ok")
    public_v2 = v2_claims(now=now)  # login.microsoftonline.com: another cloud
    assert _status(verifier, bearer(signing_key.sign(public_v2)), policy) == (
        401,
        "invalid_issuer",
    )


# --------------------------------------------------------------------------- AuthError


def test_auth_error_shape() -> None:
    err = auth._forbidden("missing_role", 'say "hi"\n', required_roles=["R"])
    assert err.status == 403
    assert err.body == {"error": "missing_role", "detail": 'say "hi"\n', "required_roles": ["R"]}
    assert json.loads(err.to_json()) == err.body
    assert err.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="say ?hi??"'
    )
    unavailable = auth._unavailable("down", 0.2)
    assert unavailable.headers == {"Retry-After": "1"}


# --------------------------------------------------------------------------- local tokens


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_mint_token_script_serves_keys_the_app_accepts(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "mint_token.py"
    port = _free_port()
    command = [
        sys.executable,
        str(script),
        "--dir",
        str(tmp_path),
        "--tenant",
        TENANT_A,
        "--audience",
        CLIENT_ID,
        "--version",
        "2",
        "--port",
        str(port),
        "--serve",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        token = process.stdout.readline().strip()
        settings = AuthSettings(
            tenant_ids=(TENANT_A,),
            audiences=(CLIENT_ID,),
            allowed_caller_app_ids=(AZNS_APP_ID,),
            required_role=ROLE,
            authority_host="https://login.microsoftonline.com",
            jwks_uri=f"http://127.0.0.1:{port}/keys",
        )
        verifier = TokenVerifier(settings, failure_backoff=0.0)
        policy = AccessPolicy.from_settings(settings)
        deadline = time.monotonic() + 20
        while _status(verifier, bearer(token), policy) == (503, "signing_keys_unavailable"):
            assert time.monotonic() < deadline, "the script never served its keys"
            time.sleep(0.05)  # until the script's server listens
        principal = verifier.verify(bearer(token), policy)
        assert (principal.tenant_id, principal.token_version) == (TENANT_A, "2.0")
        assert (tmp_path / "signing-key.pem").stat().st_mode & 0o077 == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    # A second run reuses the key: the same kid, so earlier tokens stay valid.
    again = subprocess.run(
        [sys.executable, str(script), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert _header_kid(again.stdout.strip()) == _header_kid(token)
    assert "AAD_JWKS_URI" in again.stderr


def _header_kid(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def test_header_cache_is_bounded(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    fake_clock: FakeClock,
) -> None:
    claims = v1_claims(now=fake_clock())
    for i in range(auth._HEADER_CACHE_SIZE + 10):  # distinct headers flood the cache
        bogus = bearer(signing_key.sign(claims, kid=f"bogus-{i}"))
        assert _status(verifier, bogus, ingest_policy) == (401, "unknown_kid")
    assert len(verifier._headers) <= auth._HEADER_CACHE_SIZE
    assert _status(verifier, bearer(signing_key.sign(claims)), ingest_policy) == (200, "ok")


def _resign(token: str, sign: Callable[[bytes], bytes]) -> str:
    """The token's header and payload with the signature ``sign`` makes over them."""
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{b64url(sign(f'{header}.{payload}'.encode()))}"


def test_header_cache_never_skips_the_header_checks(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
    fake_clock: FakeClock,
) -> None:
    """Once a valid header is cached, a token with any other header is checked in full,
    and a token that reuses the cached header still needs its own valid signature."""
    valid = signing_key.sign(v1_claims(now=fake_clock()))
    assert _status(verifier, bearer(valid), ingest_policy) == (200, "ok")
    cached = {valid.split(".")[0].encode(): signing_key.kid}
    assert verifier._headers == cached
    kid = signing_key.kid
    claims = v1_claims(now=fake_clock())
    forged = [
        (forge_none(claims, kid=kid), "unsupported_algorithm"),
        (forge_hs256(claims, signing_key.public_pem(), kid=kid), "unsupported_algorithm"),
        (signing_key.sign(claims, algorithm="RS512"), "unsupported_algorithm"),
        (forge_header(claims, {"alg": "RS256", "kid": kid, "crit": ["exp"]}), "unsupported_header"),
        (forge_header(claims, {"alg": "RS256"}), "missing_kid"),
        (forge_header(claims, {"alg": "RS256", "kid": 1}), "missing_kid"),
    ]
    for token, error in forged:
        assert _status(verifier, bearer(token), ingest_policy) == (401, error), token
    assert verifier._headers == cached  # nothing that failed the header checks is kept
    # The cached header on a new payload: signed by another key, or not signed at all.
    fresh = signing_key.sign(v1_claims(now=fake_clock()))
    assert fresh.split(".")[0] == valid.split(".")[0]

    def other_key(data: bytes) -> bytes:
        return other_signing_key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    assert _status(verifier, bearer(_resign(fresh, other_key)), ingest_policy) == (
        401,
        "invalid_signature",
    )
    unsigned = bearer(fresh.rsplit(".", 1)[0] + ".")
    assert _status(verifier, unsigned, ingest_policy) == (401, "invalid_signature")
    assert _status(verifier, bearer(fresh), ingest_policy) == (200, "ok")


def test_signature_is_rs256_over_the_exact_signing_input(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    signing_key: SigningKey,
    fake_clock: FakeClock,
) -> None:
    """The verifier hashes the signing input itself (hashlib) and checks the signature
    against that digest: only PKCS#1 v1.5 with SHA-256 over exactly those bytes passes."""
    private = signing_key.private_key
    token = signing_key.sign(v1_claims(now=fake_clock()))

    def sha512(data: bytes) -> bytes:
        return private.sign(data, padding.PKCS1v15(), hashes.SHA512())

    def pss(data: bytes) -> bytes:
        pss_padding = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
        return private.sign(data, pss_padding, hashes.SHA256())

    def hashed_twice(data: bytes) -> bytes:
        return private.sign(hashlib.sha256(data).digest(), padding.PKCS1v15(), hashes.SHA256())

    def other_input(data: bytes) -> bytes:
        return private.sign(b"Bearer " + data, padding.PKCS1v15(), hashes.SHA256())

    def prehashed(data: bytes) -> bytes:  # RS256 itself, the digest computed here
        return private.sign(
            hashlib.sha256(data).digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256())
        )

    for sign in (sha512, pss, hashed_twice, other_input):
        assert _status(verifier, bearer(_resign(token, sign)), ingest_policy) == (
            401,
            "invalid_signature",
        ), sign.__name__
    assert _status(verifier, bearer(_resign(token, prehashed)), ingest_policy) == (200, "ok")


def test_a_cached_header_with_an_unknown_kid_still_refreshes_the_keys(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    other_signing_key: SigningKey,
    jwks_server: JwksServer,
    fake_clock: FakeClock,
) -> None:
    """The header cache keeps a header's kid, never its key: every token looks its kid up
    in the key set, and an unknown kid refreshes it at the usual bounded rate."""
    assert _status(verifier, bearer(mint()), ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 1
    fake_clock.advance(TEST_REFRESH_INTERVAL)
    first = mint(key=other_signing_key)
    assert _status(verifier, bearer(first), ingest_policy) == (401, "unknown_kid")
    assert jwks_server.request_count == 2
    assert verifier._headers[first.split(".")[0].encode()] == other_signing_key.kid
    jwks_server.rotate(other_signing_key, keep_old=True)
    # Same header, new payload: within the interval no refresh, so still unknown ...
    again = mint(key=other_signing_key)
    assert again.split(".")[0] == first.split(".")[0]
    assert _status(verifier, bearer(again), ingest_policy) == (401, "unknown_kid")
    assert jwks_server.request_count == 2
    # ... and one interval later the refresh finds the key.
    fake_clock.advance(TEST_REFRESH_INTERVAL)
    assert _status(verifier, bearer(again), ingest_policy) == (200, "ok")
    assert jwks_server.request_count == 3


def test_the_first_cache_hit_reuses_the_policy_decision(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh verification records the policy it passed; another policy is still judged."""
    header = bearer(mint())
    verifier.verify(header, ingest_policy)
    judged: list[AccessPolicy] = []
    real_authorize = auth._authorize

    def spy(principal: Principal, policy: AccessPolicy) -> None:
        judged.append(policy)
        real_authorize(principal, policy)

    monkeypatch.setattr(auth, "_authorize", spy)
    verifier.verify(header, ingest_policy)
    assert judged == []
    strict = AccessPolicy(audiences=(AUDIENCE_URI,), required_roles=("Admin",))
    with pytest.raises(AuthError) as info:
        verifier.verify(header, strict)
    assert info.value.error == "missing_role"
    assert judged == [strict]
