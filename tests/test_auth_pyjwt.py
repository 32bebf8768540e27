"""shared/auth.py leaves the generic JWS/JWT checks to PyJWT (issue 14).

The behaviour is pinned by tests/test_auth.py; this file checks who does the work: every
uncached verification goes through one ``jwt.decode`` with RS256 only, the configured
issuer and audience lists and the required claims, and the keys are PyJWT's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

import shared.auth as auth
from shared.auth import AccessPolicy, TokenVerifier, parse_jwks
from tests.tokens import AUDIENCE_URI, CLIENT_ID, TENANT_A, TENANT_B, Mint, SigningKey, bearer

ROOT = Path(__file__).resolve().parent.parent


def test_every_uncached_verification_is_one_jwt_decode(
    verifier: TokenVerifier,
    ingest_policy: AccessPolicy,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    real_decode = jwt.decode

    def spy(token: Any, key: Any, **kwargs: Any) -> Any:
        calls.append({"key": key, **kwargs})
        return real_decode(token, key, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    header = bearer(mint())
    verifier.verify(header, ingest_policy)
    verifier.verify(header, ingest_policy)  # cached: no second decode
    assert len(calls) == 1
    call = calls[0]
    assert call["algorithms"] == ["RS256"]
    assert isinstance(call["key"], jwt.PyJWK)
    assert {AUDIENCE_URI, CLIENT_ID} <= set(call["audience"])
    assert f"https://sts.windows.net/{TENANT_A}/" in call["issuer"]
    assert f"https://login.microsoftonline.com/{TENANT_B}/v2.0" in call["issuer"]
    assert set(call["options"]["require"]) >= {"exp", "iat", "iss", "aud"}


def test_a_rejection_by_pyjwt_keeps_our_answer(
    verifier: TokenVerifier, ingest_policy: AccessPolicy, mint: Mint
) -> None:
    # The audience is refused by jwt.decode (InvalidAudienceError) and answered as before.
    with pytest.raises(auth.AuthError) as info:
        verifier.verify(bearer(mint(audience="api://elsewhere")), ingest_policy)
    assert info.value.body == {
        "error": "invalid_audience",
        "detail": "The token audience api://elsewhere is not accepted (AAD_AUDIENCES).",
    }


def test_keys_are_pyjwt_keys(signing_key: SigningKey) -> None:
    keys = parse_jwks(json.dumps({"keys": [signing_key.jwk()]}).encode())
    assert isinstance(keys[signing_key.kid], jwt.PyJWK)
    assert keys[signing_key.kid].algorithm_name == "RS256"


def test_no_hand_written_jws_parsing_left() -> None:
    source = (ROOT / "shared" / "auth.py").read_text()
    for hand_written in ("json.scanner", "binascii", "a2b_base64", "Prehashed", "cryptography"):
        assert hand_written not in source, hand_written
    assert len(source.splitlines()) < 600  # was 1,098 lines
