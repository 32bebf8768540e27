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
from urllib.parse import urlsplit

from shared.log_text import get_logger

log = get_logger(__name__)

# Names fixed by the product (function_app.py binds to them; infra creates them).
ALERTS_QUEUE = "alerts"
POISON_QUEUE = f"{ALERTS_QUEUE}-poison"
STORAGE_CONNECTION = "AzureWebJobsStorage"
CLAIM_CHECK_CONTAINER = "alert-payloads"
# Two-way sync with Azure Monitor (shared/alert_sync.py): the outbox queue and the table
# holding each alert's sync status per work item.
ALERT_SYNC_QUEUE = "alert-state-sync"
ALERT_SYNC_POISON_QUEUE = f"{ALERT_SYNC_QUEUE}-poison"
ALERT_SYNC_TABLE = "alertsync"

AZNS_AAD_WEBHOOK_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
DEFAULT_REQUIRED_ROLE = "ActionGroupsSecureWebhook"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
CORRELATION_MODES = ("alert", "rule")
# Azure Resource Manager of each Entra authority (the national clouds' documented pairs):
# ARM_ENDPOINT defaults to the one of AAD_AUTHORITY_HOST.
ARM_ENDPOINTS = {
    "https://login.microsoftonline.com": "https://management.azure.com",  # public
    "https://login.microsoftonline.us": "https://management.usgovcloudapi.net",  # US Gov
    "https://login.chinacloudapi.cn": "https://management.chinacloudapi.cn",  # China (21Vianet)
}

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
    "AAD_OPERATOR_TENANT_IDS",
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
    "SYNC_ALERT_STATE",
    "ARM_ENDPOINT",
    "BOARD_CLIENT_ID",
    "BOARD_API_SCOPE",
    "RETENTION_DAYS",
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
class AlertSyncSettings:
    enabled: bool  # SYNC_ALERT_STATE: a person's state changes reach the Azure alert
    arm_endpoint: str | None  # None: unknown cloud and no ARM_ENDPOINT (sync fails, says so)


@dataclass(frozen=True)
class BoardSettings:
    """What the web board signs in with (GET /api/board-config); None: cannot be derived."""

    client_id: str | None
    api_scope: str | None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    auth: AuthSettings
    max_payload_bytes: int
    correlation_mode: str
    reopen_window_minutes: int
    flap_threshold: int
    flap_window_minutes: int
    alert_sync: AlertSyncSettings
    board: BoardSettings
    retention_days: int
    # Tenants whose callers see every tenant's work items and CIs (a service provider that
    # operates its customers' alerts); empty: each caller sees its own tenant only.
    operator_tenant_ids: tuple[str, ...] = ()


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
    guid_example = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
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


def _board(env: Mapping[str, str], auth: AuthSettings) -> BoardSettings:
    """Defaults come from AAD_AUDIENCES (the client id and the Application ID URI), which
    name the same app registration the board signs in to."""
    client_example = "11111111-2222-3333-4444-555555555555"
    client_id = _get(env, "BOARD_CLIENT_ID")
    if client_id is not None:
        client_id = _guids("BOARD_CLIENT_ID", (client_id,), client_example)[0]
    else:
        client_id = next((a.lower() for a in auth.audiences if _GUID.match(a)), None)
    scope = _get(env, "BOARD_API_SCOPE")
    if scope is not None and (any(c.isspace() for c in scope) or "/" not in scope):
        raise ConfigError(
            "BOARD_API_SCOPE",
            f"is not one scope URI: {scope!r}",
            "api://contoso/user_impersonation",
        )
    if scope is None:
        uri = next((a for a in auth.audiences if not _GUID.match(a)), None)
        scope = f"{uri.rstrip('/')}/user_impersonation" if uri else None
    return BoardSettings(client_id=client_id, api_scope=scope)


def _operators(env: Mapping[str, str], auth: AuthSettings) -> tuple[str, ...]:
    """AAD_OPERATOR_TENANT_IDS: GUIDs, each one of AAD_TENANT_IDS (no token of another tenant
    is accepted at all, so anything else would be a setting that silently does nothing)."""
    example = auth.tenant_ids[0] if auth.tenant_ids else "aaaabbbb-0000-cccc-1111-dddd2222eeee"
    operators = _guids(
        "AAD_OPERATOR_TENANT_IDS", _csv(_get(env, "AAD_OPERATOR_TENANT_IDS")), example
    )
    for tenant in operators:
        if tenant not in auth.tenant_ids:
            raise ConfigError(
                "AAD_OPERATOR_TENANT_IDS",
                f"names {tenant}, which is not in AAD_TENANT_IDS (its tokens are refused)",
                example,
            )
    return operators


def _correlation_mode(raw: str) -> str:
    mode = raw.lower()
    if mode not in CORRELATION_MODES:
        raise ValueError(f"must be one of {', '.join(CORRELATION_MODES)}")
    return mode


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


def _arm_endpoint(raw: str) -> str:
    url = urlsplit(_https_url(raw))
    if url.path or url.query or url.fragment or url.username or url.password:
        raise ValueError("must be the endpoint's origin, without a path, query or credentials")
    if url.scheme != "https" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("must be https (plain http only for a loopback test server)")
    return f"{url.scheme}://{url.netloc}"


def _alert_sync(env: Mapping[str, str], authority_host: str) -> AlertSyncSettings:
    example = "https://management.azure.com"
    return AlertSyncSettings(
        enabled=_parsed(env, "SYNC_ALERT_STATE", True, _bool, "true"),
        arm_endpoint=_parsed(
            env, "ARM_ENDPOINT", ARM_ENDPOINTS.get(authority_host), _arm_endpoint, example
        ),
    )


def storage_settings(environ: Mapping[str, str] | None = None) -> StorageSettings:
    """Only the storage settings (tools such as scripts/replay_poison.py need no others)."""
    return _storage(os.environ if environ is None else environ)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises ConfigError naming the bad one."""
    env = os.environ if environ is None else environ
    auth = _auth(env)
    return Settings(
        storage=_storage(env),
        auth=auth,
        max_payload_bytes=_parsed(
            env, "MAX_PAYLOAD_BYTES", 1024 * 1024, _int_between(1024, 100 * 1024 * 1024), "1048576"
        ),
        correlation_mode=_parsed(env, "CORRELATION_MODE", "alert", _correlation_mode, "alert"),
        reopen_window_minutes=_parsed(
            env, "REOPEN_WINDOW_MINUTES", 60, _int_between(0, 525600), "60"
        ),
        flap_threshold=_parsed(env, "FLAP_THRESHOLD", 4, _int_between(2, 1000), "4"),
        flap_window_minutes=_parsed(env, "FLAP_WINDOW_MINUTES", 60, _int_between(1, 525600), "60"),
        alert_sync=_alert_sync(env, auth.authority_host),
        board=_board(env, auth),
        retention_days=_parsed(env, "RETENTION_DAYS", 180, _int_between(1, 36500), "180"),
        operator_tenant_ids=_operators(env, auth),
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
