"""Shared fixtures: a real Azurite for the session, a clean account per test, the host."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from tests.azurite import Azurite
from tests.harness import FunctionsHost

pytest_plugins = ["tests.auth_fixtures", "tests.workitem_fixtures"]

# The tests talk to loopback servers only. A machine's CA-bundle variables (set here for its
# own TLS proxy) would make the storage clients fall back to the SDK's default transport
# instead of the one they use in Azure's workers (shared/storage_transport.py): clear them, so
# the suite runs the production path. Tests of the fallback set what they need themselves.
for _name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite()
    server.start()
    yield server
    server.close()


def wipe(connection_string: str) -> None:
    """Delete every queue, table and container so each test starts from nothing."""
    queues = QueueServiceClient.from_connection_string(connection_string)
    for queue in queues.list_queues():
        queues.delete_queue(queue.name)
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        tables.delete_table(table.name)
    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)


@pytest.fixture
def storage(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AzureWebJobsStorage pointing at the session's Azurite, emptied after the test."""
    for name in list(os.environ):
        if name.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    yield azurite.connection_string
    if azurite.process is not None:
        wipe(azurite.connection_string)


@pytest.fixture
def app_env(storage: str, auth_env: dict[str, str]) -> dict[str, str]:
    """Every setting the app needs: Azurite storage plus token settings for the test keys."""
    return {"AzureWebJobsStorage": storage, **auth_env}


@pytest.fixture
def host(storage: str, app_env: dict[str, str]) -> FunctionsHost:
    """The function app as the Functions host would run it, against Azurite."""
    import function_app

    return FunctionsHost(function_app.app, storage)
