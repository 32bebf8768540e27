"""Entra ID (Azure AD) bearer token verification for the Secure Webhook and the work item API.

Usage from an HTTP handler::

    try:
        principal = verify(req.headers.get("Authorization"), policy, correlation_id=cid)
    except AuthError as err:
        return json_response(err.status, err.body, err.headers)  # 401, 403 or 503

``policy`` defaults to the Secure Webhook policy (``ingest_policy()``); the work item API
builds its own ``AccessPolicy`` (audiences, caller apps, roles, delegated tokens, scopes).

PyJWT does the generic JWS/JWT work: base64url and JSON of the segments, the RS256
signature (``algorithms=["RS256"]``), the required claims, the issuer and the audience
lists; its ``PyJWKSet`` turns the published keys into verification keys. This module adds
what is specific to Entra and to this service: the header policy (RS256 only, no ``crit``,
a ``kid``) before any key is touched, the tenant (from ``iss``) before any key fetch, the
key endpoint's rate limits, the lifetime checks on the verifier's own clock, the Entra
claims (``tid`` = tenant of ``iss``, ``ver``, ``oid``, ``appid``/``azp``, ``roles``,
``scp``), the policy, and the cache. The checks, their order and their answers are listed
in docs/security.md ("The checks, in order"); issuers per cloud are in ``CLOUDS`` below
and in docs/security.md ("Issuers per cloud").

Checks up to the Entra claims are cached per token (SHA-256 of ``Bearer <token>``, bounded
LRU, never past ``exp``, one cache per AuthSettings value); the policy is judged per policy
object, so one cache serves several APIs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import jwt
from jwt.types import Options
from jwt.utils import base64url_decode

from shared import entra_claims
from shared.access_policy import GUID as _GUID
from shared.access_policy import AccessPolicy as AccessPolicy
from shared.access_policy import AuthError as AuthError
from shared.access_policy import Principal as Principal
from shared.access_policy import audience_spellings
from shared.access_policy import authorize as _authorize
from shared.access_policy import forbidden as _forbidden  # noqa: F401 (auth._forbidden)
from shared.access_policy import printable as _safe
from shared.access_policy import unauthorized as _unauthorized
from shared.access_policy import unavailable as _unavailable
from shared.config import AuthSettings, get_settings
from shared.entra_clouds import CLOUDS as CLOUDS
from shared.entra_clouds import Cloud as Cloud
from shared.entra_clouds import cloud_for_authority as cloud_for_authority
from shared.entra_clouds import default_jwks_uri, is_entra_url
from shared.entra_clouds import issuers_for_tenant as issuers_for_tenant
from shared.log_text import get_logger, url_for_log
from shared.signing_keys import DEFAULT_FAILURE_BACKOFF_SECONDS as DEFAULT_FAILURE_BACKOFF_SECONDS
from shared.signing_keys import DEFAULT_KEYS_MAX_AGE_SECONDS as DEFAULT_KEYS_MAX_AGE_SECONDS
from shared.signing_keys import (
    DEFAULT_REFRESH_INTERVAL_SECONDS as DEFAULT_REFRESH_INTERVAL_SECONDS,
)
from shared.signing_keys import JWKS_TIMEOUT_SECONDS as JWKS_TIMEOUT_SECONDS
from shared.signing_keys import KeyFetchError as KeyFetchError
from shared.signing_keys import KeysUnavailable, SigningKeys, UnknownKid
from shared.signing_keys import fetch_url as fetch_url
from shared.signing_keys import parse_jwks as parse_jwks

log = get_logger(__name__)

# An Entra access token is 1-3 KB; anything near this limit is hostile or broken, and is
# rejected before it is decoded.
MAX_AUTHORIZATION_CHARS = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 120.0
MAX_LEEWAY_SECONDS = 300.0
DEFAULT_CACHE_SIZE = 1024


# --------------------------------------------------------------------------- verifier

_sha256 = hashlib.sha256
_CANONICAL_PREFIX = b"Bearer "  # cache keys: SHA-256 of b"Bearer " + token
_HEADER_CACHE_SIZE = 64
# A compact JWS in the RFC 7515 alphabet (no padding, no whitespace); the rest is PyJWT's.
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# PyJWT reads the wall clock and takes no clock argument, so the lifetime comparisons run
# here on the verifier's clock (the one the cache expires by); PyJWT requires the claims.
_DECODE_OPTIONS: Options = {
    "require": ["exp", "iat", "iss", "aud"],
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")  # an "exp": Infinity would never expire


def _json_object(segment: bytes) -> dict[str, Any] | None:
    """The JSON object in a base64url segment (strict UTF-8, no NaN/Infinity), or None."""
    try:
        value = json.loads(base64url_decode(segment).decode(), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # bad base64url or UTF-8 are ValueErrors too
        return None
    return value if type(value) is dict else None


def _guid_or_none(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and _GUID.fullmatch(value) else None


class _Entry:
    """A cached verification; ``allowed`` memoizes the last policy that accepted it."""

    __slots__ = ("allowed", "expires", "principal")

    def __init__(self, expires: float, principal: Principal) -> None:
        self.expires = expires
        self.principal = principal
        self.allowed: AccessPolicy | None = None


class _RejectedError(Exception):
    """An AuthError plus the (unverified) claims worth logging."""

    def __init__(self, error: AuthError, claims: Mapping[str, Any] | None) -> None:
        self.error = error
        self.claims = claims


class TokenVerifier:
    """Verifies tokens for one AuthSettings value (tenants, authority, key URI).

    Thread-safe: key sets and the verification cache are guarded by locks (single dict
    operations rely on the GIL), everything else is immutable after construction.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.time,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
        failure_backoff: float = DEFAULT_FAILURE_BACKOFF_SECONDS,
        keys_max_age: float = DEFAULT_KEYS_MAX_AGE_SECONDS,
        fetch_timeout: float = JWKS_TIMEOUT_SECONDS,
        fetch: Callable[[str, float], bytes] = fetch_url,
    ) -> None:
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS:g} seconds")
        self.settings = settings
        self.leeway = float(leeway)
        self._clock = clock
        self._cache_size = cache_size
        self.keys = SigningKeys(
            clock=clock,
            refresh_interval=refresh_interval,
            failure_backoff=failure_backoff,
            max_age=keys_max_age,
            timeout=fetch_timeout,
            fetch=fetch,
        )
        # iss -> (tenant id, token version, key set URL, caller app claim)
        self._issuers: dict[str, tuple[str, str, str, str]] = {}
        for tid in settings.tenant_ids:
            url = settings.jwks_uri or default_jwks_uri(settings.authority_host, tid)
            for iss, version in issuers_for_tenant(settings.authority_host, tid).items():
                app_claim = "appid" if version == "1.0" else "azp"
                self._issuers[iss] = (tid, version, url, app_claim)
        self._audiences = audience_spellings(settings.audiences)
        if settings.jwks_uri and not is_entra_url(settings.jwks_uri):
            log.warning(
                "AAD_JWKS_URI=%s: tokens are checked against keys that are not Entra's. "
                "Local development only; leave AAD_JWKS_URI unset in Azure.",
                url_for_log(settings.jwks_uri),
            )
        self._headers: dict[bytes, str] = {}  # header segment that passed our checks -> kid
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Counters for tests and diagnostics (approximate under concurrency).
        self.verifications = 0  # full verifications (cache misses that got to parsing)
        self.rejections = 0

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._issuers)

    @property
    def stats(self) -> dict[str, int]:
        return {
            "verifications": self.verifications,
            "rejections": self.rejections,
            "cached": len(self._cache),
            "key_fetches": self.keys.fetches,
        }

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ---- public entry point

    def verify(
        self,
        authorization: str | None,
        policy: AccessPolicy,
        *,
        correlation_id: str | None = None,
    ) -> Principal:
        """The caller behind an Authorization header value, or AuthError."""
        # Fast path: a token verified before. A hit means these exact bytes passed every
        # check, so the header checks (size, comma, whitespace) cannot fail and are left
        # to the slow path. The cache key is the SHA-256 of "Bearer <token>", so a header in
        # that canonical form is hashed as it is, without copying the token out first.
        digest = None
        if authorization is not None and authorization.startswith("Bearer "):
            try:
                digest = _sha256(authorization.encode()).digest()
            except UnicodeEncodeError:
                pass  # the slow path explains
            else:
                entry = self._cache.get(digest)
                if entry is not None and self._clock() < entry.expires:
                    try:  # noqa: SIM105 (contextlib.suppress costs more than the call)
                        self._cache.move_to_end(digest)
                    except KeyError:  # evicted by another thread meanwhile
                        pass
                    principal = entry.principal
                    if entry.allowed is not policy:  # policy decisions are memoized per entry
                        try:
                            _authorize(principal, policy)
                        except AuthError as exc:
                            self._log_rejection(exc, None, principal, correlation_id)
                            raise
                        entry.allowed = policy
                    return principal
        return self._verify(authorization, policy, correlation_id, digest)

    def _verify(
        self,
        authorization: str | None,
        policy: AccessPolicy,
        correlation_id: str | None,
        digest: bytes | None,
    ) -> Principal:
        claims: Mapping[str, Any] | None = None
        principal: Principal | None = None
        try:
            token = _bearer_token(authorization)
            try:
                raw = token.encode("ascii")
            except UnicodeEncodeError:
                raise _unauthorized("malformed_token", "The token is not ASCII.") from None
            now = self._clock()
            if digest is None or authorization is None or len(raw) != len(authorization) - 7:
                digest = _sha256(_CANONICAL_PREFIX + raw).digest()
                entry = self._cache.get(digest)
            else:  # "Bearer <token>" as is: the fast path hashed it and found no valid entry
                entry = None
            if entry is not None and now < entry.expires:  # e.g. "bearer" in lower case
                principal = entry.principal
            else:
                principal, expires = self._authenticate(raw, now)
                entry = self._remember(digest, expires, principal) if now < expires else None
            _authorize(principal, policy)
            if entry is not None:
                entry.allowed = policy  # the first cache hit need not authorize again
            return principal
        except _RejectedError as rejected:
            claims = rejected.claims
            error = rejected.error
        except AuthError as exc:
            error = exc
        except Exception:  # never a 500: an unexpected failure is a rejection
            log.exception("Token verification failed unexpectedly")
            error = _unauthorized("verification_failed", "The token could not be verified.")
        self._log_rejection(error, claims, principal, correlation_id)
        raise error

    def _remember(self, digest: bytes, expires: float, principal: Principal) -> _Entry:
        entry = _Entry(expires, principal)
        with self._cache_lock:
            self._cache[digest] = entry
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def _log_rejection(
        self,
        error: AuthError,
        claims: Mapping[str, Any] | None,
        principal: Principal | None,
        correlation_id: str | None,
    ) -> None:
        self.rejections += 1
        error.correlation_id = correlation_id or uuid.uuid4().hex
        if principal is not None:
            tid: str | None = principal.tenant_id
            app: str | None = principal.caller_app_id
        elif claims:
            # Unverified: log only GUID-shaped values, so nothing of the token leaks.
            tid = _guid_or_none(claims.get("tid"))
            app = _guid_or_none(claims.get("appid")) or _guid_or_none(claims.get("azp"))
        else:
            tid = app = None
        log.log(
            logging.ERROR if error.status >= 500 else logging.WARNING,
            "Token rejected: status=%d reason=%s detail=%s tid=%s caller_app=%s correlation_id=%s",
            error.status,
            error.error,
            error.detail,
            tid or "-",
            app or "-",
            error.correlation_id,
        )

    # ---- authentication (cached)

    def _authenticate(self, raw: bytes, now: float) -> tuple[Principal, float]:
        self.verifications += 1
        if not _COMPACT_JWS.fullmatch(raw):
            raise _malformed(raw, "The token is not a JWS (three '.'-separated segments).")
        header_segment, payload_segment, _ = raw.split(b".")
        kid = self._headers.get(header_segment) or self._parse_header(header_segment)
        claims = _json_object(payload_segment)
        if claims is None:
            raise _malformed(raw, "The token payload is not a base64url JSON object.")
        try:
            return self._check(raw, claims, kid, now)
        except AuthError as exc:
            raise _RejectedError(exc, claims) from None

    def _parse_header(self, segment: bytes) -> str:
        """Our header policy, before any key is looked at: RS256 only, no crit, a kid."""
        header = _json_object(segment)
        if header is None:
            raise _unauthorized(
                "malformed_token", "The token header is not a base64url JSON object."
            )
        alg = header.get("alg")
        if alg != "RS256":
            raise _unauthorized(
                "unsupported_algorithm",
                f"The token algorithm {_safe(alg, 20)} is not accepted; only RS256 is.",
            )
        if "crit" in header:
            raise _unauthorized(
                "unsupported_header", "The token header has critical extensions (crit)."
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthorized("missing_kid", "The token header has no kid (string).")
        # Entra reuses a handful of headers (one per signing key); bounded against floods.
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = kid
        return kid

    def _check(
        self, raw: bytes, unverified: dict[str, Any], kid: str, now: float
    ) -> tuple[Principal, float]:
        # The issuer picks the tenant, the token version and the key set: checked before
        # any key is fetched, so a foreign tenant's tokens never reach the key endpoint.
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            if iss is None:
                raise _unauthorized("invalid_issuer", "The token has no iss claim.")
            raise _unauthorized("invalid_issuer", "The token iss claim is not a string.")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise _unauthorized(
                "invalid_issuer",
                f"The token issuer {_safe(iss)} is not the v1 or v2 issuer of a "
                "configured tenant (AAD_TENANT_IDS, AAD_AUTHORITY_HOST).",
            )
        tenant_id, version, jwks_url, app_claim = issuer
        try:
            key = self.keys.get(jwks_url, kid, now)
        except UnknownKid as exc:
            raise _unauthorized("unknown_kid", exc.detail) from None
        except KeysUnavailable as exc:
            raise _unavailable(exc.detail, exc.retry_after) from None
        claims = _decode(raw, key, self._audiences, tuple(self._issuers), unverified)
        exp = entra_claims.check_lifetime(claims, now, self.leeway)

        caller = entra_claims.principal(
            claims,
            issuer=iss,
            tenant_id=tenant_id,
            version=version,
            app_claim=app_claim,
            expires=exp,
        )
        return caller, exp


def _decode(
    raw: bytes,
    key: jwt.PyJWK,
    audiences: tuple[str, ...],
    issuers: tuple[str, ...],
    unverified: Mapping[str, Any],
) -> dict[str, Any]:
    """PyJWT's checks: RS256 signature, required claims, issuer and audience lists."""
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key,
            algorithms=["RS256"],
            audience=audiences,
            issuer=issuers,
            options=_DECODE_OPTIONS,
        )
    except (jwt.InvalidSignatureError, jwt.DecodeError):
        # DecodeError here: a segment PyJWT's strict base64url refuses (e.g. a cut
        # signature); header and payload were read above, so it cannot be valid.
        raise _unauthorized(
            "invalid_signature", "The token signature does not verify with the kid's key."
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":
            raise _unauthorized("invalid_audience", "The token has no aud claim.") from None
        raise entra_claims.claim_error(exc.claim, None) from None
    except jwt.InvalidAudienceError:
        aud = unverified.get("aud")
        if not isinstance(aud, str):
            raise _unauthorized(
                "invalid_audience", "The token aud claim is not a string."
            ) from None
        raise _unauthorized(
            "invalid_audience",
            f"The token audience {_safe(aud)} is not accepted (AAD_AUDIENCES).",
        ) from None
    except jwt.PyJWTError as exc:  # nothing else is expected once our checks passed
        raise _unauthorized(
            "malformed_token", f"The token was refused: {_safe(str(exc))}."
        ) from None
    return claims


def _malformed(raw: bytes, detail: str) -> AuthError:
    # Whitespace means two tokens after "Bearer" (a cached token never holds any, so the
    # header parser leaves this check to the cache-miss path).
    if any(c in raw for c in b" \t\r\n"):
        return _two_tokens()
    return _unauthorized("malformed_token", detail)


# --------------------------------------------------------------------------- header


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise _unauthorized(
            "missing_token", "No Authorization header; send 'Authorization: Bearer <token>'."
        )
    if len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise _unauthorized(
            "token_too_large",
            f"The Authorization header is longer than {MAX_AUTHORIZATION_CHARS} characters.",
        )
    if "," in authorization:
        # The host joins repeated headers with ", "; a JWT never holds a comma.
        raise _unauthorized(
            "multiple_authorization_headers",
            "More than one Authorization header (or a comma in it); send exactly one.",
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _unauthorized(
            "invalid_scheme", "The Authorization header must use the Bearer scheme."
        )
    token = token.lstrip(" ")  # RFC 6750: "Bearer" 1*SP b64token
    if not token:
        raise _two_tokens()
    # Whitespace inside the token (two tokens) is reported by _malformed on a cache miss
    # (a cached token has none), which keeps this hot path free of a per-character scan.
    return token


def _two_tokens() -> AuthError:
    return _unauthorized(
        "invalid_authorization_header",
        "The Authorization header must hold exactly one token after 'Bearer '.",
    )


# --------------------------------------------------------------------------- module API

_verifiers: dict[AuthSettings, TokenVerifier] = {}
_verifiers_lock = threading.Lock()


def get_verifier(settings: AuthSettings | None = None) -> TokenVerifier:
    """The verifier for these settings (default: the current environment's).

    Keyed on the AuthSettings value: a settings change gets a fresh verifier, so no key
    set or cached verification outlives the settings it was made under.
    """
    auth = settings if settings is not None else get_settings().auth
    verifier = _verifiers.get(auth)
    if verifier is None:
        with _verifiers_lock:
            verifier = _verifiers.get(auth)
            if verifier is None:
                verifier = TokenVerifier(auth)
                _verifiers.clear()
                _verifiers[auth] = verifier
    return verifier


_policies: dict[AuthSettings, AccessPolicy] = {}


def ingest_policy(settings: AuthSettings | None = None) -> AccessPolicy:
    """The Secure Webhook policy built from AAD_AUDIENCES, AAD_ALLOWED_CALLER_APP_IDS and
    AAD_REQUIRED_ROLE."""
    auth = settings if settings is not None else get_settings().auth
    policy = _policies.get(auth)
    if policy is None:
        policy = AccessPolicy.from_settings(auth)
        _policies.clear()
        _policies[auth] = policy
    return policy


def verify(
    authorization: str | None,
    policy: AccessPolicy | None = None,
    *,
    settings: AuthSettings | None = None,
    correlation_id: str | None = None,
) -> Principal:
    """Verify an Authorization header value; AuthError carries the HTTP answer.

    ``policy`` defaults to the ingest policy of the same settings.
    """
    auth = settings if settings is not None else get_settings().auth
    return get_verifier(auth).verify(
        authorization,
        policy if policy is not None else ingest_policy(auth),
        correlation_id=correlation_id,
    )


def verify_ingest(
    authorization: str | None,
    settings: AuthSettings | None = None,
    *,
    correlation_id: str | None = None,
) -> Principal:
    """``verify`` with the Secure Webhook (ingest) policy of these settings."""
    return verify(authorization, settings=settings, correlation_id=correlation_id)
