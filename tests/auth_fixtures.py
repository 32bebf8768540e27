"""Pytest fixtures for anything that needs valid (or deliberately invalid) Entra tokens.

Register once in tests/conftest.py with ``pytest_plugins = ["tests.auth_fixtures"]``.

- ``signing_key`` / ``other_signing_key``: session RSA keys (``tests.tokens.SigningKey``).
- ``jwks_server``: a running ``JwksServer`` on 127.0.0.1 publishing ``signing_key``.
- ``auth_settings``: ``AuthSettings`` for tenants A and B, both audience forms, the AzNS
  caller and the ActionGroupsSecureWebhook role, keys from ``jwks_server``.
- ``auth_env``: the same as AAD_* environment variables (monkeypatched), for code that
  reads ``get_settings()`` such as ``shared.ingest`` and ``function_app``.
- ``fake_clock``: a settable clock; ``verifier``: a ``TokenVerifier`` on ``auth_settings``
  and ``fake_clock`` (1 s refresh interval, 1 s failure backoff).
- ``mint``: ``mint(version="1.0", *, key=None, now=None, **claims) -> str`` signs a valid
  AzNS token with ``signing_key``; ``authorization``: ``"Bearer <valid v1 token>"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.auth import AccessPolicy, TokenVerifier
from shared.config import AuthSettings
from tests.jwks_server import JwksServer
from tests.tokens import (
    AUDIENCE_URI,
    AZNS_APP_ID,
    CLIENT_ID,
    DEFAULT_AUTHORITY,
    ROLE,
    TENANT_A,
    TENANT_B,
    TEST_FAILURE_BACKOFF,
    TEST_REFRESH_INTERVAL,
    FakeClock,
    Mint,
    SigningKey,
    bearer,
    v1_claims,
    v2_claims,
)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate(kid="key-1")


@pytest.fixture(scope="session")
def other_signing_key() -> SigningKey:
    return SigningKey.generate(kid="key-2")


@pytest.fixture
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(signing_key) as server:
        yield server


@pytest.fixture
def auth_settings(jwks_server: JwksServer) -> AuthSettings:
    return AuthSettings(
        tenant_ids=(TENANT_A, TENANT_B),
        audiences=(AUDIENCE_URI, CLIENT_ID),
        allowed_caller_app_ids=(AZNS_APP_ID,),
        required_role=ROLE,
        authority_host=DEFAULT_AUTHORITY,
        jwks_uri=jwks_server.url,
    )


@pytest.fixture
def auth_env(jwks_server: JwksServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AAD_TENANT_IDS": f"{TENANT_A},{TENANT_B}",
        "AAD_AUDIENCES": f"{AUDIENCE_URI},{CLIENT_ID}",
        "AAD_ALLOWED_CALLER_APP_IDS": AZNS_APP_ID,
        "AAD_REQUIRED_ROLE": ROLE,
        "AAD_AUTHORITY_HOST": DEFAULT_AUTHORITY,
        "AAD_JWKS_URI": jwks_server.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(auth_settings: AuthSettings, fake_clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(
        auth_settings,
        clock=fake_clock,
        refresh_interval=TEST_REFRESH_INTERVAL,
        failure_backoff=TEST_FAILURE_BACKOFF,
        fetch_timeout=2.0,
    )


@pytest.fixture
def ingest_policy(auth_settings: AuthSettings) -> AccessPolicy:
    return AccessPolicy.from_settings(auth_settings)


@pytest.fixture
def mint(signing_key: SigningKey) -> Mint:
    def mint(
        version: str = "1.0",
        *,
        key: SigningKey | None = None,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        builder = v1_claims if version == "1.0" else v2_claims
        return (key or signing_key).sign(builder(now=now, **claims))

    return mint


@pytest.fixture
def authorization(mint: Mint) -> str:
    """A valid ``Bearer`` header value (v1, tenant A, App ID URI audience, real time)."""
    return bearer(mint())
