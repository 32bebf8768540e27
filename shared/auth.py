"""Entra ID (Azure AD) bearer token verification for the Secure Webhook and later APIs.

Usage from an HTTP handler::

    try:
        principal = verify(req.headers.get("Authorization"), policy, correlation_id=cid)
    except AuthError as err:
        return json_response(err.status, err.body, err.headers)  # 401, 403 or 503

``policy`` defaults to the Secure Webhook policy (``ingest_policy()``); a later API builds
its own ``AccessPolicy`` (audiences, caller apps, roles, delegated tokens and scopes).

Checks, in order (the first failure answers; see docs/security.md):

 1. the Authorization header: present, at most ``MAX_AUTHORIZATION_CHARS``, no comma
    (the host joins duplicate headers with ", "), scheme ``Bearer`` (case-insensitive,
    RFC 6750) followed by exactly one token;
 2. the token is a JWS compact serialization: three base64url segments, JSON header
    and JSON object payload;
 3. header ``alg`` is exactly ``RS256`` (``none``, HMAC, RS512, ES256... are rejected
    before any key is touched), no ``crit``, and a string ``kid``;
 4. ``iss`` is the v1 or v2 issuer of a configured tenant (this selects the tenant's
    key set and the token version);
 5. ``kid`` names an RSA signing key of that tenant's key set (one rate-limited refresh
    on an unknown kid; keys unreachable -> 503);
 6. the RS256 signature over the signing input;
 7. ``exp`` (required), ``nbf`` (when present) with ``leeway``; ``iat`` required and
    not in the future;
 8. ``tid`` equals the tenant in ``iss``; ``ver`` (when present) matches the issuer form;
    ``oid`` and the caller app claim (``appid`` v1, ``azp`` v2) present; ``roles`` a list
    of strings and ``scp`` a string when present;
 9. policy: ``aud`` is an accepted audience (401), delegated tokens (``scp``) only when
    the policy accepts them, then caller app, roles and scopes (403).

Steps 1-8 are cached per token (SHA-256 of ``Bearer <token>``, bounded LRU, never past ``exp``,
one cache per AuthSettings value); step 9 is judged per policy, so one cache serves several
APIs.

Issuers per cloud (v1 ``https://{v1 host}/{tid}/``, v2 ``https://{v2 host}/{tid}/v2.0``),
chosen from AAD_AUTHORITY_HOST through ``CLOUDS``:

======================  ===================================  ================================
cloud / authority host  v1 issuer host                       v2 issuer host
======================  ===================================  ================================
Azure public            sts.windows.net                      login.microsoftonline.com
  login.microsoftonline.com, login.windows.net, login.microsoft.com
Azure US Government     sts.windows.net,                     login.microsoftonline.us
  login.microsoftonline.us, login.usgovcloudapi.net
                        login.microsoftonline.us (see CLOUDS)
Azure China (21Vianet)  sts.chinacloudapi.cn                 login.partner.microsoftonline.cn
  login.partner.microsoftonline.cn, login.chinacloudapi.cn
======================  ===================================  ================================

``{AAD_AUTHORITY_HOST}/{tid}/v2.0`` is always accepted as a v2 issuer as well. An authority
host outside this table gets no v1 issuer: use v2 tokens there. Sources are listed in
docs/security.md ("Issuers per cloud").
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import json.scanner
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from shared.config import AuthSettings, get_settings

log = logging.getLogger(__name__)

# An Entra access token is 1-3 KB; anything near this limit is hostile or broken, and is
# rejected before it is decoded.
MAX_AUTHORIZATION_CHARS = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 120.0
MAX_LEEWAY_SECONDS = 300.0
DEFAULT_CACHE_SIZE = 1024
# Key endpoint: one fetch per key set at most every REFRESH_INTERVAL when an unknown kid
# shows up, at most one per FAILURE_BACKOFF after a failed fetch; keys older than
# KEYS_MAX_AGE are refreshed by the request that notices (and kept if that fails).
DEFAULT_REFRESH_INTERVAL_SECONDS = 60.0
DEFAULT_FAILURE_BACKOFF_SECONDS = 5.0
DEFAULT_KEYS_MAX_AGE_SECONDS = 24 * 3600.0
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_MAX_BYTES = 512 * 1024
MIN_RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_hosts: tuple[str, ...]
    v1_issuer_hosts: tuple[str, ...]
    v2_issuer_host: str


# See the module docstring and docs/security.md for the sources of each host.
CLOUDS: tuple[Cloud, ...] = (
    Cloud(
        "Azure public",
        ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com"),
        ("sts.windows.net",),
        "login.microsoftonline.com",
    ),
    Cloud(
        "Azure US Government",
        ("login.microsoftonline.us", "login.usgovcloudapi.net"),
        # Microsoft Q&A names sts.windows.net; the Bot Framework SDK accepts
        # login.microsoftonline.us for Government v1 tokens. Both are signed with the
        # Government keys we fetch, so accepting both widens nothing.
        ("sts.windows.net", "login.microsoftonline.us"),
        "login.microsoftonline.us",
    ),
    Cloud(
        "Azure China (21Vianet)",
        ("login.partner.microsoftonline.cn", "login.chinacloudapi.cn"),
        ("sts.chinacloudapi.cn",),
        "login.partner.microsoftonline.cn",
    ),
)


def cloud_for_authority(authority_host: str) -> Cloud | None:
    """The cloud whose authority aliases include this URL's host, or None."""
    host = (urlsplit(authority_host).hostname or "").lower()
    return next((c for c in CLOUDS if host in c.authority_hosts), None)


