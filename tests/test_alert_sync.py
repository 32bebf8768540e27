"""Queue message -> sync_alert_state (through the host harness) -> the local ARM server.

The messages are the ones the outbox will queue (alert_sync.plan_messages); Azurite holds
the queue and the alertsync table; ARM and the managed identity endpoint are
tests/arm_server.py. These tests start at the queue; tests/test_alert_outbox.py starts at the
PATCH.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import alert_sync
from shared.alert_sync_plan import PERSON, AlertRef, StateChange, SyncRequest, SyncRow
from shared.alert_sync_results import TableSyncResults
from shared.config import ALERT_SYNC_POISON_QUEUE, ALERT_SYNC_QUEUE, get_settings
from tests.arm_server import IDENTITY_CLIENT_ID, IDENTITY_HEADER, ArmServer, Fault, alert_id
from tests.harness import FunctionsHost, QueueRunStats
from tests.tokens import SigningKey

REPO = Path(__file__).resolve().parent.parent
ITEM = "WI-ABCDEF1234"


@pytest.fixture(scope="module")
def arm_server() -> Iterator[ArmServer]:
    server = ArmServer(SigningKey.generate(kid="msi-key-sync")).start()
    yield server
    server.stop()


@pytest.fixture
def arm(
    arm_server: ArmServer, storage: str, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> ArmServer:
    """The app as deployed: its user-assigned identity, this cloud's ARM (here: local)."""
    arm_server.reset()
    monkeypatch.setenv("IDENTITY_ENDPOINT", arm_server.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("AzureWebJobsStorage__credential", "managedidentity")
    monkeypatch.setenv("AzureWebJobsStorage__clientId", IDENTITY_CLIENT_ID)
    monkeypatch.setenv("ARM_ENDPOINT", arm_server.base_url)
    monkeypatch.setenv("SYNC_ALERT_STATE", "true")
    return arm_server


def person(
    to_state: str,
    alerts: list[str],
    *,
    seq: int,
    from_state: str = "New",
    actor: str = "alice@contoso.com",
) -> StateChange:
    refs = tuple(AlertRef(a, True) for a in alerts)
    return StateChange(ITEM, seq, from_state, to_state, PERSON, actor, refs)


def queue(*changes: StateChange) -> list[str]:
    messages = [m for c in changes for m in alert_sync.plan_messages(c)]
    alert_sync.send(get_settings(), messages)
    return messages


def run(host: FunctionsHost) -> QueueRunStats:
    return host.run_queue(ALERT_SYNC_QUEUE, visibility_timeout=0, timeout=120)


def rows() -> dict[str, dict[str, object]]:
    return {r["alertId"]: r for r in TableSyncResults(get_settings().storage).for_item(ITEM)}


def test_acknowledge_reaches_every_alert_with_who_and_which_item(
    arm: ArmServer, host: FunctionsHost
) -> None:
    alerts = [alert_id(1), alert_id(2)]
    for a in alerts:
        arm.add_alert(a)
    queue(person("Acknowledged", alerts, seq=3))
    stats = run(host)
    assert stats.succeeded == 1
    assert stats.failed_attempts == 0
    for a in alerts:
        assert arm.state(a) == "Acknowledged"
        ((state, comment),) = arm.changes(a)
        assert state == "Acknowledged"
        assert comment is not None
        assert "alice@contoso.com" in comment
        assert ITEM in comment
        assert rows()[a]["status"] == "done"
        assert rows()[a]["seq"] == 3


def test_close_and_reopen(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    queue(person("Closed", [alert_id(1)], seq=1))
    run(host)
    assert arm.state(alert_id(1)) == "Closed"
    queue(person("New", [alert_id(1)], seq=2, from_state="Closed", actor="bob@contoso.com"))
    run(host)
    assert arm.state(alert_id(1)) == "New"
    assert [s for s, _ in arm.changes(alert_id(1))] == ["Closed", "New"]


def test_rule_mode_item_syncs_every_instance_in_batches(
    arm: ArmServer, host: FunctionsHost
) -> None:
    alerts = [alert_id(n) for n in range(1, 26)]
    for a in alerts:
        arm.add_alert(a)
    messages = queue(person("Resolved", alerts, seq=7))
    assert len(messages) == 3
    assert all(len(json.loads(m)["alertIds"]) <= 10 for m in messages)
    run(host)
    assert all(arm.state(a) == "Closed" for a in alerts)
    assert len(rows()) == 25
    assert {r["status"] for r in rows().values()} == {"done"}


def test_duplicate_delivery_is_harmless(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    (message,) = alert_sync.plan_messages(person("Acknowledged", [alert_id(1)], seq=4))
    alert_sync.send(get_settings(), [message] * 3)
    stats = run(host)
    assert stats.succeeded >= 3  # plus the later looks of copies that found one in flight
    assert stats.failed_attempts == 0
    assert stats.poisoned == 0
    assert len(arm.posts(alert_id(1))) == 1
    assert arm.changes(alert_id(1)) == [("Acknowledged", json.loads(message)["comment"])]


@pytest.mark.parametrize("newest_first", [False, True])
def test_racing_syncs_newest_change_wins(
    arm: ArmServer, host: FunctionsHost, newest_first: bool
) -> None:
    arm.add_alert(alert_id(1))
    # Whichever sync calls first is slow, so the other arrives while it is in flight.
    arm.fail_next(alert_id(1), Fault(None, delay=1.0))
    ack = person("Acknowledged", [alert_id(1)], seq=5)
    close = person("Closed", [alert_id(1)], seq=6, from_state="Acknowledged")
    queue(*((close, ack) if newest_first else (ack, close)))
    run(host)
    assert arm.state(alert_id(1)) == "Closed"
    assert arm.changes(alert_id(1))[-1][0] == "Closed"
    assert rows()[alert_id(1)]["seq"] == 6
    assert rows()[alert_id(1)]["status"] == "done"


def test_a_stale_sync_arriving_late_is_skipped(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    queue(person("Closed", [alert_id(1)], seq=9))
    run(host)
    queue(person("Acknowledged", [alert_id(1)], seq=8))
    stats = run(host)
    assert stats.succeeded == 1
    assert arm.state(alert_id(1)) == "Closed"
    assert len(arm.posts(alert_id(1))) == 1


def test_429_and_500_are_retried_until_done(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    arm.add_alert(alert_id(2))
    arm.fail_next(alert_id(1), Fault(429, {"Retry-After": "1"}, code="TooManyRequests"))
    arm.fail_next(alert_id(2), Fault(500), Fault(500))
    queue(person("Acknowledged", [alert_id(1), alert_id(2)], seq=1))
    stats = run(host)
    assert stats.poisoned == 0
    assert arm.state(alert_id(1)) == "Acknowledged"
    assert arm.state(alert_id(2)) == "Acknowledged"
    assert {r["status"] for r in rows().values()} == {"done"}


def test_404_and_403_are_recorded_and_not_retried(arm: ArmServer, host: FunctionsHost) -> None:
    gone, denied, fine = alert_id(404), alert_id(403), alert_id(1)
    arm.add_alert(denied)
    arm.add_alert(fine)
    arm.forbidden.add(denied.lower())
    queue(person("Acknowledged", [gone, denied, fine], seq=2))
    stats = run(host)
    assert stats.failed_attempts == 0  # final outcomes: no redelivery
    assert arm.state(fine) == "Acknowledged"
    status = rows()
    assert status[gone]["status"] == "failed"
    assert "no longer exists" in str(status[gone]["reason"])
    assert status[denied]["status"] == "failed"
    assert "the identity lacks permission" in str(status[denied]["reason"])
    assert len(arm.posts(denied)) == 1


def test_a_persistently_throttled_sync_gives_up_after_the_last_attempt(
    arm: ArmServer, host: FunctionsHost
) -> None:
    arm.add_alert(alert_id(1))
    throttled = Fault(429, {"Retry-After": "3600"}, code="TooManyRequests")
    arm.fail_next(alert_id(1), *[throttled] * alert_sync.MAX_ATTEMPTS)
    queue(person("Closed", [alert_id(1)], seq=1))
    stats = run(host)
    assert stats.failed_attempts == alert_sync.MAX_ATTEMPTS - 1
    assert stats.poisoned == 0  # recorded as failed instead: nothing retried forever
    row = rows()[alert_id(1)]
    assert row["status"] == "failed"
    assert "kept failing" in str(row["reason"])
    assert "429" in str(row["reason"])
    assert arm.state(alert_id(1)) == "New"


def test_a_sync_whose_holder_crashed_is_taken_over(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    (message,) = alert_sync.plan_messages(person("Closed", [alert_id(1)], seq=3))
    # A worker claimed this alert and died before calling Azure: its lease has lapsed.
    results = TableSyncResults(get_settings().storage)
    lapsed = SyncRow(3, "pending", "Closed", time.time() - 1)
    assert results.claim(ITEM, alert_id(1), lapsed, None) is not None
    alert_sync.send(get_settings(), [message])
    run(host)
    assert arm.state(alert_id(1)) == "Closed"
    assert rows()[alert_id(1)]["status"] == "done"


def test_pending_shows_until_the_sync_ran(arm: ArmServer, host: FunctionsHost) -> None:
    arm.add_alert(alert_id(1))
    (message,) = queue(person("InProgress", [alert_id(1)], seq=2))
    request = SyncRequest.from_message(message)
    results = TableSyncResults(get_settings().storage)
    assert results.mark_pending(ITEM, alert_id(1), request.seq, request.target_state)
    assert rows()[alert_id(1)]["status"] == "pending"
    run(host)
    assert rows()[alert_id(1)]["status"] == "done"
    assert rows()[alert_id(1)]["state"] == "Acknowledged"
    # An older change never overwrites a newer status.
    assert not results.mark_pending(ITEM, alert_id(1), 1, "Closed")


def test_unusable_messages_end_in_poison(arm: ArmServer, host: FunctionsHost) -> None:
    good = json.loads(alert_sync.plan_messages(person("Closed", [alert_id(1)], seq=1))[0])
    bad = ["not json", json.dumps({**good, "alertIds": ["/subscriptions/x/../../evil"]})]
    alert_sync.send(get_settings(), bad)
    stats = run(host)
    assert stats.poisoned == 2
    assert arm.calls == []
    poison = host.queue_client(ALERT_SYNC_POISON_QUEUE)
    assert len(list(poison.receive_messages(max_messages=10))) == 2


def test_turned_off_sync_calls_nothing_and_says_so(
    arm: ArmServer, host: FunctionsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_ALERT_STATE", "false")
    arm.add_alert(alert_id(1))
    queue(person("Closed", [alert_id(1)], seq=1))
    stats = run(host)
    assert stats.succeeded == 1
    assert arm.calls == []
    assert arm.token_requests == []
    assert "SYNC_ALERT_STATE=false" in str(rows()[alert_id(1)]["reason"])


def test_giving_up_never_overwrites_an_ended_or_newer_sync(
    arm: ArmServer, host: FunctionsHost
) -> None:
    results = TableSyncResults(get_settings().storage)
    (message,) = alert_sync.plan_messages(person("Closed", [alert_id(1), alert_id(2)], seq=3))
    request = SyncRequest.from_message(message)
    assert results.claim(ITEM, alert_id(1), SyncRow(3, "done", "Closed", 0.0), None)
    assert results.claim(ITEM, alert_id(2), SyncRow(4, "pending", "New", 0.0), None)
    for a in (alert_id(1), alert_id(2)):
        alert_sync.give_up(results, request, a, "Azure Resource Manager kept failing")
    assert rows()[alert_id(1)]["status"] == "done"
    assert rows()[alert_id(2)]["seq"] == 4
    alert_sync.give_up(results, request, alert_id(3), "gave up")
    assert rows()[alert_id(3)]["status"] == "failed"


def test_alert_events_queue_nothing() -> None:
    change = StateChange(ITEM, 1, "New", "Resolved", "alert", "Azure Monitor", ())
    assert alert_sync.plan_messages(change) == []


def test_max_attempts_is_the_hosts_max_dequeue_count() -> None:
    host_json = json.loads((REPO / "host.json").read_text())
    assert host_json["extensions"]["queues"]["maxDequeueCount"] == alert_sync.MAX_ATTEMPTS


def test_concurrent_workers_never_call_one_alert_twice_at_once(
    arm: ArmServer, host: FunctionsHost
) -> None:
    """Eight workers handed the same message at once: one call, the rest wait or skip."""
    arm.add_alert(alert_id(1))
    arm.fail_next(alert_id(1), Fault(None, delay=0.5))
    (message,) = alert_sync.plan_messages(person("Closed", [alert_id(1)], seq=1))
    outcomes: list[str] = []

    def worker() -> None:
        try:
            alert_sync.handle(message, 1, "m")
            outcomes.append("ok")
        except alert_sync.SyncRetryLater:
            outcomes.append("later")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == ["ok"] * 8  # waiting is no failure: those who waited look again later
    assert len(arm.posts(alert_id(1))) == 1
    assert arm.state(alert_id(1)) == "Closed"
    assert run(host).failed_attempts == 0  # the later looks find it done
    assert len(arm.posts(alert_id(1))) == 1
    assert rows()[alert_id(1)]["status"] == "done"
