"""The whole path, as Azure Monitor drives it: POST → queue in Azurite → queue function →
work item in a table in Azurite, with the real token check in front."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from tests.alert_samples import load_bytes
from tests.harness import FunctionsHost
from tests.test_alerts_http import post_alert
from tests.tokens import Mint


def _work_items(storage: str) -> list[dict[str, Any]]:
    table = TableServiceClient.from_connection_string(storage).get_table_client("workitems")
    return [dict(e) for e in table.query_entities("RowKey ge 'i|' and RowKey lt 'i}'")]


def _with_condition(body: bytes, condition: str, resolved_at: str | None = None) -> bytes:
    payload = json.loads(body)
    payload["data"]["essentials"]["monitorCondition"] = condition
    if resolved_at:
        payload["data"]["essentials"]["resolvedDateTime"] = resolved_at
    return json.dumps(payload).encode()


def test_fired_then_resolved_alert_becomes_a_resolved_work_item(
    host: FunctionsHost, storage: str, mint: Mint
) -> None:
    token = mint()
    fired = load_bytes("metric-alert-static-fired")
    status, body = post_alert(host, token, fired)
    assert status == 202, body
    assert body["monitorCondition"] == "Fired"
    queue = QueueClient.from_connection_string(storage, "alerts")
    assert queue.get_queue_properties().approximate_message_count == 1

    stats = host.run_queue("alerts", timeout=60)
    assert (stats.succeeded, stats.poisoned) == (1, 0), stats.errors
    [item] = _work_items(storage)
    alert_id = json.loads(fired)["data"]["essentials"]["alertId"]
    assert alert_id in item["alertIds"]
    assert item["state"] == "New"
    assert item["id"].startswith("WI-")

    resolved = _with_condition(fired, "Resolved", "2099-01-01T00:00:00.0000000Z")
    status, body = post_alert(host, token, resolved)
    assert status == 202, body
    host.run_queue("alerts", timeout=60)
    [item_after] = _work_items(storage)
    assert item_after["id"] == item["id"]
    assert item_after["state"] == "Resolved"
    assert item_after["resolvedAt"].startswith("2099-01-01T00:00:00")
    assert queue.get_queue_properties().approximate_message_count == 0


def test_rejected_request_queues_nothing(host: FunctionsHost, storage: str, mint: Mint) -> None:
    fired = load_bytes("metric-alert-static-fired")
    status, body = post_alert(host, mint(roles=[]), fired)
    assert status == 403
    assert body["error"] == "missing_role"
    status, body = post_alert(host, mint(), b"{not json")
    assert status == 400
    host.run_queue("alerts", timeout=30)
    assert _work_items_or_empty(storage) == []


def _work_items_or_empty(storage: str) -> list[dict[str, Any]]:
    try:
        return _work_items(storage)
    except Exception as exc:  # the table is created on first write
        if "TableNotFound" in str(exc) or "ResourceNotFound" in type(exc).__name__:
            return []
        raise


def test_missing_setting_answers_503_and_logs_its_name(
    host: FunctionsHost,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A misconfigured app says which setting is wrong, and Azure Monitor keeps retrying."""
    monkeypatch.delenv("AAD_TENANT_IDS")
    with caplog.at_level(logging.ERROR):
        status, body = post_alert(host, mint(), load_bytes("metric-alert-static-fired"))
    assert status == 503
    assert body["error"] == "service_unavailable"
    assert "AAD_TENANT_IDS" in caplog.text
    assert "Example of a valid value" in caplog.text