def issuers_for_tenant(authority_host: str, tenant_id: str) -> dict[str, str]:
    """Accepted ``iss`` values for one tenant, mapped to the token version they imply."""
    authority = authority_host.rstrip("/")
    issuers = {f"{authority}/{tenant_id}/v2.0": "2.0"}
    cloud = cloud_for_authority(authority)
    if cloud is not None:
        issuers[f"https://{cloud.v2_issuer_host}/{tenant_id}/v2.0"] = "2.0"
        for host in cloud.v1_issuer_hosts:
            issuers[f"https://{host}/{tenant_id}/"] = "1.0"
    return issuers


def _is_entra_url(url: str) -> bool:
    parts = urlsplit(url)
    hosts = {h for cloud in CLOUDS for h in cloud.authority_hosts}
    return parts.scheme == "https" and (parts.hostname or "").lower() in hosts


def default_jwks_uri(authority_host: str, tenant_id: str) -> str:
    return f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called, from a verified token."""

    tenant_id: str
    object_id: str
    caller_app_id: str
    audience: str
    issuer: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]  # non-empty only for delegated (user) tokens
    token_version: str  # "1.0" or "2.0"
    name: str | None
    upn: str | None  # upn / unique_name (v1) or preferred_username (v2)
    expires_at: datetime

    @property
    def is_delegated(self) -> bool:
        return bool(self.scopes)


def _description(text: str) -> str:
    # RFC 6750 error_description: %x20-21 / %x23-5B / %x5D-7E only.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


class AuthError(Exception):
    """A rejected request: ``status``, ``body`` and ``headers`` make the HTTP answer."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.correlation_id: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """JSON body: ``{"error": code, "detail": sentence}`` plus e.g. the missing role."""
        return {"error": self.error, "detail": self.detail, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.body)


def _unauthorized(error: str, detail: str) -> AuthError:
    header = f'Bearer error="invalid_token", error_description="{_description(detail)}"'
    return AuthError(401, error, detail, {"WWW-Authenticate": header})


def _forbidden(error: str, detail: str, **extra: Any) -> AuthError:
    header = f'Bearer error="insufficient_scope", error_description="{_description(detail)}"'
    return AuthError(403, error, detail, {"WWW-Authenticate": header}, extra)


def _unavailable(detail: str, retry_after: float) -> AuthError:
    seconds = max(1, min(300, math.ceil(retry_after)))
    return AuthError(503, "signing_keys_unavailable", detail, {"Retry-After": str(seconds)})


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class AccessPolicy:
    """What one API accepts, on top of a verified token from a configured tenant.

    ``allowed_caller_app_ids`` None means any app; ``required_roles`` and
    ``required_scopes`` are any-of (empty: none required). Scopes apply to delegated
    tokens only, which are refused unless ``accept_delegated``. ``role_hint`` ends the
    403 for a missing role: where the role comes from and who gets it.
    """

    audiences: tuple[str, ...]
    allowed_caller_app_ids: tuple[str, ...] | None = None
    required_roles: tuple[str, ...] = ()
    accept_delegated: bool = False
    required_scopes: tuple[str, ...] = ()
    role_hint: str = "assign it to the caller"
    _audiences: frozenset[str] = field(init=False, repr=False, compare=False)
    _apps: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _roles: frozenset[str] = field(init=False, repr=False, compare=False)
    _scopes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.audiences:
            raise ValueError("AccessPolicy needs at least one audience")
        # Precomputed sets keep the per-request checks to a few hash lookups.
        object.__setattr__(self, "_audiences", frozenset(_norm_aud(a) for a in self.audiences))
        apps = self.allowed_caller_app_ids
        object.__setattr__(
            self, "_apps", None if apps is None else frozenset(a.lower() for a in apps)
        )
        object.__setattr__(self, "_roles", frozenset(self.required_roles))
        object.__setattr__(self, "_scopes", frozenset(self.required_scopes))

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> AccessPolicy:
        """The Secure Webhook (ingest) policy: app tokens of the allowed callers only."""
        return cls(
            audiences=auth.audiences,
            allowed_caller_app_ids=auth.allowed_caller_app_ids,
            required_roles=(auth.required_role,) if auth.required_role else (),
            accept_delegated=False,
            role_hint="AAD_REQUIRED_ROLE; assign it to the caller's service principal",
        )


_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _norm_aud(value: str) -> str:
    # Client ids are GUIDs: compare them case-insensitively; URIs stay exact.
    if len(value) == 36 and _GUID.fullmatch(value):
        return value.lower()
    return value


# --------------------------------------------------------------------------- keys


class KeyFetchError(Exception):
    """The key endpoint could not be read or gave nothing usable."""


def fetch_url(url: str, timeout: float) -> bytes:
    """GET a key set with urllib; every failure becomes KeyFetchError."""
    # The URL comes from validated settings (http/https only), never from a token.
    request = urllib.request.Request(  # noqa: S310
        url, headers={"Accept": "application/json", "User-Agent": "secure-export-receiver"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data: bytes = response.read(JWKS_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise KeyFetchError(f"HTTP {exc.code} from the key endpoint") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeyFetchError(f"key endpoint unreachable ({type(exc).__name__}: {reason})") from None
    if len(data) > JWKS_MAX_BYTES:
        raise KeyFetchError(f"key set larger than {JWKS_MAX_BYTES} bytes")
    return data


def parse_jwks(data: bytes) -> dict[str, RSAPublicKey]:
    """RSA signature keys by kid; other key types and malformed keys are skipped."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise KeyFetchError("key set is not JSON") from None
    raw_keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw_keys, list):
        raise KeyFetchError('key set has no "keys" list')
    keys: dict[str, RSAPublicKey] = {}
    for jwk in raw_keys:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if jwk.get("use", "sig") != "sig" or jwk.get("alg", "RS256") != "RS256":
            continue
        if "d" in jwk:
            log.error("Key set publishes private key material for kid %s: key ignored", kid)
            continue
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            log.warning("Key %s in the key set is unusable: %s", kid, exc)
            continue
        if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_KEY_BITS:
            log.warning("Key %s in the key set is not an RSA key of >= 2048 bits", kid)
            continue
        keys[kid] = key
    if not keys:
        raise KeyFetchError("key set holds no usable RSA signing key")
    return keys


