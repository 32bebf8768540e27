"""The store against Azurite: keys, limits, manual changes, big commits, repair, budgets."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from shared import alert_queue, store, table_keys, workitem_index
from shared.alert_events import Event, event_from_alert
from shared.store import commits as store_commits
from shared.store import groups as store_groups
from shared.workitem_rows import event_facts
from shared.workitems import CLOSED, MINUTE, NEW, STATE_RESOLVED, Policy
from tests import alert_factory as af
from tests.alert_factory import fired, resolved
from tests.workitem_fixtures import Snapshot, WorkItemEnv, ci_items, diff_snapshots

WEIRD_CIS = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app#1?x=y",
    "back\\slash\\computer",
    "ünïcødé-名前-🚀",
    "tab\there-and-nul\x00",
    "n" * 2048,
)


class Counter:
    """Counts the HTTP requests a client sends (raw_request_hook)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        with self._lock:
            self.requests.append(f"{request.http_request.method} {request.http_request.url}")

    def take(self) -> int:
        with self._lock:
            n = len(self.requests)
            self.requests.clear()
            return n


def counted_store(
    connection_string: str, policy: Policy | None = None
) -> tuple[store.WorkItemStore, Counter]:
    counter = Counter()
    service = TableServiceClient.from_connection_string(connection_string, raw_request_hook=counter)
    return store.WorkItemStore(service, policy or Policy()), counter


def micros(minutes: float) -> int:
    return int((af.BASE.timestamp() + minutes * 60) * 1_000_000)


def facts_for(alert: dict[str, Any], event: Event) -> Callable[[], dict[str, Any]]:
    return lambda: event_facts(alert, event, "alert-payloads/x.json", "0" * 64, "m")


def apply(s: store.WorkItemStore, alert: dict[str, Any], mode: str = "alert") -> store.ApplyResult:
    event = event_from_alert(alert, mode)
    return s.apply(event, facts_for(alert, event))


def test_ci_keys_with_forbidden_characters_unicode_and_2_kb(workitem_env: WorkItemEnv) -> None:
    workitem_env.process([fired("a", 0, cis=WEIRD_CIS), resolved("a", 0, 5, cis=WEIRD_CIS)])
    (item,) = workitem_env.items()
    assert item["state"] == STATE_RESOLVED
    assert item["ciCount"] == len(WEIRD_CIS)
    s = workitem_env.store
    assert {b["ciKey"] for b in s.item_cis(item["id"])} == {c.lower() for c in WEIRD_CIS}
    for key in WEIRD_CIS:
        ci = s.get_ci(key.lower(), af.TENANT)
        assert ci is not None
        assert ci["display"] == key
        assert ci["key"] == key.lower()
        assert ci["firstSeen"] == af.at(0)[:17] + "00.000000Z"
        assert ci["lastSeen"] == af.at(5)[:17] + "00.000000Z"
        assert [
            i["id"] for i in ci_items(workitem_env.connection_string, key.lower(), af.TENANT)
        ] == [item["id"]]


def test_long_texts_are_truncated_with_a_marker_and_the_payload_stays_reachable(
    workitem_env: WorkItemEnv,
) -> None:
    text = "x" * 50_000
    workitem_env.process([fired("a", 0, description=text)])
    (listed,) = workitem_env.items()
    item = workitem_env.store.get_item(listed["id"])
    assert item is not None
    assert len(item["description"]) < 10_000
    assert "[truncated: 50000 characters" in item["description"]
    # An inline message keeps its raw payload in the event's history entry, deflated.
    assert item["lastPayloadBlob"] == ""
    assert "history entry (payload)" in item["description"]  # the marker says where it is
    (entry,) = workitem_env.history(item["id"])
    envelope = alert_queue.inflate(entry["payload"])
    assert envelope["alert"]["description"] == text
    assert envelope["raw"] == {"n": 0}
    assert entry["payloadSha256"] == item["lastPayloadSha256"] != ""


