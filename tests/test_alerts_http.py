"""Every sample through the real `receive_alert` function (tests/harness.py, Azurite):
what lands on the queue is exactly the reviewed golden, and bad bodies get their 400.

The queued alert differs from the golden only in its delivery fields (correlation id,
receive time) and the tenant, which comes from the verified token here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from shared import alert_queue
from shared.config import get_settings
from tests.alert_samples import context_samples, envelope_samples, load_bytes, wrap_context
from tests.harness import FunctionsHost
from tests.test_alerts import GOLDEN_DIR
from tests.tokens import TENANT_A, Mint, bearer

DELIVERY_FIELDS = ("correlationId", "receivedAt", "tenantId")


@pytest.fixture
def receiver(host: FunctionsHost) -> FunctionsHost:
    return host


def post_alert(host: FunctionsHost, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST `body` to /api/alerts with `token`; the status and the JSON answer."""
    response = host.request(
        "POST",
        "/api/alerts",
        headers={"Authorization": bearer(token), "Content-Type": "application/json"},
        body=body,
    )
    return response.status_code, json.loads(response.get_body() or b"{}")


def _queued(storage: str) -> alert_queue.QueuedAlert:
    [message] = QueueClient.from_connection_string(storage, "alerts").receive_messages()
    return alert_queue.decode(get_settings().storage, message.content)


def _queue_is_empty(storage: str) -> bool:
    try:
        return not QueueClient.from_connection_string(storage, "alerts").peek_messages()
    except ResourceNotFoundError:  # never created: nothing was ever queued
        return True


def _bodies() -> list[tuple[str, bytes]]:
    bodies = [(name, load_bytes(name)) for name in envelope_samples()]
    bodies += [(name, json.dumps(wrap_context(name)).encode()) for name in context_samples()]
    return bodies


@pytest.mark.parametrize(("name", "body"), _bodies(), ids=[name for name, _ in _bodies()])
def test_sample_is_queued_as_its_golden(
    receiver: FunctionsHost,
    storage: str,
    mint: Mint,
    name: str,
    body: bytes,
) -> None:
    status, answer = post_alert(receiver, mint(), body)
    assert status == 202, answer
    queued = _queued(storage)
    alert = queued.alert
    assert alert["correlationId"] == answer["correlationId"]
    assert alert["tenantId"] == TENANT_A
    assert alert["receivedAt"].endswith("Z")
    assert len(alert["receivedAt"]) == len("2025-05-01T12:30:45.123456Z")
    golden = json.loads((GOLDEN_DIR / f"{name}.json").read_text(encoding="utf-8"))
    for field in DELIVERY_FIELDS:
        golden[field] = alert[field]
    assert alert == golden
    assert queued.raw == json.loads(body)  # the raw payload travels with it


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (load_bytes("noncommon-metric-alert-static"), "not_common_schema", "schemaId"),
        (b"{not json", "invalid_json", None),
        (b"", "empty_body", None),
        (b"[]", "not_an_object", None),
        (
            json.dumps(
                {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {}}}
            ).encode(),
            "missing_field",
            "data.essentials.alertId",
        ),
    ],
)
def test_bad_bodies_get_400_with_code_and_field(
    receiver: FunctionsHost,
    storage: str,
    mint: Mint,
    body: bytes,
    code: str,
    field: str | None,
) -> None:
    status, answer = post_alert(receiver, mint(), body)
    assert status == 400
    assert answer["error"] == code
    assert answer.get("field") == field
    assert answer["detail"]
    assert _queue_is_empty(storage)


def test_non_finite_numbers_are_accepted_and_queued(
    receiver: FunctionsHost,
    storage: str,
    mint: Mint,
) -> None:
    body = load_bytes("metric-alert-static-fired").replace(
        b'"metricValue": 100', b'"metricValue": NaN'
    )
    status, answer = post_alert(receiver, mint(), body)
    assert status == 202, answer
    queued = _queued(storage)
    assert queued.alert["summary"]["fields"]["conditions"][0]["metricValue"] == "NaN"


@pytest.mark.parametrize("signed", [True, False])
def test_chunked_request_is_told_to_send_content_length(
    receiver: FunctionsHost, storage: str, mint: Mint, signed: bool
) -> None:
    """The host drops a chunked body before the app runs: 411 says why, once the caller
    is known (an unknown caller still gets its 401 first)."""
    token = bearer(mint()) if signed else "Bearer not-a-token"
    response = receiver.request(
        "POST",
        "/api/alerts",
        headers={
            "Authorization": token,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        body=load_bytes("metric-alert-static-fired"),
    )
    answer = json.loads(response.get_body())
    if signed:
        assert response.status_code == 411
        assert answer["error"] == "length_required"
        assert "Transfer-Encoding: chunked" in answer["detail"]
        assert "Content-Length" in answer["detail"]
    else:
        assert response.status_code == 401
    assert _queue_is_empty(storage)