class _KeySet:
    __slots__ = ("attempted_at", "failed", "fetched_at", "keys", "lock", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, RSAPublicKey] = {}
        self.fetched_at: float | None = None
        self.attempted_at: float | None = None
        self.failed = False
        self.lock = threading.Lock()


class SigningKeys:
    """Key sets by URL, fetched once, refreshed on an unknown kid at a bounded rate.

    Rotation works without a restart: a token signed with a new key names a kid we do
    not know, which triggers one refresh (at most one per ``refresh_interval`` per key
    set, so a flood of bogus kids costs the key endpoint one request per interval).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
        failure_backoff: float = DEFAULT_FAILURE_BACKOFF_SECONDS,
        max_age: float = DEFAULT_KEYS_MAX_AGE_SECONDS,
        timeout: float = JWKS_TIMEOUT_SECONDS,
        fetch: Callable[[str, float], bytes] = fetch_url,
    ) -> None:
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._failure_backoff = failure_backoff
        self._max_age = max_age
        self._timeout = timeout
        self._fetch = fetch
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # attempts, for tests and diagnostics

    def _set(self, url: str) -> _KeySet:
        key_set = self._sets.get(url)
        if key_set is None:
            with self._lock:
                key_set = self._sets.setdefault(url, _KeySet(url))
        return key_set

    def preload(self, url: str, jwks: Mapping[str, Any]) -> None:
        """Install a key set without fetching it (benchmarks, tools)."""
        key_set = self._set(url)
        with key_set.lock:
            key_set.keys = parse_jwks(json.dumps(jwks).encode())
            key_set.fetched_at = key_set.attempted_at = self._clock()
            key_set.failed = False

    def get(self, url: str, kid: str, now: float | None = None) -> RSAPublicKey:
        """The key for ``kid``; AuthError 401 if unknown, 503 if the keys are unreachable."""
        key_set = self._sets.get(url) or self._set(url)
        key = key_set.keys.get(kid)
        if key is not None:
            fetched = key_set.fetched_at
            if now is None:
                now = self._clock()
            if fetched is not None and now - fetched > self._max_age:
                self._refresh_stale(key_set)
            return key
        with key_set.lock:
            key = key_set.keys.get(kid)  # another thread may have refreshed meanwhile
            if key is not None:
                return key
            now = self._clock()
            wait = self._wait(key_set, now)
            if wait > 0:
                if not key_set.keys:
                    raise _unavailable("The token signing keys could not be fetched.", wait)
                raise _unauthorized(
                    "unknown_kid",
                    "The token's kid is not in the tenant's signing key set "
                    "(key set refreshed recently; refreshes are rate-limited).",
                )
            try:
                self._load(key_set, now)  # logs its own failure
            except KeyFetchError:
                raise _unavailable(
                    "The token signing keys could not be fetched; try again later.",
                    self._failure_backoff,
                ) from None
            key = key_set.keys.get(kid)
        if key is None:
            raise _unauthorized(
                "unknown_kid", "The token's kid is not in the tenant's signing key set."
            )
        return key

    def _wait(self, key_set: _KeySet, now: float) -> float:
        """Seconds until the next fetch of this key set is allowed (<= 0: now)."""
        if key_set.attempted_at is None:
            return 0.0
        interval = self._failure_backoff if key_set.failed else self._refresh_interval
        return key_set.attempted_at + interval - now

    def _load(self, key_set: _KeySet, now: float) -> None:
        key_set.attempted_at = now
        self.fetches += 1
        try:
            keys = parse_jwks(self._fetch(key_set.url, self._timeout))
        except KeyFetchError as exc:
            key_set.failed = True
            log.error("Fetching signing keys from %s failed: %s", key_set.url, exc)
            raise
        except Exception as exc:  # a broken fetcher must not become a 500
            key_set.failed = True
            log.exception("Fetching signing keys from %s failed", key_set.url)
            raise KeyFetchError(str(exc)) from None
        key_set.keys = keys  # replaced whole: readers never see a half-built dict
        key_set.fetched_at = self._clock()
        key_set.failed = False
        log.info("Loaded %d signing keys from %s", len(keys), key_set.url)

    def _refresh_stale(self, key_set: _KeySet) -> None:
        # Only one thread refreshes; the others keep using the stale (still valid) keys.
        if not key_set.lock.acquire(blocking=False):
            return
        try:
            now = self._clock()
            if self._wait(key_set, now) <= 0:
                # On failure keep the old keys; retried after the failure backoff.
                with contextlib.suppress(KeyFetchError):
                    self._load(key_set, now)
        finally:
            key_set.lock.release()


# --------------------------------------------------------------------------- verifier

_sha256 = hashlib.sha256
_CANONICAL_PREFIX = b"Bearer "  # cache keys: SHA-256 of b"Bearer " + token
_PKCS1 = padding.PKCS1v15()
# RS256 with the digest from hashlib: the same check as verify(data, PKCS1v15(), SHA256()),
# which builds a hash object on every call and costs about 0.5 us more.
_PREHASHED_SHA256 = Prehashed(hashes.SHA256())
_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
_HEADER_CACHE_SIZE = 64


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


# The C scanner behind json.loads, called directly: a third cheaper per token, and it
# refuses NaN/Infinity (an "exp": Infinity would never expire).
_scan_json = json.scanner.make_scanner(
    json.JSONDecoder(parse_constant=_reject_constant)  # type: ignore[arg-type]
)


# "=" padding to append, by segment length % 4 (a length of 4k+1 is never valid base64).
_PADDING = (b"", b"===", b"==", b"=")


def _b64decode(segment: bytes) -> bytes:
    """Strict base64url (no padding in the token): anything outside the alphabet fails."""
    return binascii.a2b_base64(
        segment.translate(_URLSAFE_TO_STD) + _PADDING[len(segment) & 3], strict_mode=True
    )


def _json_object(segment: bytes) -> dict[str, Any] | None:
    """The JSON object in a base64url segment, or None if it is not one."""
    try:
        text = _b64decode(segment).decode("utf-8")
        value, end = _scan_json(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(text) and text[end:].strip():
        return None
    return value if type(value) is dict else None


def _safe(value: object, limit: int = 120) -> str:
    """A claim value fit for a message: printable, short, never a whole token."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(c if " " <= c <= "~" else "?" for c in text)


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
        if settings.jwks_uri and not _is_entra_url(settings.jwks_uri):
            log.warning(
                "AAD_JWKS_URI=%s: tokens are checked against keys that are not Entra's. "
                "Local development only; leave AAD_JWKS_URI unset in Azure.",
                settings.jwks_uri,
            )
        self._headers: dict[bytes, str] = {}  # validated header segment -> kid
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
        parts = raw.split(b".")
        if len(parts) != 3:
            raise _malformed(raw, "The token is not a JWS (three '.'-separated segments).")
        header_segment, payload_segment, signature_segment = parts
        kid = self._headers.get(header_segment)
        if kid is None:
            kid = self._parse_header(raw, header_segment)
        claims = _json_object(payload_segment)
        if claims is None:
            raise _malformed(raw, "The token payload is not a base64url JSON object.")
        try:
            signature = _b64decode(signature_segment)
        except ValueError:
            raise _malformed(raw, "The token signature is not base64url.") from None
        signing_input = raw[: len(header_segment) + 1 + len(payload_segment)]
        try:
            return self._check(claims, kid, signing_input, signature, now)
        except AuthError as exc:
            raise _RejectedError(exc, claims) from None

    def _parse_header(self, raw: bytes, segment: bytes) -> str:
        header = _json_object(segment)
        if header is None:
            raise _malformed(raw, "The token header is not a base64url JSON object.")
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
        self,
        claims: dict[str, Any],
        kid: str,
        signing_input: bytes,
        signature: bytes,
        now: float,
    ) -> tuple[Principal, float]:
        # 4. issuer -> tenant, version and key set (before any key is fetched)
        iss = claims.get("iss")
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

        # 5-6. key and signature
        key = self.keys.get(jwks_url, kid, now)
        try:
            key.verify(signature, _sha256(signing_input).digest(), _PKCS1, _PREHASHED_SHA256)
        except InvalidSignature:
            raise _unauthorized(
                "invalid_signature", "The token signature does not verify with the kid's key."
            ) from None

        # 7. lifetime
        leeway = self.leeway
        exp = claims.get("exp")
        # Numbers: exact types, so not bool (an int subclass); _scan_json gives no NaN/inf.
        if type(exp) is not int and type(exp) is not float:
            raise _claim_error("exp", exp)
        if now > exp + leeway:
            raise _unauthorized(
                "token_expired",
                f"The token expired at {_iso(exp)} (now {_iso(now)}, leeway {leeway:g} s).",
            )
        nbf = claims.get("nbf")
        if nbf is not None:
            if type(nbf) is not int and type(nbf) is not float:
                raise _claim_error("nbf", nbf)
            if now + leeway < nbf:
                raise _unauthorized(
                    "token_not_yet_valid",
                    f"The token is not valid before {_iso(nbf)} "
                    f"(now {_iso(now)}, leeway {leeway:g} s).",
                )
        iat = claims.get("iat")
        if type(iat) is not int and type(iat) is not float:
            raise _claim_error("iat", iat)
        if now + leeway < iat:
            raise _unauthorized(
                "token_not_yet_valid",
                f"The token was issued in the future ({_iso(iat)}, now {_iso(now)}).",
            )

        # 8. tenant, version and identity claims
        tid = claims.get("tid")
        if type(tid) is not str or tid.lower() != tenant_id:
            if tid is None:
                raise _unauthorized("invalid_tenant", "The token has no tid claim.")
            raise _unauthorized(
                "invalid_tenant",
                f"The token tid {_safe(tid, 60)} is not the tenant of its issuer.",
            )
        ver = claims.get("ver", version)
        if ver != version:
            raise _unauthorized(
                "invalid_claim",
                f"The token ver {_safe(ver, 20)} does not match its v{version} issuer.",
            )
        oid = claims.get("oid")
        if type(oid) is not str or not oid:
            raise _claim_error("oid", oid)
        app = claims.get(app_claim)
        if type(app) is not str or not app:
            raise _claim_error(app_claim, app)
        aud = claims.get("aud")
        if type(aud) is not str or not aud:
            if aud is None:
                raise _unauthorized("invalid_audience", "The token has no aud claim.")
            raise _unauthorized("invalid_audience", "The token aud claim is not a string.")
        roles = claims.get("roles")
        if roles is None:
            roles = ()
        elif type(roles) is list:
            for role in roles:
                if type(role) is not str:
                    raise _claim_error("roles", roles, "a list of strings")
            roles = tuple(roles)
        else:
            raise _claim_error("roles", roles, "a list of strings")
        scp = claims.get("scp")
        if scp is None:
            scopes: tuple[str, ...] = ()
        elif type(scp) is str:
            scopes = tuple(scp.split())
        else:
            raise _claim_error("scp", scp, "a space-separated string")
        upn = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
        name = claims.get("name")
        # Positional: keyword arguments cost a third of this call. Order of Principal's fields.
        principal = Principal(
            tenant_id,
            oid,
            app.lower(),  # caller_app_id
            _norm_aud(aud),  # audience
            iss,  # issuer
            roles,
            scopes,
            version,  # token_version
            name if type(name) is str else None,
            upn if type(upn) is str else None,
            datetime.fromtimestamp(exp, UTC),  # expires_at
        )
        return principal, exp


