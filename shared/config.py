"""Every setting the app reads, in one place, validated once per distinct environment.

A bad value fails loudly with the setting's name and an example of a valid value,
instead of surfacing later as a confusing storage or token error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from shared.log_text import get_logger

log = get_logger(__name__)

# Names fixed by the product (function_app.py binds to them; infra creates them).
ALERTS_QUEUE = "alerts"
POISON_QUEUE = f"{ALERTS_QUEUE}-poison"
STORAGE_CONNECTION = "AzureWebJobsStorage"
CLAIM_CHECK_CONTAINER = "alert-payloads"

AZNS_AAD_WEBHOOK_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
DEFAULT_REQUIRED_ROLE = "ActionGroupsSecureWebhook"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
CORRELATION_MODES = ("alert", "rule")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

# Every environment variable this module reads. Settings parity tests compare it
# with the Bicep, local.settings.json.example and the README.
SETTING_NAMES: tuple[str, ...] = (
    STORAGE_CONNECTION,
    f"{STORAGE_CONNECTION}__accountName",
    f"{STORAGE_CONNECTION}__queueServiceUri",
    f"{STORAGE_CONNECTION}__tableServiceUri",
    f"{STORAGE_CONNECTION}__blobServiceUri",
    f"{STORAGE_CONNECTION}__credential",
    f"{STORAGE_CONNECTION}__clientId",
    "AAD_TENANT_IDS",
    "AAD_AUDIENCES",
    "AAD_ALLOWED_CALLER_APP_IDS",
    "AAD_REQUIRED_ROLE",
    "AAD_AUTHORITY_HOST",
    "AAD_JWKS_URI",
    "MAX_PAYLOAD_BYTES",
    "CORRELATION_MODE",
    "REOPEN_WINDOW_MINUTES",
    "FLAP_THRESHOLD",
    "FLAP_WINDOW_MINUTES",
)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and shows a valid value."""

    def __init__(self, name: str, problem: str, example: str) -> None:
        super().__init__(f"Setting {name} {problem}. Example of a valid value: {example}")
        self.setting = name


@dataclass(frozen=True)
class StorageSettings:
    """Either a connection string (Azurite, keys) or identity-based service URIs."""

    connection_string: str | None
    queue_service_uri: str | None
    table_service_uri: str | None
    blob_service_uri: str | None
    credential: str | None  # "managedidentity" selects ManagedIdentityCredential
    client_id: str | None  # user-assigned identity's client id


@dataclass(frozen=True)
class AuthSettings:
    tenant_ids: tuple[str, ...]
    audiences: tuple[str, ...]
    allowed_caller_app_ids: tuple[str, ...]
    required_role: str | None  # None: role not required (warned at start-up)
    authority_host: str
    jwks_uri: str | None  # None: derived from authority host and tenant


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    auth: AuthSettings
    max_payload_bytes: int
    correlation_mode: str
    reopen_window_minutes: int
    flap_threshold: int
    flap_window_minutes: int


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))


def _required_csv(env: Mapping[str, str], name: str, example: str) -> tuple[str, ...]:
    values = _csv(_get(env, name))
    if not values:
        raise ConfigError(name, "is missing or empty", example)
    return values


T = TypeVar("T")


