"""Work items that live for months, at reduced scale, end to end (issue 13's shapes).

Each shape goes through the queue and the host harness with a little reordering (four
messages in flight, neighbours swapped), and is compared with in-order delivery straight
through the processor: the same work items, bindings, history and CMDB, no poison, and a
group state that stays small however many events the group has seen. The full-scale
figures are in benchmarks/bench_longlife.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from shared import table_keys
from shared.workitems import MAX_CARRIED_OPEN, MAX_OVERLAYS, ROOT_NOTE, WINDOW_CAP
from tests import alert_factory as af
from tests.api_support import Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint
from tests.workitem_fixtures import Snapshot, WorkItemEnv, diff_snapshots, item_history

STATE_ROWS = WINDOW_CAP + 2 * MAX_CARRIED_OPEN + 4  # window, kept records, marks, carry


def derived_tables(snap: Snapshot) -> Snapshot:
    """Everything but the group state's own rows, whose split depends on when folds ran."""
    return {
        key: value
        for key, value in snap.items()
        if not key[2].startswith((table_keys.ROOT_PREFIX, table_keys.HIDDEN_PREFIX))
    }


def state_rows(snap: Snapshot) -> dict[str, int]:
    """Group root row key -> how many rows its state has (root included)."""
    out: dict[str, int] = {}
    for _, _, rk in snap:
        if rk.startswith(table_keys.ROOT_PREFIX):
            root = "|".join(rk.split("|")[:2])
            out[root] = out.get(root, 0) + 1
    return out


def nearly_in_order(alerts: list[dict[str, Any]], seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = list(alerts)
    for n in range(0, len(out) - 2):
        if rng.random() < 0.3:
            out[n], out[n + 1] = out[n + 1], out[n]
    return out


def check_shape(env: WorkItemEnv, alerts: list[dict[str, Any]]) -> Snapshot:
    env.wipe()
    env.process(alerts)
    expected = env.snapshot()
    env.wipe()
    env.enqueue(nearly_in_order(alerts))
    stats = env.run_queue(workers=4, timeout=600)
    assert (stats.poisoned, stats.failed_attempts) == (0, 0), stats.errors
    found = env.snapshot()
    differences = diff_snapshots(derived_tables(expected), derived_tables(found))
    assert differences == "", differences
    assert max(state_rows(found).values()) <= STATE_ROWS
    return found


def history_effects(snap: Snapshot) -> list[str]:
    return [
        str(v["effect"])
        for (_, _, rk), v in snap.items()
        if rk.startswith(table_keys.HISTORY_PREFIX)
    ]


@pytest.mark.slow
def test_a_stateless_log_alert_every_5_minutes_that_never_resolves(
    workitem_env: WorkItemEnv,
) -> None:
    workitem_env.configure(mode="rule")
    alerts = [af.fired(f"log-{n}", n * 5, rule="errors in logs") for n in range(120)]
    snap = check_shape(workitem_env, alerts)
    (item,) = workitem_env.items()
    assert (item["state"], item["occurrences"], item["alertCount"]) == ("New", 120, 120)
    assert len(json.loads(item["alertIds"])) == 10
    assert history_effects(snap).count("created") == 1
    assert len(history_effects(snap)) == 120


@pytest.mark.slow
def test_a_service_health_incident_with_many_updates(workitem_env: WorkItemEnv) -> None:
    # Updates 5 minutes apart: with four messages in flight, a late one stays well within
    # the 30-minute horizon (20 minutes apart, one stalled worker could fall behind it).
    alerts = [af.service_health("TRK-LONG", "Active", n * 5) for n in range(60)]
    alerts.append(af.service_health("TRK-LONG", "Resolved", 60 * 5))
    check_shape(workitem_env, alerts)
    (item,) = workitem_env.items()
    assert item["state"] == "Resolved"
    assert item["occurrences"] == 61


@pytest.mark.slow
def test_a_metric_alert_flapping_through_many_cycles(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=60, flap_threshold=4, flap_window=60)
    alerts: list[dict[str, Any]] = []
    for n in range(60):  # fire for 2 minutes every 4 minutes, for 4 hours
        alerts += [af.fired(f"flap-{n}", n * 4), af.resolved(f"flap-{n}", n * 4, n * 4 + 2)]
    check_shape(workitem_env, alerts)
    (item,) = workitem_env.items()
    assert (item["state"], item["cycles"], item["reopenCount"]) == ("Resolved", 60, 59)
    assert item["flapping"] is True


@pytest.mark.slow
def test_alert_mode_with_many_distinct_alerts(workitem_env: WorkItemEnv) -> None:
    alerts: list[dict[str, Any]] = []
    for n in range(150):
        alerts += [af.fired(f"many-{n}", n), af.resolved(f"many-{n}", n, n + 3)]
    snap = check_shape(workitem_env, alerts)
    assert len(workitem_env.items()) == 150
    assert max(state_rows(snap).values()) <= 3  # root and two records


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _root_size(api: Api, item: Mapping[str, Any]) -> int:
    group = str(item["id"])[3:9]
    rows = api.store._query(table_keys.WORKITEMS_TABLE, f"PartitionKey eq '{group}'")
    return sum(
        len(json.dumps({k: str(v) for k, v in r.items()}))
        for r in rows
        if str(r["RowKey"]).startswith(table_keys.ROOT_PREFIX)
    )


@pytest.mark.slow
def test_an_item_with_many_notes_and_changes_stays_writable(api: Api) -> None:
    [item_id] = api.alerts(af.fired("busy", 1))
    emoji = "\N{GRINNING FACE}" * 1000  # 12 characters each once JSON-escaped
    sizes = []
    states = ["Acknowledged", "InProgress", "Resolved", "New"]
    for n in range(60):
        etag = api.item(item_id).etag
        body: dict[str, Any] = {"note": f"note {n} " + emoji}
        if n % 3 == 0:
            body["state"] = states[(n // 3) % len(states)]
        if n % 5 == 0:
            body["assignee"] = f"person-{n}@contoso.com"
        answer = api.patch(item_id, body, etag)
        assert answer.status == 200, answer
        item = api.store.get_item(item_id)
        assert item is not None
        sizes.append(_root_size(api, item))
    # Bounded whatever the notes: people's changes the state keeps, each with a short note.
    assert max(sizes) <= MAX_OVERLAYS * (ROOT_NOTE + 600) + 8_000
    too_long = api.patch(item_id, {"note": "x" * 5000}, api.item(item_id).etag)
    assert too_long.status in (400, 413)
    assert too_long.body["error"]
    api.alerts(af.resolved("busy", 1, 500))  # the alert's own Resolved still goes through
    body = api.item(item_id).body
    assert body["state"] == "New"  # a person reopened it after that resolution: it holds
    assert body["assignee"] == "person-55@contoso.com"
    effects = [h["effect"] for h in item_history(api.host.connection_string, item_id)]
    assert effects.count("manual") == 60
    assert "resolved" in effects
