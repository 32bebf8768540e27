"""Clients for the app's own storage account, built from the AzureWebJobsStorage settings.

Locally that is a connection string (Azurite); in Azure it is the identity-based form
(`AzureWebJobsStorage__accountName` or the `__*ServiceUri` settings, with `__credential`
and `__clientId`), which the host understands for its own triggers and which we honour
for the clients our code creates, so one set of settings serves both.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.settings import settings as sdk_settings
from azure.data.tables import TableClient, TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.blob import LinearRetry as BlobRetry
from azure.storage.queue import LinearRetry as QueueRetry
from azure.storage.queue import QueueClient

from shared.config import StorageSettings
from shared.storage_transport import HttpClientTransport, wants_default

# Fail fast: Azure Monitor gives up on us after about 10 s, and a hung socket is
# worse than a quick 503 it will retry.
_CONNECT_TIMEOUT_S = 5
_READ_TIMEOUT_S = 10
_TIMEOUTS: dict[str, Any] = {
    "connection_timeout": _CONNECT_TIMEOUT_S,
    "read_timeout": _READ_TIMEOUT_S,
}
# Two quick retries inside a call; beyond that the caller's own retry takes over
# (Azure Monitor for ingest, the queue's redelivery for processing). The storage
# SDKs' default first back-off is 15 s, longer than Azure Monitor waits.
_RETRIES = 2


@cache
def settle_sdk() -> None:
    """Process-wide azure-core settings, once, before the first client is built.

    Loggers: the Functions Python worker sets the root logger to INFO (DEBUG with
    PYTHON_ENABLE_DEBUG_LOGGING) and ships every record to the host, whose host.json lets
    our functions' INFO through. At INFO, azure-core's HttpLoggingPolicy formats every
    request and answer (URL, all headers) of every storage call, and azure-identity notes
    every token it gets: client CPU and log volume per request, for nothing we read. The
    "azure" loggers therefore start at WARNING (failures still show) unless a level was set
    on them already; AZURE_LOG_LEVEL, the SDK's own setting (debug, info, warning, error),
    chooses another level when set.

    Tracing: until a value is set in code, azure-core looks AZURE_TRACING_ENABLED and
    AZURE_SDK_TRACING_IMPLEMENTATION up in os.environ on every request (its
    DistributedTracingPolicy), about 5 % of a request's client CPU once the transport is
    lean. They are fixed at what the environment says now; a value set later in code (an
    OpenTelemetry distro's setup) still wins.
    """
    azure = logging.getLogger("azure")
    if os.environ.get("AZURE_LOG_LEVEL"):
        azure.setLevel(sdk_settings.log_level())
    elif azure.level == logging.NOTSET:  # a level set on purpose (by a test, say) stays
        azure.setLevel(logging.WARNING)
    sdk_settings.tracing_enabled = sdk_settings.tracing_enabled()
    sdk_settings.tracing_implementation = sdk_settings.tracing_implementation()


def _transport() -> dict[str, Any]:
    """The transport option for a client: ours (shared/storage_transport.py, about half the
    client CPU per request), or, when the environment asks for a proxy or a custom CA bundle,
    none, so the SDK builds its default (requests) transport, which honours both; the
    timeouts passed with the options apply to either."""
    settle_sdk()
    if wants_default():
        return {}
    return {"transport": HttpClientTransport(**_TIMEOUTS)}


def _table_options() -> dict[str, Any]:
    return {
        **_TIMEOUTS,
        "retry_total": _RETRIES,
        "retry_backoff_factor": 0.2,
        **_transport(),
    }


def _queue_options() -> dict[str, Any]:
    retry = QueueRetry(backoff=0.3, random_jitter_range=0.2, retry_total=_RETRIES)  # type: ignore[arg-type]  # floats work; the hint is narrow
    return {**_TIMEOUTS, "retry_policy": retry, **_transport()}


def _blob_options() -> dict[str, Any]:
    retry = BlobRetry(backoff=0.3, random_jitter_range=0.2, retry_total=_RETRIES)  # type: ignore[arg-type]
    return {**_TIMEOUTS, "retry_policy": retry, **_transport()}


@cache
def credential(settings: StorageSettings) -> TokenCredential:
    if settings.credential == "managedidentity":
        return ManagedIdentityCredential(client_id=settings.client_id)
    return DefaultAzureCredential(managed_identity_client_id=settings.client_id)


@cache
def queue_client(settings: StorageSettings, queue_name: str) -> QueueClient:
    if settings.connection_string:
        return QueueClient.from_connection_string(
            settings.connection_string, queue_name, **_queue_options()
        )
    assert settings.queue_service_uri  # guaranteed by config validation
    return QueueClient(
        settings.queue_service_uri, queue_name, credential=credential(settings), **_queue_options()
    )


@cache
def table_service(settings: StorageSettings) -> TableServiceClient:
    if settings.connection_string:
        return TableServiceClient.from_connection_string(
            settings.connection_string, **_table_options()
        )
    assert settings.table_service_uri
    return TableServiceClient(
        settings.table_service_uri, credential=credential(settings), **_table_options()
    )


@cache
def table_client(settings: StorageSettings, table_name: str) -> TableClient:
    """A client of one table with a pipeline of its own, for modules outside the work item
    store. `TableServiceClient.get_table_client()` re-links the service's shared pipeline
    policies, which breaks requests other threads have in flight (shared/store/base.py
    builds its clients once for that reason); a standalone client shares nothing."""
    if settings.connection_string:
        return TableClient.from_connection_string(
            settings.connection_string, table_name, **_table_options()
        )
    assert settings.table_service_uri
    return TableClient(
        settings.table_service_uri, table_name, credential=credential(settings), **_table_options()
    )


@cache
def blob_service(settings: StorageSettings) -> BlobServiceClient:
    if settings.connection_string:
        return BlobServiceClient.from_connection_string(
            settings.connection_string, **_blob_options()
        )
    assert settings.blob_service_uri
    return BlobServiceClient(
        settings.blob_service_uri, credential=credential(settings), **_blob_options()
    )


@cache
def _blob_client_options(settings: StorageSettings) -> dict[str, Any]:
    return _blob_options()  # one transport (connection pool) for every per-blob client


def blob_client(settings: StorageSettings, container: str, name: str) -> BlobClient:
    """A client for one blob, built on its own pipeline over a shared connection pool.

    Deriving it from the shared service client (get_blob_client) would re-link that
    client's pipeline policies while other threads have requests in flight through them.
    """
    options = _blob_client_options(settings)
    if settings.connection_string:
        return BlobClient.from_connection_string(
            settings.connection_string, container, name, **options
        )
    assert settings.blob_service_uri
    return BlobClient(
        settings.blob_service_uri, container, name, credential=credential(settings), **options
    )
