"""The Azure SDK loggers stay quiet in a Functions worker (shared/storage.py, settle_sdk)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared import storage as clients
from shared.config import load_settings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def worker_logging() -> Iterator[_Records]:
    """The root logger as the Python worker sets it: INFO, a handler shipping everything."""
    root = logging.getLogger()
    handler, level = _Records(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("azure").setLevel(logging.NOTSET)
    clients.settle_sdk.cache_clear()


def _settings(connection_string: str) -> object:
    env = {"AzureWebJobsStorage": connection_string, "AAD_TENANT_IDS": TENANT, "AAD_AUDIENCES": "x"}
    return load_settings(env).storage


def test_storage_calls_log_nothing_below_warning(
    storage: str, worker_logging: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_LOG_LEVEL", raising=False)
    logging.getLogger("azure").setLevel(logging.NOTSET)  # as in a fresh worker
    clients.settle_sdk.cache_clear()
    queue = clients.queue_client(_settings(storage), "quiet")  # type: ignore[arg-type]
    queue.create_queue()
    queue.send_message("x")
    azure = [r for r in worker_logging.records if r.name.startswith("azure")]
    assert azure == []
    assert (
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").getEffectiveLevel()
        == logging.WARNING
    )
    # For contrast: at the worker's INFO, the SDK's HTTP logging policy reports every request.
    logging.getLogger("azure").setLevel(logging.NOTSET)
    queue.send_message("y")
    assert any(r.name.startswith("azure.core") for r in worker_logging.records)


def test_a_level_set_on_purpose_stays(worker_logging: _Records) -> None:
    logging.getLogger("azure").setLevel(logging.DEBUG)
    clients.settle_sdk.cache_clear()
    clients.settle_sdk()
    assert logging.getLogger("azure").level == logging.DEBUG


def test_azure_log_level_chooses_another_level(
    worker_logging: _Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_LOG_LEVEL", "info")
    clients.settle_sdk.cache_clear()
    clients.settle_sdk()
    assert logging.getLogger("azure").level == logging.INFO
