"""Entra's rules for the claims of a token whose signature PyJWT has verified (pure).

``check_lifetime``: ``exp`` and ``iat`` (whose presence PyJWT required) and ``nbf`` (when
present), compared with the verifier's clock and leeway. PyJWT reads the wall clock and
takes no clock argument; the verifier's clock is the one its cache expires by.

``principal``: ``tid`` equals the tenant of ``iss``, ``ver`` matches the issuer form,
``oid`` and the caller app claim of the version (``appid`` v1, ``azp`` v2) are non-empty
strings, ``aud`` is one string, ``roles`` a list of strings and ``scp`` a string.
Sources: Microsoft Learn, *Access token claims reference*; docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.access_policy import AuthError, Principal, norm_aud, printable, unauthorized


def check_lifetime(claims: Mapping[str, Any], now: float, leeway: float) -> float:
    """``exp`` as a float, or AuthError 401 when the token is expired or not yet valid."""
    exp: Any = claims.get("exp")
    nbf: Any = claims.get("nbf")
    iat: Any = claims.get("iat")
    # Numbers: exact types, so not bool (an int subclass); the JSON had no NaN/Infinity.
    for name, value in (("exp", exp), ("nbf", nbf), ("iat", iat)):
        if type(value) not in (int, float) and not (name == "nbf" and value is None):
            raise claim_error(name, value)
    if now > exp + leeway:
        raise unauthorized(
            "token_expired",
            f"The token expired at {_iso(exp)} (now {_iso(now)}, leeway {leeway:g} s).",
        )
    if nbf is not None and now + leeway < nbf:
        raise unauthorized(
            "token_not_yet_valid",
            f"The token is not valid before {_iso(nbf)} (now {_iso(now)}, leeway {leeway:g} s).",
        )
    if now + leeway < iat:
        raise unauthorized(
            "token_not_yet_valid",
            f"The token was issued in the future ({_iso(iat)}, now {_iso(now)}).",
        )
    return float(exp)


def principal(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    tenant_id: str,
    version: str,
    app_claim: str,
    expires: float,
) -> Principal:
    """The caller, or AuthError 401 naming the first Entra claim that is wrong."""
    tid = claims.get("tid")
    if type(tid) is not str or tid.lower() != tenant_id:
        if tid is None:
            raise unauthorized("invalid_tenant", "The token has no tid claim.")
        raise unauthorized(
            "invalid_tenant",
            f"The token tid {printable(tid, 60)} is not the tenant of its issuer.",
        )
    ver = claims.get("ver", version)
    if ver != version:
        raise unauthorized(
            "invalid_claim",
            f"The token ver {printable(ver, 20)} does not match its v{version} issuer.",
        )
    oid = claims.get("oid")
    if type(oid) is not str or not oid:
        raise claim_error("oid", oid)
    app = claims.get(app_claim)
    if type(app) is not str or not app:
        raise claim_error(app_claim, app)
    aud = claims.get("aud")
    if type(aud) is not str:  # PyJWT also accepts a list; Entra sends one string
        raise unauthorized("invalid_audience", "The token aud claim is not a string.")
    roles = claims.get("roles")
    if roles is None:
        roles = []
    if type(roles) is not list or any(type(role) is not str for role in roles):
        raise claim_error("roles", roles, "a list of strings")
    scp = claims.get("scp")
    if scp is None:
        scp = ""
    if type(scp) is not str:
        raise claim_error("scp", scp, "a space-separated string")
    upn = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
    name = claims.get("name")
    return Principal(
        tenant_id=tenant_id,
        object_id=oid,
        caller_app_id=app.lower(),
        audience=norm_aud(aud),
        issuer=issuer,
        roles=tuple(roles),
        scopes=tuple(scp.split()),
        token_version=version,
        name=name if type(name) is str else None,
        upn=upn if type(upn) is str else None,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def claim_error(name: str, value: object, expected: str | None = None) -> AuthError:
    if value is None:
        return unauthorized("invalid_claim", f"The token has no {name} claim.")
    if expected is None:
        expected = "a number" if name in ("exp", "nbf", "iat") else "a non-empty string"
    return unauthorized(
        "invalid_claim", f"The token {name} claim is {type(value).__name__}, not {expected}."
    )


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:.0f}"
