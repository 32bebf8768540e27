"""The pure rules of the two-way sync: what a change asks of Azure, and in which order."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import alert_sync_plan as p
from shared.workitems import TRANSITIONS
from tests.arm_server import alert_id

ITEM = "WI-ABCDEF1234"


def change(
    to_state: str,
    *,
    from_state: str = "New",
    seq: int = 1,
    origin: str = p.PERSON,
    alerts: tuple[p.AlertRef, ...] = (p.AlertRef(alert_id(1), True),),
    actor: str = "alice@contoso.com",
) -> p.StateChange:
    return p.StateChange(ITEM, seq, from_state, to_state, origin, actor, alerts)


@pytest.mark.parametrize(
    ("to_state", "target"),
    [
        ("Acknowledged", "Acknowledged"),
        ("InProgress", "Acknowledged"),
        ("Resolved", "Closed"),
        ("Closed", "Closed"),
    ],
)
def test_a_persons_change_maps_to_the_alert_user_state(to_state: str, target: str) -> None:
    (request,) = p.plan(change(to_state)).requests
    assert request.target_state == target
    assert request.alert_ids == (alert_id(1),)
    assert request.seq == 1
    assert request.item_id == ITEM
    assert "alice@contoso.com" in request.comment
    assert ITEM in request.comment


def test_a_persons_reopen_sets_new() -> None:
    (request,) = p.plan(change("New", from_state="Resolved")).requests
    assert request.target_state == "New"


def test_alert_events_are_never_echoed() -> None:
    for to_state in ("Resolved", "New", "Closed"):
        assert p.plan(change(to_state, origin=p.AZURE_MONITOR)).requests == ()


def test_no_change_no_sync() -> None:
    assert p.plan(change("Acknowledged", from_state="Acknowledged")).requests == ()


def test_acknowledging_concerns_firing_instances_closing_every_one() -> None:
    alerts = (p.AlertRef(alert_id(1), True), p.AlertRef(alert_id(2), False))
    (ack,) = p.plan(change("Acknowledged", alerts=alerts)).requests
    assert ack.alert_ids == (alert_id(1),)
    (close,) = p.plan(change("Closed", alerts=alerts)).requests
    assert close.alert_ids == (alert_id(1), alert_id(2))


def test_rule_mode_items_sync_in_bounded_batches() -> None:
    alerts = tuple(p.AlertRef(alert_id(n), True) for n in range(p.MAX_ALERTS_PER_ITEM + 37))
    result = p.plan(change("Closed", alerts=alerts))
    assert result.omitted == 37
    assert all(0 < len(r.alert_ids) <= p.BATCH_SIZE for r in result.requests)
    synced = [a for r in result.requests for a in r.alert_ids]
    assert len(synced) == len(set(synced)) == p.MAX_ALERTS_PER_ITEM
    assert len(result.requests) == p.MAX_ALERTS_PER_ITEM // p.BATCH_SIZE


def test_values_that_are_not_alert_ids_are_never_synced() -> None:
    hostile = (
        alert_id(1) + "?api-version=2015-01-01",
        alert_id(1) + "#x",
        "/subscriptions/3b540246-808d-4331-99aa-917b808a9166/../../providers/"
        "Microsoft.AlertsManagement/alerts/00000000-0000-0000-0000-000000000001",
        "https://evil.example/" + alert_id(1),
        alert_id(1).replace("/alerts/", "/alerts%2F"),
        "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/1",
    )
    for value in hostile:
        assert not p.is_alert_id(value), value
    alerts = tuple(p.AlertRef(v, True) for v in hostile)
    assert p.plan(change("Closed", alerts=alerts)).requests == ()
    scoped = (
        "/subscriptions/3b540246-808d-4331-99aa-917b808a9166/resourcegroups/rg/providers/"
        "microsoft.insights/components/app/providers/Microsoft.AlertsManagement/alerts/"
        "66114d64-d9d9-478b-95c9-b789d6502100"
    )
    assert p.is_alert_id(scoped)  # the specification's example: a resource-scoped alert


def test_comment_is_printable_and_bounded() -> None:
    actor = "mallory\r\n\x1b[31mINJECTED" + "x" * 1000
    (request,) = p.plan(change("Closed", actor=actor)).requests
    assert "\n" not in request.comment
    assert "\x1b" not in request.comment
    assert len(request.comment) <= p.MAX_COMMENT_CHARS
    assert len(request.actor) <= p.MAX_ACTOR_CHARS


def test_message_round_trip_and_validation() -> None:
    (request,) = p.plan(change("InProgress", seq=42)).requests
    text = request.to_message()
    assert text.isascii()
    assert p.SyncRequest.from_message(text) == request
    good = json.loads(text)
    bad_cases = {
        "not json": "{",
        "not an object": "[]",
        "version": json.dumps({**good, "v": 2}),
        "item id": json.dumps({**good, "itemId": "../x"}),
        "seq": json.dumps({**good, "seq": -1}),
        "seq bool": json.dumps({**good, "seq": True}),
        "state": json.dumps({**good, "targetState": "Resolved"}),
        "no alerts": json.dumps({**good, "alertIds": []}),
        "too many": json.dumps({**good, "alertIds": [alert_id(n) for n in range(11)]}),
        "bad alert": json.dumps({**good, "alertIds": ["/subscriptions/x"]}),
        "actor": json.dumps({**good, "actor": 5}),
    }
    for _name, text in bad_cases.items():
        with pytest.raises(p.InvalidSyncMessage):
            p.SyncRequest.from_message(text)


def test_decide() -> None:
    done = p.SyncRow(5, p.DONE, "Closed", 0.0)
    leased = p.SyncRow(5, p.PENDING, "Closed", 100.0)
    lapsed = p.SyncRow(5, p.PENDING, "Closed", 10.0)
    assert p.decide(None, 1, 50.0) is p.Decision.CLAIM
    assert p.decide(done, 4, 50.0) is p.Decision.STALE
    assert p.decide(done, 5, 50.0) is p.Decision.DUPLICATE
    assert p.decide(done, 6, 50.0) is p.Decision.CLAIM
    assert p.decide(leased, 5, 50.0) is p.Decision.WAIT
    assert p.decide(leased, 6, 50.0) is p.Decision.WAIT
    assert p.decide(leased, 4, 50.0) is p.Decision.STALE
    assert p.decide(lapsed, 5, 50.0) is p.Decision.CLAIM  # its holder crashed mid-call
    assert p.decide(p.SyncRow(5, p.FAILED, "Closed", 0.0), 5, 50.0) is p.Decision.DUPLICATE


# -- property: any interleaving ends in the state the item implies --------------------------


@dataclass
class World:
    """The sync function's steps, interleaved: read+claim (conditional, as the table does
    it), the call to Azure, recording the outcome. Rows and Azure are shared."""

    rows: dict[str, tuple[p.SyncRow, int]] = field(default_factory=dict)  # alert -> row, etag
    azure: dict[str, str] = field(default_factory=dict)
    now: float = 0.0

    def claim(self, request: p.SyncRequest, alert: str) -> tuple[str, int] | None:
        stored = self.rows.get(alert)
        decision = p.decide(stored[0] if stored else None, request.seq, self.now)
        if decision in (p.Decision.STALE, p.Decision.DUPLICATE):
            return ("skip", 0)
        if decision is p.Decision.WAIT:
            return None
        etag = (stored[1] if stored else 0) + 1
        lease = p.SyncRow(request.seq, p.PENDING, request.target_state, self.now + 120)
        self.rows[alert] = (lease, etag)
        return ("call", etag)

    def finish(self, request: p.SyncRequest, alert: str, etag: int) -> None:
        stored = self.rows[alert]
        if stored[1] == etag:
            self.rows[alert] = (p.SyncRow(request.seq, p.DONE, request.target_state, 0), etag + 1)


ALERTS = (alert_id(1), alert_id(2), alert_id(3))
EXPECTED_TARGET = {
    "Acknowledged": "Acknowledged",
    "InProgress": "Acknowledged",
    "Resolved": "Closed",
    "Closed": "Closed",
    "New": "New",
}


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A work item's life: people's transitions (allowed ones) and Azure Monitor's events."""
    state, steps = "New", []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            to_state = draw(st.sampled_from(TRANSITIONS[state]))
            steps.append((p.PERSON, to_state))
        else:
            to_state = "Resolved" if state != "Closed" else state
            steps.append((p.AZURE_MONITOR, to_state))
        state = to_state
    return steps


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_interleaving_leaves_the_intended_azure_state(
    steps: list[tuple[str, str]], rnd: random.Random, duplicates: int
) -> None:
    firing = dict.fromkeys(ALERTS, True)
    intended = dict.fromkeys(ALERTS, "New")
    messages: list[p.SyncRequest] = []
    state = "New"
    for seq, (origin, to_state) in enumerate(steps, start=1):
        if origin == p.AZURE_MONITOR:
            firing[ALERTS[seq % len(ALERTS)]] = False
        refs = tuple(p.AlertRef(a, firing[a]) for a in ALERTS)
        if origin == p.PERSON:  # what the issue asks, written out independently of the plan
            target = EXPECTED_TARGET[to_state]
            for a in ALERTS:
                if firing[a] or target != "Acknowledged":
                    intended[a] = target
        requests = p.plan(change(to_state, from_state=state, seq=seq, origin=origin, alerts=refs))
        messages += requests.requests
        state = to_state
    deliveries = messages + [rnd.choice(messages) for _ in range(duplicates) if messages]
    rnd.shuffle(deliveries)
    # Each delivery becomes one task per alert: claim, then call, then finish; tasks run
    # interleaved in random order; a task told to wait goes back to the end of the line.
    world = World(azure=dict.fromkeys(ALERTS, "New"))
    tasks: list[list[object]] = [[r, a, "claim", 0] for r in deliveries for a in r.alert_ids]
    for _ in range(10_000):
        if not tasks:
            break
        task = tasks.pop(rnd.randrange(len(tasks)))
        request, alert, step, etag = task
        assert isinstance(request, p.SyncRequest)
        assert isinstance(alert, str)
        if step == "claim":
            claimed = world.claim(request, alert)
            if claimed is None:
                tasks.append(task)
            elif claimed[0] == "call":
                tasks.append([request, alert, "call", claimed[1]])
        elif step == "call":
            world.azure[alert] = request.target_state
            tasks.append([request, alert, "finish", etag])
        else:
            assert isinstance(etag, int)
            world.finish(request, alert, etag)
        world.now += 0.01
    assert not tasks
    assert world.azure == intended