def test_a_payload_too_big_for_a_table_property_goes_to_a_blob(
    workitem_env: WorkItemEnv,
) -> None:
    """Random text does not deflate: 50 KiB of it cannot ride in the history entry."""
    noise = base64.b64encode(random.Random(7).randbytes(70_000)).decode()
    assert len(zlib.compress(noise.encode(), 6)) > alert_queue.MAX_TABLE_PAYLOAD_BYTES
    workitem_env.process([fired("a", 0)], raw={"noise": noise})
    (listed,) = workitem_env.items()
    item = workitem_env.store.get_item(listed["id"])
    assert item is not None
    container, blob = item["lastPayloadBlob"].split("/", 1)
    (entry,) = workitem_env.history(item["id"])
    assert "payload" not in entry
    assert entry["payloadBlob"] == item["lastPayloadBlob"]
    from shared.config import get_settings
    from shared.storage import blob_service

    data = (
        blob_service(get_settings().storage)
        .get_blob_client(container, blob)
        .download_blob()
        .readall()
    )
    assert json.loads(data)["raw"]["noise"] == noise
    assert hashlib.sha256(data).hexdigest() == item["lastPayloadSha256"]


def test_a_person_closes_an_item_conditionally(workitem_env: WorkItemEnv) -> None:
    workitem_env.process([fired("a", 0)])
    (item,) = workitem_env.items()
    s = workitem_env.store
    current = s.get_item(item["id"])
    assert current is not None
    stale = current.metadata["etag"]
    s.set_state(item["id"], "Acknowledged", by="alice", if_match=stale, at=micros(10))
    with pytest.raises(store.PreconditionFailed):
        s.set_state(item["id"], CLOSED, by="bob", if_match=stale)
    closed = s.set_state(item["id"], CLOSED, by="bob", note="known issue", at=micros(20))
    assert closed["state"] == CLOSED
    assert closed["resolution"] == "closed by bob: known issue"
    workitem_env.process([resolved("a", 0, 30), af.redelivered(fired("a", 0))])
    (after,) = workitem_env.items()
    assert after["state"] == CLOSED
    history = workitem_env.history(item["id"])
    assert [h["effect"] for h in history] == ["created", "manual", "manual", "resolved"]
    assert "the work item is Closed" in history[-1]["changes"]


def test_rule_mode_reopen_and_close_through_the_store(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=30)
    workitem_env.process([fired("a", 0), resolved("a", 0, 5), fired("b", 20)])
    (item,) = workitem_env.items()
    assert (item["state"], item["reopenCount"], item["occurrences"]) == (NEW, 1, 2)
    workitem_env.store.set_state(item["id"], CLOSED, by="carol", at=micros(21))
    workitem_env.process([resolved("b", 20, 25), fired("c", 40)])
    states = sorted((i["state"], i["reopenCount"]) for i in workitem_env.items())
    assert states == [(CLOSED, 1), (NEW, 0)]


def _rule_alerts() -> list[dict[str, Any]]:
    alerts = []
    for n in range(12):
        alerts += [fired(f"r{n}", n * 3), resolved(f"r{n}", n * 3, n * 3 + 2)]
    return alerts


def _processed_then_wiped(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], Snapshot]:
    """Rule-mode alerts, the tables they give in order, then empty tables and a transaction
    limit of 4 operations, so that every commit afterwards needs several."""
    workitem_env.configure(mode="rule", reopen=10)
    alerts = _rule_alerts()
    workitem_env.process(alerts)
    expected = workitem_env.snapshot()
    workitem_env.wipe()
    monkeypatch.setattr(store_commits, "MAX_TRANSACTION_OPS", 4)
    return alerts, expected