def _parsed(
    env: Mapping[str, str],
    name: str,
    default: T,
    parse: Callable[[str], T],
    example: str,
) -> T:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(name, f"is invalid ({exc}): {raw!r}", example) from None


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _https_url(raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ValueError("must be an absolute http(s) URL")
    return raw.rstrip("/")


def _storage(env: Mapping[str, str]) -> StorageSettings:
    prefix = STORAGE_CONNECTION
    conn = _get(env, prefix)
    account = _get(env, f"{prefix}__accountName")
    uris = {kind: _get(env, f"{prefix}__{kind}ServiceUri") for kind in ("queue", "table", "blob")}
    if account:
        for kind in uris:
            uris[kind] = uris[kind] or f"https://{account}.{kind}.core.windows.net"
    if not conn and not all(uris.values()):
        missing = [f"{prefix}__{k}ServiceUri" for k, v in uris.items() if not v]
        raise ConfigError(
            prefix,
            "is missing: set the connection string, or "
            f"{prefix}__accountName, or all of {', '.join(missing)}",
            "UseDevelopmentStorage=true (Azurite), or "
            f"{prefix}__accountName=mystorageaccount with a managed identity",
        )
    if conn and "=" not in conn:
        raise ConfigError(prefix, "is not a connection string", "UseDevelopmentStorage=true")
    credential = _get(env, f"{prefix}__credential")
    if credential and credential.lower() != "managedidentity":
        raise ConfigError(f"{prefix}__credential", f"is {credential!r}", "managedidentity")
    return StorageSettings(
        connection_string=conn,
        queue_service_uri=None if conn else uris["queue"],
        table_service_uri=None if conn else uris["table"],
        blob_service_uri=None if conn else uris["blob"],
        credential=credential.lower() if credential else None,
        client_id=_get(env, f"{prefix}__clientId"),
    )


def _guids(name: str, values: tuple[str, ...], example: str) -> tuple[str, ...]:
    for value in values:
        if not _GUID.match(value):
            raise ConfigError(name, f"holds {value!r}, which is not a GUID", example)
    return tuple(v.lower() for v in values)


def _auth(env: Mapping[str, str]) -> AuthSettings:
    guid_example = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    tenants = _guids(
        "AAD_TENANT_IDS",
        _required_csv(env, "AAD_TENANT_IDS", guid_example),
        guid_example,
    )
    audiences = _required_csv(
        env,
        "AAD_AUDIENCES",
        "api://itsm-receiver-contoso,11111111-2222-3333-4444-555555555555",
    )
    callers_raw = _csv(_get(env, "AAD_ALLOWED_CALLER_APP_IDS"))
    callers = _guids(
        "AAD_ALLOWED_CALLER_APP_IDS",
        callers_raw or (AZNS_AAD_WEBHOOK_APP_ID,),
        AZNS_AAD_WEBHOOK_APP_ID,
    )
    # An explicitly empty AAD_REQUIRED_ROLE means "no role required"; absent means default.
    role: str | None
    role = _get(env, "AAD_REQUIRED_ROLE") if "AAD_REQUIRED_ROLE" in env else DEFAULT_REQUIRED_ROLE
    authority = _parsed(
        env, "AAD_AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST, _https_url, DEFAULT_AUTHORITY_HOST
    )
    jwks = _parsed(
        env,
        "AAD_JWKS_URI",
        None,
        _https_url,
        "https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys",
    )
    return AuthSettings(
        tenant_ids=tenants,
        audiences=audiences,
        allowed_caller_app_ids=callers,
        required_role=role,
        authority_host=authority,
        jwks_uri=jwks,
    )


def _correlation_mode(raw: str) -> str:
    mode = raw.lower()
    if mode not in CORRELATION_MODES:
        raise ValueError(f"must be one of {', '.join(CORRELATION_MODES)}")
    return mode


def storage_settings(environ: Mapping[str, str] | None = None) -> StorageSettings:
    """Only the storage settings (tools such as scripts/replay_poison.py need no others)."""
    return _storage(os.environ if environ is None else environ)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises ConfigError naming the bad one."""
    env = os.environ if environ is None else environ
    return Settings(
        storage=_storage(env),
        auth=_auth(env),
        max_payload_bytes=_parsed(
            env, "MAX_PAYLOAD_BYTES", 1024 * 1024, _int_between(1024, 100 * 1024 * 1024), "1048576"
        ),
        correlation_mode=_parsed(env, "CORRELATION_MODE", "alert", _correlation_mode, "alert"),
        reopen_window_minutes=_parsed(
            env, "REOPEN_WINDOW_MINUTES", 60, _int_between(0, 525600), "60"
        ),
        flap_threshold=_parsed(env, "FLAP_THRESHOLD", 4, _int_between(2, 1000), "4"),
        flap_window_minutes=_parsed(env, "FLAP_WINDOW_MINUTES", 60, _int_between(1, 525600), "60"),
    )


_cache: dict[tuple[str | None, ...], Settings] = {}


def get_settings() -> Settings:
    """Settings for the current environment, validated once per distinct set of values.

    Keyed on the raw values so that a changed environment (tests, a slot swap
    reloading settings) is never served stale settings or stale caches built on them.
    """
    key = tuple(os.environ.get(name) for name in SETTING_NAMES)
    settings = _cache.get(key)
    if settings is None:
        settings = load_settings()
        if settings.auth.required_role is None:
            log.warning(
                "AAD_REQUIRED_ROLE is empty: tokens without an app role are accepted. "
                "Set it to %s unless you know why not.",
                DEFAULT_REQUIRED_ROLE,
            )
        _cache.clear()
        _cache[key] = settings
    return settings
