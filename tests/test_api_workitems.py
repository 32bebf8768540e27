"""GET and PATCH /api/workitems/{id} end to end: the harness, Azurite, minted tokens and
work items made by the real processor. Every answer is checked against the OpenAPI doc."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import workitem_index
from shared.workitems import TRANSITIONS
from tests import alert_factory as af
from tests.api_support import READ, USER_UPN, Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint

STATES = ("New", "Acknowledged", "InProgress", "Resolved", "Closed")


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def test_get_returns_the_item_its_cis_and_history(api: Api) -> None:
    other = af.VM.replace("vm-web-01", "vm-web-02")
    [item_id] = api.alerts(af.fired("get-1", 1, cis=(af.VM, other), severity="Sev1"))
    api.alerts(af.resolved("get-1", 1, 9, cis=(af.VM, other), severity="Sev1"))
    answer = api.item(item_id.lower())
    body = answer.body
    assert body["id"] == item_id
    assert body["state"] == "Resolved"
    assert body["resolution"] == "resolved in Azure Monitor"
    assert body["severity"] == "Sev1"
    assert body["priority"] == 2
    assert body["firedAt"] == af.at(1)
    assert body["resolvedAt"] == af.at(9)
    assert body["title"] == "CPU above 90% on vm-web-01 (+1 more)"
    assert body["alertRule"] == "CPU above 90%"
    assert body["alertRuleId"] == af.RULE_ID
    assert [c["key"] for c in body["configurationItems"]] == sorted([af.VM.lower(), other.lower()])
    for ci in body["configurationItems"]:
        assert ci["id"] == workitem_index.ci_id(workitem_index.ci_hash(ci["key"], af.TENANT))
    assert [h["effect"] for h in body["history"]] == ["resolved", "created"]  # newest first
    assert body["history"][1]["alert"]["condition"] == "Fired"
    assert body["history"][0]["alert"]["resolvedAt"] == af.at(9)
    assert body["historyContinuationToken"] is None
    assert answer.etag.startswith('"')
    assert not answer.etag.startswith("W/")
    assert answer.headers["Cache-Control"] == "no-store"


def test_unknown_and_malformed_ids(api: Api) -> None:
    answer = api.get("/api/workitems/WI-0000000000")
    assert answer.status == 404
    assert answer.body["error"] == "not_found"
    for bad in ("WI-000", "42", "WI-00000000O0", "%00", "WI-0000000000%20x"):
        answer = api.get(f"/api/workitems/{bad}")
        assert (answer.status, answer.body["error"]) == (400, "invalid_id"), bad
    assert api.patch("WI-0000000000", {"note": "x"}, "*").status == 404
    assert api.patch("nope", {"note": "x"}, "*").status == 400
    answer = api.get("/api/workitems/WI-0000000000", query={"expand": "all"})
    assert answer.status == 400
    assert answer.body["error"] == "unknown_parameter"


# -- transitions ---------------------------------------------------------------------------


def _item_in(api: Api, state: str, name: str) -> str:
    [item_id] = api.alerts(af.fired(name, 0))
    if state == "Resolved":
        api.alerts(af.resolved(name, 0, 5))
    elif state != "New":
        path = {
            "Acknowledged": ["Acknowledged"],
            "InProgress": ["InProgress"],
            "Closed": ["Closed"],
        }
        for target in path[state]:
            assert api.patch(item_id, {"state": target}, "*").status == 200
    assert api.item(item_id).body["state"] == state
    return item_id


@pytest.mark.parametrize("current", STATES)
def test_every_transition_allowed_and_refused(api: Api, current: str) -> None:
    allowed = TRANSITIONS[current]
    for target in STATES:
        item_id = _item_in(api, current, f"tr-{current}-{target}")
        before = api.item(item_id)
        answer = api.patch(item_id, {"state": target, "note": "why"}, before.etag)
        if target in allowed:
            assert answer.status == 200, (current, target, answer)
            assert answer.body["state"] == target
            assert answer.etag != before.etag
            entry = answer.body["history"][0]
            assert entry["effect"] == "manual"
            assert entry["note"] == "why"
        else:
            assert answer.status == 409, (current, target, answer)
            assert answer.body["error"] == "invalid_transition"
            assert answer.body["state"] == current
            assert answer.body["requested"] == target
            assert answer.body["allowedTransitions"] == list(allowed)
            after = api.item(item_id)
            assert after.etag == before.etag
            assert after.body == {
                **before.body,
                "correlationId": after.body["correlationId"],
            }


def test_reopen_a_resolved_item_then_azure_resolves_it_again(api: Api) -> None:
    item_id = _item_in(api, "Resolved", "reopen-1")
    answer = api.patch(item_id, {"state": "New", "note": "still broken"}, "*", user=True)
    assert answer.status == 200
    assert answer.body["state"] == "New"
    assert answer.body["resolvedAt"] is None
    assert "reopened" in " ".join(answer.body["history"][0]["changes"]).lower()
    # A late copy of the old Resolved does not undo the person's reopen.
    api.alerts(af.redelivered(af.resolved("reopen-1", 0, 5)))
    assert api.item(item_id).body["state"] == "New"


def _now_minutes(offset: float = 0) -> float:
    """Alert time `offset` minutes from now (people's changes carry the real time)."""
    return (datetime.now(UTC) - af.BASE).total_seconds() / 60 + offset


def test_reopen_of_a_closed_item_keeps_later_items_apart(api: Api) -> None:
    api.configure(CORRELATION_MODE="rule", REOPEN_WINDOW_MINUTES=60)
    [first] = api.alerts(af.fired("rc-1", _now_minutes(-10)))
    assert api.patch(first, {"state": "Closed"}, "*").status == 200
    second = [i for i in api.alerts(af.fired("rc-2", _now_minutes(1))) if i != first]
    assert len(second) == 1, "a fire after the close opens a new item"
    answer = api.patch(first, {"state": "New"}, "*")
    assert answer.status == 200
    assert answer.body["state"] == "New"
    assert api.item(second[0]).body["state"] == "New", "the newer item is still there"


# -- manual decisions and late alert events ------------------------------------------------


def test_closed_item_is_not_reopened_by_a_stale_fired(api: Api) -> None:
    fired = af.fired("late-1", _now_minutes(-10))
    [item_id] = api.alerts(fired)
    assert api.patch(item_id, {"state": "Closed", "note": "done"}, "*", user=True).status == 200
    again = af.fired("late-1", _now_minutes(1), description="fired again")
    api.alerts(af.redelivered(fired), again)
    body = api.item(item_id).body
    assert body["state"] == "Closed"
    assert body["resolution"] == f"closed by {USER_UPN}: done"
    assert "the work item is Closed: its state does not change" in body["history"][0]["changes"]


def test_acknowledgement_survives_duplicate_fired(api: Api) -> None:
    fired = af.fired("ack-1", 0)
    [item_id] = api.alerts(fired)
    assert api.patch(item_id, {"state": "Acknowledged"}, "*", user=True).status == 200
    api.alerts(af.redelivered(fired), af.redelivered(fired, 1))
    assert api.item(item_id).body["state"] == "Acknowledged"


def test_resolved_from_azure_resolves_an_acknowledged_item(api: Api) -> None:
    [item_id] = api.alerts(af.fired("ack-2", 0))
    assert api.patch(item_id, {"state": "Acknowledged"}, "*", user=True).status == 200
    api.alerts(af.resolved("ack-2", 0, 7))
    body = api.item(item_id).body
    assert body["state"] == "Resolved"
    assert body["resolution"] == "resolved in Azure Monitor"
    resolved = [h for h in body["history"] if h["effect"] == "resolved"]
    assert resolved
    assert f"(it was Acknowledged by {USER_UPN})" in " ".join(resolved[-1]["changes"])


# -- assignment, priority, notes -----------------------------------------------------------


def test_assign_prioritize_and_annotate(api: Api) -> None:
    [item_id] = api.alerts(af.fired("as-1", 0, custom={"itsm.assignmentGroup": "Platform"}))
    body = api.item(item_id).body
    assert body["assignmentGroup"] == "Platform"
    assert body["assignee"] is None
    answer = api.patch(
        item_id,
        {"assignee": "bob@contoso.example", "assignmentGroup": "Web Ops", "priority": 1},
        "*",
        user=True,
    )
    assert answer.status == 200, answer
    assert answer.body["assignee"] == "bob@contoso.example"
    assert answer.body["assignmentGroup"] == "Web Ops"
    assert answer.body["priority"] == 1
    assert answer.body["state"] == "New"
    changes = " ".join(answer.body["history"][0]["changes"])
    assert "bob@contoso.example" in changes
    assert "Web Ops" in changes
    assert "priority 1" in changes
    # A later alert event keeps the person's choices.
    api.alerts(af.fired("as-1", 2, custom={"itsm.assignmentGroup": "Platform"}))
    body = api.item(item_id).body
    assert (body["assignmentGroup"], body["priority"]) == ("Web Ops", 1)
    # null goes back to what the alert says.
    answer = api.patch(item_id, {"assignee": None, "assignmentGroup": None, "priority": None}, "*")
    assert answer.body["assignee"] is None
    assert answer.body["assignmentGroup"] == "Platform"
    assert answer.body["priority"] == 3
    before = answer.etag
    answer = api.patch(item_id, {"note": "called the vendor"}, before)
    assert answer.status == 200
    assert answer.etag != before, "a note is a change: the ETag moves"
    assert answer.body["history"][0]["note"] == "called the vendor"
    assert answer.body["state"] == "New"


# -- ETags ---------------------------------------------------------------------------------


def test_if_match_is_required_and_checked(api: Api) -> None:
    [item_id] = api.alerts(af.fired("etag-1", 0))
    answer = api.patch(item_id, {"state": "Acknowledged"})
    assert answer.status == 428
    assert answer.body["error"] == "precondition_required"
    first = api.item(item_id)
    ok = api.patch(item_id, {"state": "Acknowledged"}, first.etag)
    assert ok.status == 200
    assert ok.etag != first.etag
    stale = api.patch(item_id, {"state": "InProgress"}, first.etag)
    assert stale.status == 412
    assert stale.body["error"] == "precondition_failed"
    assert stale.etag == ok.etag, "a 412 tells the current ETag"
    for garbage in ('W/"x"', "nonsense", '"not-ours"'):
        assert api.patch(item_id, {"state": "InProgress"}, garbage).status == 412
    listed = api.patch(item_id, {"state": "InProgress"}, f'"b3RoZXI", {ok.etag}')
    assert listed.status == 200
    # An alert event changes the ETag too.
    etag = listed.etag
    api.alerts(af.resolved("etag-1", 0, 9))
    assert api.patch(item_id, {"state": "Closed"}, etag).status == 412


def test_two_concurrent_patches_exactly_one_wins(api: Api) -> None:
    for round_ in range(4):
        [item_id] = api.alerts(af.fired(f"race-{round_}", 0))
        etag = api.item(item_id).etag
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def patch(
            body: dict[str, Any],
            item_id: str = item_id,
            etag: str = etag,
            barrier: threading.Barrier = barrier,
            results: list[Any] = results,
        ) -> None:
            barrier.wait()
            results.append(api.patch(item_id, body, etag))

        threads = [
            threading.Thread(target=patch, args=({"state": "Acknowledged", "note": "me"},)),
            threading.Thread(target=patch, args=({"state": "Closed", "note": "no, me"},)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(a.status for a in results)
        assert statuses == [200, 412], results
        winner = next(a for a in results if a.status == 200)
        body = api.item(item_id).body
        assert body["state"] == winner.body["state"]
        assert len([h for h in body["history"] if h["source"] == "manual"]) == 1


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"{", {}, 400, "invalid_body"),
        (b"", {}, 400, "invalid_body"),
        (b"[1]", {}, 400, "invalid_body"),
        (b'{"state": "Closed", "colour": 1}', {}, 400, "unknown_field"),
        (b'{"state": "Done"}', {}, 400, "invalid_field"),
        (b"{}", {}, 400, "invalid_body"),
        (b'{"note": "x"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"note": "' + b"x" * 70_000 + b'"}', {}, 413, "payload_too_large"),
        (b"\xff\xfe{}", {}, 400, "invalid_body"),
    ],
)
def test_bad_patch_requests_change_nothing(
    api: Api,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    [item_id] = api.alerts(af.fired("bad-1", 0))
    before = api.item(item_id)
    answer = api.patch(item_id, body, before.etag, headers=headers)
    assert (answer.status, answer.body["error"]) == (status, error), answer
    assert answer.body["detail"]
    assert api.item(item_id).etag == before.etag


def test_read_role_can_read_everything(api: Api) -> None:
    [item_id] = api.alerts(af.fired("ro-1", 0))
    assert api.get(f"/api/workitems/{item_id}", role=READ).status == 200
    assert api.get("/api/workitems", role=READ, user=True).status == 200
