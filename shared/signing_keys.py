"""Token signing keys: fetched from the key endpoint, refreshed at a bounded rate.

``parse_jwks`` leaves the JWK to key conversion to PyJWT's ``PyJWKSet``. The fetch and
refresh rules are ours, because PyJWKClient's do not fit: it refetches on every unknown
kid (a flood of made-up kids would become a flood on Entra) and has no failure backoff
(a down endpoint would hold every request for its timeout). Here an unknown kid triggers
at most one fetch per ``refresh_interval`` per key set, a failed fetch at most one retry
per ``failure_backoff`` (requests in between fail at once), and keys older than
``max_age`` are refreshed by the request that notices (and kept if that fails).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from shared.log_text import get_logger, url_for_log

log = get_logger(__name__)

DEFAULT_REFRESH_INTERVAL_SECONDS = 60.0
DEFAULT_FAILURE_BACKOFF_SECONDS = 5.0
DEFAULT_KEYS_MAX_AGE_SECONDS = 24 * 3600.0
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_MAX_BYTES = 512 * 1024
MIN_RSA_KEY_BITS = 2048


class KeysUnavailable(Exception):
    """No key could be had; ``retry_after`` seconds until the next fetch may be tried."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class UnknownKid(Exception):
    """The kid is not in the key set (after the refresh the rate limit allowed)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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


def _is_rsa_signing_jwk(jwk: object) -> bool:
    return (
        isinstance(jwk, dict)
        and jwk.get("kty") == "RSA"
        and isinstance(jwk.get("kid"), str)
        and bool(jwk["kid"])
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", "RS256") == "RS256"
    )


def parse_jwks(data: bytes) -> dict[str, jwt.PyJWK]:
    """RSA signature keys of >= 2048 bits by kid (PyJWKSet); other keys are skipped."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise KeyFetchError("key set is not JSON") from None
    raw_keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw_keys, list):
        raise KeyFetchError('key set has no "keys" list')
    candidates = []
    for jwk in filter(_is_rsa_signing_jwk, raw_keys):
        if "d" in jwk:
            log.error("Key set publishes private key material for kid %s: key ignored", jwk["kid"])
            continue
        candidates.append(jwk)
    try:
        loaded = jwt.PyJWKSet(candidates).keys if candidates else []  # skips unusable keys
    except jwt.PyJWKSetError:
        loaded = []
    keys = {
        k.key_id: k
        for k in loaded
        if k.key_id and isinstance(k.key, RSAPublicKey) and k.key.key_size >= MIN_RSA_KEY_BITS
    }
    if len(keys) < len(candidates):
        log.warning(
            "%d keys of the key set are unusable or under 2048 bits", len(candidates) - len(keys)
        )
    if not keys:
        raise KeyFetchError("key set holds no usable RSA signing key")
    return keys


class _KeySet:
    __slots__ = ("attempted_at", "failed", "fetched_at", "keys", "lock", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, jwt.PyJWK] = {}
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

    def get(self, url: str, kid: str, now: float | None = None) -> jwt.PyJWK:
        """The key for ``kid``; UnknownKid, or KeysUnavailable if the keys are unreachable."""
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
                    raise KeysUnavailable("The token signing keys could not be fetched.", wait)
                raise UnknownKid(
                    "The token's kid is not in the tenant's signing key set "
                    "(key set refreshed recently; refreshes are rate-limited).",
                )
            try:
                self._load(key_set, now)  # logs its own failure
            except KeyFetchError:
                raise KeysUnavailable(
                    "The token signing keys could not be fetched; try again later.",
                    self._failure_backoff,
                ) from None
            key = key_set.keys.get(kid)
        if key is None:
            raise UnknownKid("The token's kid is not in the tenant's signing key set.")
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
            log.error("Fetching signing keys from %s failed: %s", url_for_log(key_set.url), exc)
            raise
        except Exception as exc:  # a broken fetcher must not become a 500
            key_set.failed = True
            log.exception("Fetching signing keys from %s failed", url_for_log(key_set.url))
            raise KeyFetchError(str(exc)) from None
        key_set.keys = keys  # replaced whole: readers never see a half-built dict
        key_set.fetched_at = self._clock()
        key_set.failed = False
        log.info("Loaded %d signing keys from %s", len(keys), url_for_log(key_set.url))

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