def _malformed(raw: bytes, detail: str) -> AuthError:
    # Whitespace means two tokens after "Bearer" (a cached token never holds any, so the
    # header parser leaves this check to the cache-miss path).
    if any(c in raw for c in b" \t\r\n"):
        return _two_tokens()
    return _unauthorized("malformed_token", detail)


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:.0f}"


def _claim_error(name: str, value: object, expected: str | None = None) -> AuthError:
    if value is None:
        return _unauthorized("invalid_claim", f"The token has no {name} claim.")
    if expected is None:
        expected = "a number" if name in ("exp", "nbf", "iat") else "a non-empty string"
    return _unauthorized(
        "invalid_claim", f"The token {name} claim is {type(value).__name__}, not {expected}."
    )


# --------------------------------------------------------------------------- authorization


def _authorize(principal: Principal, policy: AccessPolicy) -> None:
    if principal.audience not in policy._audiences:  # both normalized by _norm_aud
        raise _unauthorized(
            "invalid_audience",
            f"The token audience {_safe(principal.audience)} is not accepted (AAD_AUDIENCES).",
        )
    if principal.scopes and not policy.accept_delegated:
        raise _forbidden(
            "delegated_token_not_allowed",
            "Delegated (user) tokens are not accepted here; use an application token.",
        )
    apps = policy._apps
    if apps is not None and principal.caller_app_id not in apps:
        raise _forbidden(
            "caller_app_not_allowed",
            f"The caller app {principal.caller_app_id} is not allowed "
            "(AAD_ALLOWED_CALLER_APP_IDS).",
            caller_app_id=principal.caller_app_id,
        )
    if policy._roles and policy._roles.isdisjoint(principal.roles):
        required = sorted(policy._roles)
        raise _forbidden(
            "missing_role",
            f"The token lacks the app role {' or '.join(required)} ({policy.role_hint}).",
            required_roles=required,
            caller_app_id=principal.caller_app_id,
        )
    if principal.scopes and policy._scopes and policy._scopes.isdisjoint(principal.scopes):
        required = sorted(policy._scopes)
        raise _forbidden(
            "missing_scope",
            f"The token lacks the scope {' or '.join(required)}.",
            required_scopes=required,
        )


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
