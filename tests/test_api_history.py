"""A work item's history page by page, and an alert event's raw payload, end to end.

The harness, Azurite, minted tokens and work items made by the real processor; every
answer is checked against the OpenAPI document (tests/api_support.py).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from shared import alert_queue, processor
from tests import alert_factory as af
from tests.api_support import NONE, READ, Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _busy_item(api: Api, name: str, events: int) -> str:
    api.configure(CORRELATION_MODE="rule")
    rule = {"rule": f"rule {name}", "rule_id": f"/subscriptions/s/rules/{name}"}
    alerts = [af.fired(f"{name}-{n}", n * 5, **rule) for n in range(events)]
    touched = api.alerts(*alerts)
    assert len(touched) == 1
    return touched[0]


def test_the_detail_shows_the_newest_page_and_the_rest_pages_back(api: Api) -> None:
    item_id = _busy_item(api, "paged", 130)
    body = api.item(item_id).body
    assert len(body["history"]) == 50
    times = [h["time"] for h in body["history"]]
    assert times == sorted(times, reverse=True)  # newest first
    token = body["historyContinuationToken"]
    assert token
    seen = [h["id"] for h in body["history"]]
    pages = 0
    while token:
        answer = api.get(
            f"/api/workitems/{item_id}/history",
            query={"top": 37, "continuationToken": token},
            role=READ,
        )
        assert answer.status == 200, answer
        assert len(answer.body["value"]) <= 37
        seen += [h["id"] for h in answer.body["value"]]
        token = answer.body["continuationToken"]
        pages += 1
    assert pages == 3  # 80 older entries, 37 a page
    assert len(seen) == len(set(seen)) == 130
    first = api.get(f"/api/workitems/{item_id}/history", query={"top": 200}, role=READ).body
    assert [h["id"] for h in first["value"]] == seen
    assert first["continuationToken"] is None
    assert first["value"][-1]["effect"] == "created"


def test_bad_requests_for_history(api: Api) -> None:
    item_id = _busy_item(api, "bad", 3)
    for query in ({"top": 0}, {"top": 201}, {"top": "x"}, {"continuationToken": "nope!"}):
        answer = api.get(f"/api/workitems/{item_id}/history", query=query, role=READ)
        assert answer.status == 400, (query, answer)
        assert answer.body["error"]
    other = _busy_item(api, "other", 60)
    token = api.item(other).body["historyContinuationToken"]
    answer = api.get(
        f"/api/workitems/{item_id}/history", query={"continuationToken": token}, role=READ
    )
    assert answer.status == 400  # another item's token
    assert api.get("/api/workitems/WI-0000000000/history", role=READ).status == 404
    assert api.get(f"/api/workitems/{item_id}/history", role=NONE).status == 403


def test_the_payload_of_an_event_as_azure_monitor_sent_it(api: Api) -> None:
    raw: dict[str, Any] = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"n": 1}}
    alert = af.fired("payload-1", 1)
    processor.handle(alert_queue.encode(alert, raw), 1, "payload-message")
    [item_id] = api.alerts(af.redelivered(alert))
    body = api.item(item_id).body
    event_id = body["history"][0]["id"]
    answer = api.get(f"/api/workitems/{item_id}/events/{event_id}/payload", role=READ)
    assert answer.status == 200, answer
    assert answer.body == raw
    assert answer.headers["Content-Type"].startswith("application/json")
    for bad in ("0000000000000000", "x", event_id.lower() + "0"):
        missing = api.get(f"/api/workitems/{item_id}/events/{bad}/payload", role=READ)
        assert missing.status == 404, missing
        assert missing.body["error"] == "not_found"
    manual = api.patch(item_id, {"note": "looked at it"}, "*")
    note_id = manual.body["history"][0]["id"]
    assert api.get(f"/api/workitems/{item_id}/events/{note_id}/payload").status == 404


def test_a_payload_kept_in_a_claim_check_blob(api: Api) -> None:
    noise = base64.b64encode(os.urandom(90_000)).decode()  # does not deflate below 60 KiB
    raw = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"noise": noise}}
    alert = af.fired("payload-big", 1)
    processor.handle(alert_queue.encode(alert, raw), 1, "big-message")
    [item_id] = api.alerts(af.redelivered(alert))
    body = api.item(item_id).body
    assert body["history"][0]["alert"]["payloadBlob"].startswith("alert-payloads/")
    event_id = body["history"][0]["id"]
    answer = api.get(f"/api/workitems/{item_id}/events/{event_id}/payload", role=READ)
    assert answer.status == 200
    assert answer.body == raw
