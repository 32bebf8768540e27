"""The alerts queue: encoding agreed with host.json, claim checks, honest failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from shared import alert_queue
from shared.config import load_settings

REPO = Path(__file__).resolve().parent.parent
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


def _settings(connection_string: str):  # type: ignore[no-untyped-def]
    env = {
        "AzureWebJobsStorage": connection_string,
        "AAD_TENANT_IDS": TENANT,
        "AAD_AUDIENCES": "api://x",
    }
    return load_settings(env).storage


def _alert(description: str = "cpu high") -> dict[str, object]:
    return {
        "schemaVersion": "1.0",
        "alertId": "/subscriptions/s/alerts/1",
        "correlationId": "c-1",
        "receivedAt": "2026-11-26T06:00:00.000000Z",
        "monitorCondition": "Fired",
        "description": description,
    }


def test_producer_encoding_matches_host_json() -> None:
    host = json.loads((REPO / "host.json").read_text())
    assert host["extensions"]["queues"]["messageEncoding"] == alert_queue.MESSAGE_ENCODING


def test_small_alert_goes_inline(storage: str) -> None:
    settings = _settings(storage)
    raw = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"x": "ünïcode <&>"}}
    assert alert_queue.enqueue(settings, _alert(), raw) == "inline"
    [message] = QueueClient.from_connection_string(storage, "alerts").receive_messages()
    assert message.content.isascii()
    queued = alert_queue.decode(settings, message.content)
    assert queued.alert == _alert()
    assert queued.raw == raw
    assert queued.ref is None
    ref = alert_queue.ensure_stored(settings, queued)
    assert ref.container == "alert-payloads"
    assert ref.blob.startswith("2026/11/26/")
    # Content-addressed: storing the same message again names the same blob.
    assert alert_queue.ensure_stored(settings, queued) == ref


def test_large_alert_goes_through_a_claim_check(storage: str) -> None:
    settings = _settings(storage)
    raw = {"data": {"alertContext": {"rows": ["x" * 1000] * 250}}}  # ~250 KB
    assert alert_queue.enqueue(settings, _alert(), raw) == "claimCheck"
    [message] = QueueClient.from_connection_string(storage, "alerts").receive_messages()
    assert len(message.content) < 1024
    pointer = json.loads(message.content)
    assert pointer["alertId"] == "/subscriptions/s/alerts/1"
    queued = alert_queue.decode(settings, message.content)
    assert queued.raw == raw
    assert queued.ref is not None
    assert alert_queue.ensure_stored(settings, queued) == queued.ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"raw": {}}', "no 'alert' object"),
        ('{"claimCheck": {"container": "alert-payloads"}}', "malformed"),
        (
            '{"claimCheck": {"container": "other", "blob": "b", "sha256": "0", "size": 1}}',
            "unexpected",
        ),
        (
            '{"claimCheck": {"container": "alert-payloads", "blob": "x/../y", "sha256": "0",'
            ' "size": 1}}',
            "unexpected",
        ),
        (
            '{"claimCheck": {"container": "alert-payloads", "blob": "missing.json",'
            ' "sha256": "0", "size": 1}}',
            "does not exist",
        ),
    ],
)
def test_corrupt_messages_are_named(storage: str, text: str, reason: str) -> None:
    settings = _settings(storage)
    alert_queue.enqueue(settings, _alert(), {"big": "y" * 70_000})  # creates the container
    with pytest.raises(alert_queue.CorruptMessage, match=reason):
        alert_queue.decode(settings, text)


def test_tampered_claim_check_blob_is_refused(storage: str) -> None:
    settings = _settings(storage)
    alert_queue.enqueue(settings, _alert(), {"big": "y" * 70_000})
    [message] = QueueClient.from_connection_string(storage, "alerts").receive_messages()
    pointer = json.loads(message.content)["claimCheck"]
    from shared import storage as clients

    blob = clients.blob_service(settings).get_blob_client(pointer["container"], pointer["blob"])
    blob.upload_blob(b'{"alert": {}}', overwrite=True)
    with pytest.raises(alert_queue.CorruptMessage, match="sha256"):
        alert_queue.decode(settings, message.content)


def test_unreachable_storage_raises_queue_unavailable() -> None:
    closed = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    settings = _settings(closed)
    with pytest.raises(alert_queue.QueueUnavailable):
        alert_queue.enqueue(settings, _alert(), {})
    with pytest.raises(alert_queue.QueueUnavailable):
        alert_queue.enqueue(settings, _alert(), {"big": "y" * 70_000})
