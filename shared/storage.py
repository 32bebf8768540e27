"""Clients for the app's own storage account, built from the AzureWebJobsStorage settings.

Locally that is a connection string (Azurite); in Azure it is the identity-based form
(`AzureWebJobsStorage__accountName` or the `__*ServiceUri` settings, with `__credential`
and `__clientId`), which the host understands for its own triggers and which we honour
for the clients our code creates, so one set of settings serves both.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import requests
import requests.adapters
import requests.auth
import requests.cookies
import requests.hooks
import requests.structures
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.blob import LinearRetry as BlobRetry
from azure.storage.queue import LinearRetry as QueueRetry
from azure.storage.queue import QueueClient

from shared.config import StorageSettings

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
# The host runs up to batchSize + newBatchThreshold (24) messages at once, plus HTTP
# requests: requests' default pool of 10 connections would discard and reopen sockets.
_POOL_SIZE = 64


class _SdkAuth(requests.auth.AuthBase):
    """The SDK signs each request itself; this only stops requests looking for a .netrc.

    Without an auth of its own, requests stats ~/.netrc and ~/_netrc on every request:
    about a tenth of the CPU a storage call costs us.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


# What requests reads from the environment (any case). Where none is set, as in Azure's
# workers, it is told not to look: it would scan every variable on every request, which in
# a Functions worker's large environment costs about a tenth of a storage call's CPU.
_REQUESTS_ENVIRONMENT = frozenset(
    ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle")
)


def _environment_matters() -> bool:
    return any(name.lower() in _REQUESTS_ENVIRONMENT for name in os.environ)


class _StorageSession(requests.Session):
    """A requests session that sends the SDK's requests without the generic per-call work.

    azure-core gives every request to Session.request, which builds a Request, merges the
    session's headers, cookies, auth, hooks and environment into it with general-purpose
    code, then consults redirect and cookie machinery after the answer: a tenth to a fifth
    of the Python CPU a storage call costs us. For what the SDK sends (URL with its query,
    headers, a body; redirects off, handled by azure-core), with nothing configured that
    this work would apply (no environment trust, cookies, hooks, proxies or auth), the
    outcome is the same as preparing the request and handing it to the adapter, which is
    what `request` then does. Anything else takes requests' own path.
    """

    def request(  # type: ignore[override]  # same parameters, untyped like azure-core's call
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        if (
            params or cookies or files or auth or proxies or hooks or json is not None
            or allow_redirects or self.trust_env or self.cookies or self.proxies
            or any(self.hooks.values()) or not isinstance(self.auth, _SdkAuth)
        ):  # fmt: skip
            return super().request(
                method, url, params, data, headers, cookies, files, auth, timeout,
                allow_redirects, proxies, hooks, stream, verify, cert, json,
            )  # fmt: skip
        merged = requests.structures.CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method.upper())
        prepared.prepare_url(url, None)
        prepared.prepare_headers({k: v for k, v in merged.items() if v is not None})
        prepared.prepare_body(data or {}, None)
        prepared.hooks = requests.hooks.default_hooks()
        stream = self.stream if stream is None else stream
        response = self.get_adapter(url).send(
            prepared,
            stream=stream,
            timeout=timeout,
            verify=self.verify if verify is None else verify,
            cert=self.cert if cert is None else cert,
            proxies={},
        )
        if "set-cookie" in response.headers:  # then later requests take requests' own path
            requests.cookies.extract_cookies_to_jar(self.cookies, prepared, response.raw)
        if not stream:
            response.content  # noqa: B018  # read the body, as Session.send does
        return response


def _transport() -> RequestsTransport:
    session = _StorageSession()
    session.auth = _SdkAuth()
    session.trust_env = _environment_matters()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # The timeouts must be given to the transport itself: the SDKs only apply them to a
    # transport they build.
    return RequestsTransport(session=session, session_owner=True, **_TIMEOUTS)


def _table_options() -> dict[str, Any]:
    return {
        **_TIMEOUTS,
        "retry_total": _RETRIES,
        "retry_backoff_factor": 0.2,
        "transport": _transport(),
    }


def _queue_options() -> dict[str, Any]:
    retry = QueueRetry(backoff=0.3, random_jitter_range=0.2, retry_total=_RETRIES)  # type: ignore[arg-type]  # floats work; the hint is narrow
    return {**_TIMEOUTS, "retry_policy": retry, "transport": _transport()}


def _blob_options() -> dict[str, Any]:
    retry = BlobRetry(backoff=0.3, random_jitter_range=0.2, retry_total=_RETRIES)  # type: ignore[arg-type]
    return {**_TIMEOUTS, "retry_policy": retry, "transport": _transport()}


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