def test_commits_past_100_operations_chain_transactions(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts, expected = _processed_then_wiped(workitem_env, monkeypatch)
    workitem_env.process(alerts[::-1])
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""


def test_an_interrupted_chained_commit_is_repaired_by_the_next_writer(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts, expected = _processed_then_wiped(workitem_env, monkeypatch)
    real = store.WorkItemStore._submit
    calls = {"n": 0}

    def crash_sometimes(self: store.WorkItemStore, name: str, ops: list[Any]) -> Any:
        calls["n"] += 1
        if (
            name == table_keys.WORKITEMS_TABLE
            and calls["n"] % 7 == 0
            and ops[0][0] == "update"
            and ops[0][2]["mode"].value == "merge"
        ):
            raise RuntimeError("process died between two transactions of one commit")
        return real(self, name, ops)

    monkeypatch.setattr(store.WorkItemStore, "_submit", crash_sometimes)
    for n, alert in enumerate(alerts[::-1]):
        for _attempt in range(5):  # the host redelivers the message
            try:
                workitem_env.process([alert])
                break
            except RuntimeError:
                continue
        else:
            pytest.fail(f"alert {n} never succeeded")
    monkeypatch.setattr(store.WorkItemStore, "_submit", real)
    workitem_env.process([af.redelivered(alerts[0])])  # a duplicate still finishes repairs
    roots = [v for (t, _, rk), v in workitem_env.snapshot().items() if _is_root(rk)]
    assert roots
    assert not any(r["dirty"] for r in roots)
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""


class Meter:
    """Table requests and the bytes of their responses (raw_request/response_hook)."""

    def __init__(self) -> None:
        self.requests = 0
        self.read = 0
        self._lock = threading.Lock()

    def on_request(self, _request: Any) -> None:
        with self._lock:
            self.requests += 1

    def on_response(self, response: Any) -> None:
        with self._lock:
            self.read += len(response.http_response.body() or b"")


def _repair_cost(workitem_env: WorkItemEnv, name: str, events: int) -> tuple[int, int]:
    """Requests and bytes read by the repair of a rule-mode group of `events` events (a
    stateless log alert every 5 minutes: its partition gains two rows an event, for good),
    after a crash left its root dirty and one of its rows missing."""
    alerts = [
        fired(f"{name}-{n}", n * 5, rule=name, rule_id=f"/rules/{name}") for n in range(events)
    ]
    workitem_env.process(alerts)
    group = event_from_alert(alerts[0], "rule").group
    (item,) = [i for i in workitem_env.items() if i["group"] == group.hash[:16]]
    expected = workitem_env.snapshot()
    tables = TableServiceClient.from_connection_string(workitem_env.connection_string)
    work = tables.get_table_client(table_keys.WORKITEMS_TABLE)
    root = {"PartitionKey": group.partition, "RowKey": table_keys.root_row(group.hash)}
    work.update_entity({**root, "dirty": True}, mode=UpdateMode.MERGE)
    work.delete_entity(group.partition, table_keys.item_row(str(item["id"])))
    store.clear_caches()

    meter = Meter()
    metered = TableServiceClient.from_connection_string(
        workitem_env.connection_string,
        raw_request_hook=meter.on_request,
        raw_response_hook=meter.on_response,
    )
    s = store.WorkItemStore(metered, workitem_env.store.policy)
    assert apply(s, af.redelivered(alerts[-1]), "rule").outcome == "duplicate"
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""  # repaired
    return meter.requests, meter.read


def test_repair_reads_what_the_root_implies_not_the_whole_partition(
    workitem_env: WorkItemEnv,
) -> None:
    """docs/data-model.md, "Correctness under concurrency and failure": the repair of a
    group with ten times the events costs the same requests and bytes (both sizes end at
    the same point of the fold cycle, so their windows hold as many events)."""
    workitem_env.configure(mode="rule")
    small = _repair_cost(workitem_env, "small", 43)
    large = _repair_cost(workitem_env, "large", 43 + 18 * 20)
    assert large[0] <= small[0] * 1.2, (small, large)
    assert large[1] <= small[1] * 1.2, (small, large)
    print(f"\nrepair: 43 events {small}, 403 events {large} (requests, bytes read)")


def test_a_policy_change_rebuilds_the_group_rows(workitem_env: WorkItemEnv) -> None:
    alerts = [fired("a", 0), resolved("a", 0, 5), fired("b", 30), resolved("b", 30, 35)]
    workitem_env.configure(mode="rule", reopen=60)
    workitem_env.process(alerts[:3])
    assert len(workitem_env.items()) == 1
    workitem_env.configure(mode="rule", reopen=10)
    workitem_env.process(alerts[3:])
    after_change = workitem_env.snapshot()
    workitem_env.wipe()
    workitem_env.process(alerts)
    assert len(workitem_env.items()) == 2
    assert diff_snapshots(workitem_env.snapshot(), after_change) == ""


@pytest.mark.parametrize("serialized", [True, False], ids=["one-instance", "many-instances"])
def test_concurrent_writers_on_one_group_lose_nothing(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch, serialized: bool
) -> None:
    # Without the in-process lock, threads race like separate instances: ETags decide.
    monkeypatch.setattr(store_groups, "SERIALIZE_GROUPS_IN_PROCESS", serialized)
    workitem_env.configure(mode="rule", reopen=600)
    n = 30 if serialized else 12
    # All within the horizon (shared.workitems.LATENESS): any order gives the same tables.
    alerts = [fired(f"c{i}", i / 2) for i in range(n)] + [
        resolved(f"c{i}", i / 2, 20 + i / 4) for i in range(n)
    ]
    with ThreadPoolExecutor(16 if serialized else 8) as pool:
        list(pool.map(lambda a: workitem_env.process([a]), alerts))
    concurrent = workitem_env.snapshot()
    (item,) = workitem_env.items()
    assert (item["occurrences"], item["state"]) == (n, STATE_RESOLVED)
    workitem_env.wipe()
    workitem_env.process(alerts)
    assert diff_snapshots(workitem_env.snapshot(), concurrent) == ""


def test_request_budget_per_event(workitem_env: WorkItemEnv) -> None:
    s, counter = counted_store(workitem_env.connection_string)
    cis = [f"vm-{n}" for n in range(3)]
    apply(s, fired("warmup", 0, cis=["warm"]))  # tables exist
    counter.take()
    k = len(cis)
    # root read, k CI transactions, the group commit; the work item API's indexes (before
    # the commit: the open row, the month row, one row per CI; docs/data-model.md); and,
    # for a CI this process has never seen, its row in the CI name index.
    apply(s, fired("a", 0, cis=cis))
    assert counter.take() <= (2 + k) + (2 + k) + k
    apply(s, af.redelivered(fired("a", 0, cis=cis)))
    assert counter.take() <= 1
    # resolving: the open row is touched before and deleted after the commit, the month
    # row gains the Resolved flag.
    apply(s, resolved("a", 0, 7, cis=cis))
    assert counter.take() <= (2 + k) + 3


def test_hot_ci_is_written_about_once_a_minute(workitem_env: WorkItemEnv) -> None:
    s, counter = counted_store(workitem_env.connection_string, Policy(reopen_window=60 * MINUTE))
    for warm_up in ("first", "second"):  # the first creates the tables (and clears caches)
        apply(s, fired(warm_up, 0, cis=["hot"]))
    counter.take()
    for n in range(20):  # new alerts (new groups) on the same CI in the same minute
        apply(s, fired(f"n{n}", 0.01 * n, cis=["hot"]))
    # per alert: one transaction in the CI's partition (group binding, the CI's index row
    # of the new item) + group commit (no root read: alert mode, Fired) + one transaction
    # in the fired month's index partition (the new item's open and month rows)
    assert counter.take() == 20 * (2 + 1), counter.requests


def _is_root(row_key: str) -> bool:
    return row_key.startswith("g|") and row_key.count("|") == 1


def test_a_long_lived_group_is_folded_and_its_old_items_kept(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=5)
    alerts = []
    for n in range(15):  # 15 separate items of one rule and CI set
        alerts += [fired(f"k{n}", n * 30), resolved(f"k{n}", n * 30, n * 30 + 2)]
    workitem_env.process(alerts)
    items = workitem_env.items()
    assert len(items) == 15
    assert {i["state"] for i in items} == {STATE_RESOLVED}
    snap = workitem_env.snapshot()
    roots = [v for (_, _, rk), v in snap.items() if _is_root(rk)]
    assert len(roots) == 1
    assert roots[0]["eventCount"] == 30
    window = [rk for (_, _, rk) in snap if rk.startswith("g|") and "|e|" in rk]
    assert len(window) < 30  # folded: the state keeps a window, not every event
    for item in items:  # archived or not, every item keeps its timeline
        assert [h["effect"] for h in workitem_env.history(item["id"])] == ["created", "resolved"]
    workitem_env.process([fired("too-late", 1)])  # older than the horizon: recorded only
    assert len(workitem_env.items()) == 15
    late = [
        v
        for (_, _, rk), v in workitem_env.snapshot().items()
        if rk.startswith("h|") and v.get("originAlertId") == "too-late"
    ]
    assert len(late) == 1
    assert late[0]["effect"] == "ignored"
    assert "horizon" in late[0]["changes"]
    workitem_env.process([fired("new", 15 * 30)])
    assert len(workitem_env.items()) == 16


def _index_rows(connection_string: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The index rows, without `seq` (which counts the writes it took)."""
    table = TableServiceClient.from_connection_string(connection_string).get_table_client(
        workitem_index.INDEX_TABLE
    )
    return {
        workitem_index.key_of(workitem_index.INDEX_TABLE, e): {
            k: v for k, v in e.items() if k != "seq"
        }
        for e in table.list_entities()
    }


def test_a_fired_whose_group_exists_after_all_is_a_duplicate_and_leaves_no_trace(
    workitem_env: WorkItemEnv,
) -> None:
    """A Fired of a group this process does not know is committed without reading the root
    first (alert mode: it nearly always opens its group). When the group exists after all
    (a copy processed by another instance, a restart), the create fails, the root is read,
    and the index rows the guess widened are put back."""
    workitem_env.process([fired("a", 0, cis=(af.VM,)), resolved("a", 0, 4, cis=(af.VM,))])
    tables, index = workitem_env.snapshot(), _index_rows(workitem_env.connection_string)
    assert any(workitem_index.is_open_partition(pk) for pk, _ in index) is False
    store.clear_caches()  # a fresh process
    event = event_from_alert(fired("a", 0, cis=(af.VM,)), "alert")
    result = workitem_env.store.apply(event, lambda: event_facts(fired("a", 0), event, "", "", ""))
    assert result.outcome == "duplicate"
    assert result.attempts == 2  # the guess, then the read
    assert diff_snapshots(tables, workitem_env.snapshot()) == ""
    assert _index_rows(workitem_env.connection_string) == index  # no open row left behind


def test_late_events_in_fresh_processes_end_as_in_order(workitem_env: WorkItemEnv) -> None:
    """Each event in a process that has seen none of the others: same tables as in order."""
    alerts = [fired("a", 0, cis=(af.VM,)), resolved("a", 0, 4, cis=(af.VM,))]
    workitem_env.process(alerts)
    in_order = workitem_env.snapshot(), _index_rows(workitem_env.connection_string)
    workitem_env.wipe()
    for alert in reversed(alerts):
        store.clear_caches()
        workitem_env.process([alert])
    assert diff_snapshots(in_order[0], workitem_env.snapshot()) == ""
    assert _index_rows(workitem_env.connection_string) == in_order[1]


def test_index_rows_left_by_an_interrupted_attempt_are_merged_into(
    workitem_env: WorkItemEnv,
) -> None:
    """A new item's index rows are created, not upserted; rows already there (an attempt
    that wrote them and died before its commit) make the create fail, and the row is then
    merged into: it ends as if it had been written fresh, flags and all."""
    alert = fired("a", 0, cis=(af.VM,))
    workitem_env.process([alert])
    fresh = _index_rows(workitem_env.connection_string)
    item_rows = {key: row for key, row in fresh.items() if "itemId" in row}
    scope = workitem_index.tenant_scope(af.TENANT)
    assert {pk for pk, _ in item_rows} == {
        workitem_index.open_partition(scope),
        workitem_index.month_partition(scope, "2024-03"),
    }
    workitem_env.wipe()
    service = TableServiceClient.from_connection_string(workitem_env.connection_string)
    service.create_table(workitem_index.INDEX_TABLE)
    for key, row in item_rows.items():  # what an early attempt left: the rows, no flags
        table, entity = workitem_index.stored_entity(
            key, {"itemId": row["itemId"], "firedAt": row["firedAt"]}
        )
        service.get_table_client(table).upsert_entity(entity)
    store.clear_caches()
    workitem_env.process([alert])
    assert _index_rows(workitem_env.connection_string) == fresh
    [item] = workitem_env.items()
    page = workitem_env.store.list_items(workitem_index.ItemFilter(), 10, None)
    assert [i["id"] for i in page.items] == [item["id"]]


def test_a_lone_index_insert_into_a_missing_table_creates_the_table(
    workitem_env: WorkItemEnv,
) -> None:
    """A Resolved that arrives first writes one index row (its month row), as a plain insert.
    The SDK raises an insert's TableNotFound undecoded; it must still be recognised, so the
    table is created and the event applied on the first attempt."""
    for name in ("a", "c"):  # the tables exist, and the CI and the month are known here
        apply(workitem_env.store, fired(name, 0, cis=(af.VM,)))
    TableServiceClient.from_connection_string(workitem_env.connection_string).delete_table(
        workitem_index.INDEX_TABLE
    )
    result = apply(workitem_env.store, resolved("b", 0, 4, cis=(af.VM,)))
    assert (result.outcome, result.attempts) == ("applied", 1)
    rows = _index_rows(workitem_env.connection_string)
    month = workitem_index.month_partition(workitem_index.tenant_scope(af.TENANT), "2024-03")
    assert [key[0] for key, row in rows.items() if "itemId" in row] == [month]


def test_a_later_copy_of_a_folded_log_resolve_is_a_duplicate(workitem_env: WorkItemEnv) -> None:
    # A log alert's Resolved has no resolvedAt: its time is the earliest receive time, so a
    # later copy carries a later time, after the horizon the first copy's time fell behind.
    workitem_env.configure(mode="rule")
    log_resolve = resolved("log-1", 0, None, received=1)
    workitem_env.process([fired("log-1", 0), log_resolve])
    workitem_env.process([fired(f"later-{n}", 5 + n * 3) for n in range(40)])
    before = workitem_env.snapshot()
    workitem_env.process([af.redelivered(log_resolve, 200)])
    assert diff_snapshots(before, workitem_env.snapshot()) == ""


def test_a_root_written_before_the_state_was_bounded_is_read_and_folded(
    workitem_env: WorkItemEnv,
) -> None:
    # Roots written by earlier versions keep every event in their JSON (state0..): they
    # are read as they are, and the next event folds them and moves the window into rows.
    from shared import workitem_rows
    from shared.alert_events import event_from_alert
    from shared.entity_props import split_chunks
    from shared.workitems import GroupState, merge, state_to_json

    workitem_env.configure(mode="rule")
    alerts = [fired(f"old-{n}", n * 5) for n in range(80)]
    workitem_env.process(alerts)
    (item,) = workitem_env.items()
    state = None
    for alert in alerts:
        event = event_from_alert(alert, "rule")
        state = merge(state or GroupState(event.group), event) or state
    assert state is not None
    table = TableServiceClient.from_connection_string(
        workitem_env.connection_string
    ).get_table_client(table_keys.WORKITEMS_TABLE)
    root = table.get_entity(state.group.partition, table_keys.root_row(state.group.hash))
    root.update(split_chunks(state_to_json(state), "state"))
    table.update_entity(root)
    own = [
        k for (_, _, k) in workitem_env.snapshot() if k.startswith(("g|", "x|")) and "|" in k[2:]
    ]
    for rk in own:
        table.delete_entity(state.group.partition, rk)
    store.clear_caches()
    assert len(workitem_rows.state_of(state_to_json(state), {}).events) == 80
    workitem_env.process([fired("new", 80 * 5)])
    window = [k for (_, _, k) in workitem_env.snapshot() if "|e|" in k]
    assert 0 < len(window) <= 30
    (after,) = workitem_env.items()
    assert after["occurrences"] == 81
    assert after["id"] == item["id"]
