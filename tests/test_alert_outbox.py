"""PATCH -> outbox -> sync_alert_state -> the local ARM server, all through the host harness.

Work items come from the real processor (tests/alert_factory.py), people's changes from the
work item API with minted tokens, the sync calls from sync_alert_state against
tests/arm_server.py (docs/alert-sync.md, "The outbox seam").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared import alert_outbox, alert_sync, store
from shared.alert_outbox_index import InFlight, OutboxIndex
from shared.alert_sync_plan import SyncRequest
from shared.alert_sync_results import TableSyncResults
from shared.config import ALERT_SYNC_QUEUE, get_settings
from tests import alert_factory as af
from tests.api_support import USER_UPN, Api, api_session
from tests.arm_server import ArmServer, Fault
from tests.harness import FunctionsHost, QueueRunStats
from tests.test_alert_sync import arm, arm_server  # noqa: F401  (fixtures)
from tests.tokens import Mint


@pytest.fixture
def api(
    arm: ArmServer,  # noqa: F811  (the fixture: identity and ARM endpoint set first)
    host: FunctionsHost,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def run(host: FunctionsHost) -> QueueRunStats:
    return host.run_queue(ALERT_SYNC_QUEUE, visibility_timeout=0, timeout=120)


def item_with_alert(api: Api, arm: ArmServer, name: str) -> tuple[str, str]:  # noqa: F811
    [item_id] = api.alerts(af.fired(name, 1))
    alert = af.alert_id(name)
    arm.add_alert(alert)
    return item_id, alert


def patch(api: Api, item_id: str, body: dict[str, str]) -> dict[str, object]:
    answer = api.patch(item_id, body, "*", user=True)
    assert answer.status == 200, answer
    return dict(answer.body)


def outbox(item_id: str) -> list[store.OutboxRecord]:
    return store.store_for(get_settings()).outbox(item_id)


def test_acknowledge_close_reopen_reach_the_azure_alert(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-1")
    body = patch(api, item_id, {"state": "Acknowledged"})
    # The answer did not wait for Azure: the sync is queued and shows pending.
    assert arm.changes(alert) == []
    assert [(s["alertId"], s["status"], s["state"]) for s in body["alertSync"]] == [
        (alert, "pending", "Acknowledged")
    ]
    assert outbox(item_id) == []  # sent: the record is gone, and its index row
    assert in_flight() == []
    assert run(host).succeeded == 1
    ((state, comment),) = arm.changes(alert)
    assert state == "Acknowledged"
    assert comment is not None
    assert USER_UPN in comment
    assert item_id in comment
    (status,) = api.item(item_id).body["alertSync"]
    assert (status["status"], status["state"]) == ("done", "Acknowledged")
    assert "could not" not in status["reason"]

    patch(api, item_id, {"state": "Closed"})
    run(host)
    assert arm.state(alert) == "Closed"
    patch(api, item_id, {"state": "New"})
    run(host)
    assert arm.state(alert) == "New"
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged", "Closed", "New"]
    # A note or an assignment changes no state: nothing is queued.
    patch(api, item_id, {"note": "looking", "assignee": "bob@contoso.com"})
    assert run(host).succeeded == 0
    assert outbox(item_id) == []


def test_an_alert_event_never_calls_azure(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-2")
    api.alerts(af.resolved("outbox-2", 1, 5))
    assert api.item(item_id).body["state"] == "Resolved"
    assert outbox(item_id) == []
    assert run(host).succeeded == 0
    assert arm.changes(alert) == []
    assert arm.posts() == []


def test_a_crash_between_commit_and_send_is_repaired_once(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-3")
    s = store.store_for(get_settings())
    # The commit of a PATCH whose process died before it sent anything: the store's write
    # alone, exactly as the handler makes it.
    s.update_item(
        item_id, store.Change(state="Acknowledged"), store.Actor(USER_UPN), sync_alerts=True
    )
    (record,) = outbox(item_id)
    assert len(record.messages) == 1
    assert run(host).succeeded == 0  # nothing queued
    # A read of the item leaves a fresh record alone (its PATCH may still be sending).
    assert api.item(item_id).body["alertSync"] == []
    assert len(outbox(item_id)) == 1
    # The item's next PATCH sends it, with its own change.
    patch(api, item_id, {"note": "on it"})
    assert outbox(item_id) == []
    run(host)
    assert arm.state(alert) == "Acknowledged"
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged"]
    # Sent twice (a retried repair): the sync skips the repeat; still one change in Azure.
    alert_sync.send(get_settings(), record.messages)
    run(host)
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged"]


def in_flight() -> list[InFlight]:
    """The outbox index's rows (all of them: written before an hour from now)."""
    return OutboxIndex(get_settings().storage).oldest(int((time.time() + 3600) * 1e6), 100)


def crashed_commit(item_id: str, state: str, at: int | None = None) -> store.OutboxRecord:
    """The commit of a PATCH whose process died before it sent anything: the store's write
    with its index row, exactly as the handler makes them, and no flush."""
    settings = get_settings()
    store.store_for(settings).update_item(
        item_id,
        store.Change(state=state),
        store.Actor(USER_UPN),
        at=at,
        sync_alerts=True,
        before_outbox=alert_outbox.before_commit(settings),
    )
    (record,) = outbox(item_id)
    assert [(f.item_id, f.seq, f.at) for f in in_flight()] == [(item_id, record.seq, record.at)]
    return record


def test_the_timer_repairs_a_crash_between_commit_and_send_once(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-7")
    two_minutes_ago = int((time.time() - 120) * 1_000_000)
    crashed_commit(item_id, "Acknowledged", two_minutes_ago)
    assert run(host).succeeded == 0  # nothing queued
    # Nobody reads or changes the item again: the timer alone sends it.
    host.fire_timer("repair_alert_sync")
    assert outbox(item_id) == []
    assert in_flight() == []
    assert run(host).succeeded == 1
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged"]
    assert [x["status"] for x in api.item(item_id).body["alertSync"]] == ["done"]
    host.fire_timer("repair_alert_sync")  # nothing left to repair
    assert run(host).succeeded == 0
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged"]


def test_the_timer_leaves_a_fresh_record_to_its_patch_then_sends_it(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-8")
    crashed_commit(item_id, "Closed")
    host.fire_timer("repair_alert_sync")  # its PATCH may still be sending it
    assert len(outbox(item_id)) == 1
    assert run(host).succeeded == 0
    settings = get_settings()
    later = alert_outbox.repair(settings, store.store_for(settings), now=time.time() + 90)
    assert (later.examined, later.sent, later.removed) == (1, 1, 0)
    assert outbox(item_id) == []
    assert in_flight() == []
    run(host)
    assert [s for s, _ in arm.changes(alert)] == ["Closed"]


def test_a_record_sent_but_not_deleted_is_sent_again_harmlessly(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-9")
    record = crashed_commit(item_id, "Acknowledged", int((time.time() - 120) * 1_000_000))
    # The PATCH queued the messages, then died before it deleted the record.
    alert_sync.send(get_settings(), record.messages)
    run(host)
    host.fire_timer("repair_alert_sync")  # sends them again
    assert outbox(item_id) == []
    assert run(host).succeeded == 1
    assert [s for s, _ in arm.changes(alert)] == ["Acknowledged"]  # once in effect


def test_the_timer_forgets_index_rows_of_transactions_that_never_committed(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-10")
    settings = get_settings()
    index = OutboxIndex(settings.storage)
    now = time.time()
    # Written before commits that then failed (a conflict, storage down): no record.
    old = InFlight(item_id, 7, int((now - alert_outbox.ORPHAN_AFTER_S - 60) * 1e6))
    recent = InFlight(item_id, 8, int((now - 120) * 1e6))
    index.add(old)
    index.add(recent)
    done = alert_outbox.repair(settings, store.store_for(settings), now=now)
    assert (done.examined, done.sent, done.removed) == (2, 0, 1)
    # The recent one may still belong to a commit in flight: it stays until it is old.
    assert in_flight() == [recent]
    assert run(host).succeeded == 0
    assert arm.changes(alert) == []


def test_a_read_repairs_a_record_left_over_a_minute_ago(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-4")
    s = store.store_for(get_settings())
    two_minutes_ago = int((time.time() - 120) * 1_000_000)
    s.update_item(
        item_id,
        store.Change(state="Closed"),
        store.Actor(USER_UPN),
        at=two_minutes_ago,
        sync_alerts=True,
    )
    assert len(outbox(item_id)) == 1
    body = api.item(item_id).body
    assert [x["status"] for x in body["alertSync"]] == ["pending"]
    assert outbox(item_id) == []
    run(host)
    assert arm.state(alert) == "Closed"


def take_queued(host: FunctionsHost) -> list[SyncRequest]:
    """Every sync message queued so far, taken off the queue (delivered later, in an order
    the test chooses)."""
    client = host.queue_client(ALERT_SYNC_QUEUE)
    taken = []
    for message in client.receive_messages(messages_per_page=32, visibility_timeout=60):
        taken.append(SyncRequest.from_message(host.queue_settings.decode(message.content).decode()))
        client.delete_message(message)
    return taken


def deliver_newest_first(host: FunctionsHost, requests: list[SyncRequest]) -> None:
    """Deliver the messages against their change sequence: the newest change's first, each
    run to its end before the next older one is queued."""
    for request in sorted(requests, key=lambda r: -r.seq):
        alert_sync.send(get_settings(), [request.to_message()])
        assert run(host).succeeded == 1


@pytest.mark.parametrize("states", [("Closed", "New"), ("New", "Closed")])
def test_syncs_delivered_against_the_change_order_leave_azure_in_the_final_state(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
    states: tuple[str, str],
) -> None:
    item_id, alert = item_with_alert(api, arm, f"outbox-5-{states[0]}")
    patch(api, item_id, {"state": "Resolved"})
    run(host)
    assert arm.state(alert) == "Closed"
    first, second = states  # from Resolved both orders are allowed
    patch(api, item_id, {"state": first})
    patch(api, item_id, {"state": second})
    older, newer = sorted(take_queued(host), key=lambda r: r.seq)
    assert (older.target_state, newer.target_state) == (first, second)
    deliver_newest_first(host, [older, newer])
    assert api.item(item_id).body["state"] == second
    assert arm.state(alert) == second
    # The older change never reached Azure: it arrived after the newer one, and was stale
    # (a newer Closed found the alert Closed already: nothing to send).
    expected = ["Closed"] if second == "Closed" else ["Closed", second]
    assert [s for s, _ in arm.changes(alert)] == expected
    (status,) = api.item(item_id).body["alertSync"]
    assert (status["seq"], status["state"], status["status"]) == (newer.seq, second, "done")


def test_two_racing_patches_leave_azure_in_the_items_final_state(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-5-race")
    patch(api, item_id, {"state": "Resolved"})
    run(host)
    # Two PATCHes race to commit (either may win), and their syncs are then delivered
    # against the order the commits got: whichever committed last must be what Azure shows.
    answers: dict[str, int] = {}
    start = threading.Barrier(2)

    def change(state: str) -> None:
        start.wait()
        answers[state] = api.patch(item_id, {"state": state}, "*", user=True).status

    threads = [threading.Thread(target=change, args=(s,)) for s in ("Closed", "New")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {"Closed": 200, "New": 200}
    final = api.item(item_id).body["state"]
    requests = take_queued(host)
    # A change whose overlay is older than the other's (its `at`) can commit last and
    # change nothing: then only the other one has a sync. Either way the newest sync
    # asks for the item's final state.
    assert requests
    assert max(requests, key=lambda r: r.seq).target_state == final
    deliver_newest_first(host, requests)
    assert arm.state(alert) == final
    assert outbox(item_id) == []


def test_retention_deletes_the_items_unsent_outbox_records_and_sync_statuses(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    [item_id] = api.alerts(af.fired("outbox-old", 0))
    api.alerts(af.resolved("outbox-old", 0, 30))
    s = store.store_for(get_settings())
    long_ago = int((af.BASE + timedelta(hours=1)).timestamp() * 1_000_000)
    # Closed by a person long ago, whose PATCH never sent its sync: the record stayed.
    s.update_item(
        item_id, store.Change(state="Closed"), store.Actor(USER_UPN), at=long_ago, sync_alerts=True
    )
    assert len(outbox(item_id)) == 1
    # An earlier sync of it left a status row in `alertsync`, beside the item.
    results = TableSyncResults(get_settings().storage)
    alert = f"/subscriptions/{af.SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/old-sync"
    assert results.mark_pending(item_id, alert, 1, "Acknowledged")
    assert len(results.for_item(item_id)) == 1
    host.fire_timer("purge_expired")
    assert s.get_item(item_id) is None
    assert outbox(item_id) == []
    assert results.for_item(item_id) == []


def sync_entries(api: Api, item_id: str) -> list[dict[str, object]]:
    """The item's history entries of its alert sync, newest first."""
    history = api.item(item_id).body["history"]
    return [h for h in history if h["source"] == "sync"]


def test_the_history_shows_each_change_reaching_azure_or_why_not(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-11")
    patch(api, item_id, {"state": "Acknowledged"})
    etag = api.item(item_id).etag
    run(host)
    (done,) = sync_entries(api, item_id)
    assert done["effect"] == "synced"
    assert done["changes"] == ["set the Azure alert to Acknowledged"]
    assert done["sync"] == {"state": "Acknowledged", "alertId": alert}
    # Recorded beside the item, not through it: a person's If-Match stays valid.
    assert api.item(item_id).etag == etag

    # No permission: the words, in the history as in alertSync.
    arm.forbidden.add(alert.lower())
    patch(api, item_id, {"state": "Closed"})
    messages = take_queued(host)
    # Delivered twice (a redelivery, a repair): still one entry for this change.
    for _ in range(2):
        alert_sync.send(get_settings(), [m.to_message() for m in messages])
        run(host)
    denied, _done = sync_entries(api, item_id)
    assert denied["effect"] == "sync-failed"
    (text,) = denied["changes"]
    assert str(text).startswith(
        "could not set the Azure alert to Closed: the identity lacks permission"
    )
    assert denied["sync"] == {"state": "Closed", "alertId": alert}
    (status,) = api.item(item_id).body["alertSync"]
    assert (status["status"], status["reason"]) == ("failed", text)

    # The alert is gone (Azure Monitor keeps alerts 30 days).
    arm.forbidden.clear()
    arm.delete_alert(alert)
    patch(api, item_id, {"state": "New"})
    run(host)
    gone = sync_entries(api, item_id)[0]
    assert gone["effect"] == "sync-failed"
    assert "could not set the Azure alert to New: it no longer exists" in str(gone["changes"][0])
    assert len(sync_entries(api, item_id)) == 3

    # An alert event's commit rewrites the group's rows: the sync entries stay.
    api.alerts(af.resolved("outbox-11", 1, 5))
    assert [h["effect"] for h in sync_entries(api, item_id)] == [
        "sync-failed",
        "sync-failed",
        "synced",
    ]


def test_the_history_shows_a_sync_that_kept_failing(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
) -> None:
    item_id, alert = item_with_alert(api, arm, "outbox-12")
    throttled = Fault(429, {"Retry-After": "3600"}, code="TooManyRequests")
    arm.fail_next(alert, *[throttled] * alert_sync.MAX_ATTEMPTS)
    patch(api, item_id, {"state": "Acknowledged"})
    stats = run(host)
    assert stats.failed_attempts == alert_sync.MAX_ATTEMPTS - 1
    assert stats.poisoned == 0
    (entry,) = sync_entries(api, item_id)
    assert entry["effect"] == "sync-failed"
    assert str(entry["changes"][0]).startswith("Azure Resource Manager kept failing")
    assert "429" in str(entry["changes"][0])
    assert arm.state(alert) == "New"


def test_turned_off_writes_no_outbox_and_calls_nothing(
    api: Api,
    arm: ArmServer,  # noqa: F811
    host: FunctionsHost,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNC_ALERT_STATE", "false")
    item_id, alert = item_with_alert(api, arm, "outbox-6")
    body = patch(api, item_id, {"state": "Acknowledged"})
    assert body["alertSync"] == []
    assert outbox(item_id) == []
    assert run(host).succeeded == 0
    assert arm.changes(alert) == []
