"""The lifecycle rules end to end: queue messages through the host harness into Azurite.

tests/test_workitems.py covers the rules exhaustively as pure functions; these check that
the stored work items and timelines say the same once everything went through the queue.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.workitems import ACKNOWLEDGED, CLOSED, NEW, STATE_RESOLVED
from tests import alert_factory as af
from tests.alert_factory import fired, resolved, resource_health, service_health
from tests.workitem_fixtures import WorkItemEnv


def run(env: WorkItemEnv, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env.enqueue(alerts)
    stats = env.run_queue(workers=1)
    assert (stats.failed_attempts, stats.poisoned) == (0, 0), stats.errors
    return env.items()


def effects(env: WorkItemEnv, item_id: str) -> list[str]:
    return [h["effect"] for h in env.history(item_id)]


def test_resolved_before_fired(workitem_env: WorkItemEnv) -> None:
    (item,) = run(workitem_env, [resolved("a", 0, 9)])
    assert item["state"] == STATE_RESOLVED
    assert item["firedAt"] == af.at(0)
    (item,) = run(workitem_env, [fired("a", 0)])
    assert (item["state"], item["resolvedAt"], item["resolution"]) == (
        STATE_RESOLVED,
        af.at(9),
        "resolved in Azure Monitor",
    )
    assert effects(workitem_env, item["id"]) == ["created", "resolved"]


def test_stale_fired_and_duplicates_change_nothing(workitem_env: WorkItemEnv) -> None:
    run(workitem_env, [fired("a", 0), resolved("a", 0, 9)])
    before = workitem_env.snapshot()
    first = fired("a", 0)
    (item,) = run(workitem_env, [af.redelivered(first), af.redelivered(resolved("a", 0, 9))])
    assert workitem_env.snapshot() == before
    (item,) = run(workitem_env, [fired("a", 30)])  # the same alert id after it resolved
    assert item["state"] == STATE_RESOLVED
    history = workitem_env.history(item["id"])
    assert [h["effect"] for h in history] == ["created", "resolved", "ignored"]


def test_an_acknowledged_item_survives_duplicates_and_resolves_from_azure(
    workitem_env: WorkItemEnv,
) -> None:
    (item,) = run(workitem_env, [fired("a", 0)])
    workitem_env.store.set_state(item["id"], ACKNOWLEDGED, by="alice", at=af_micros(2))
    (item,) = run(workitem_env, [af.redelivered(fired("a", 0))])
    assert item["state"] == ACKNOWLEDGED
    assert item["manualBy"] == "alice"
    (item,) = run(workitem_env, [resolved("a", 0, 9)])
    assert item["state"] == STATE_RESOLVED
    (entry,) = [h for h in workitem_env.history(item["id"]) if h["effect"] == "resolved"]
    assert "it was Acknowledged by alice" in entry["changes"]


def af_micros(minutes: float) -> int:
    return int((af.BASE.timestamp() + minutes * 60) * 1_000_000)


def test_a_closed_item_is_never_reopened(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=60)
    (item,) = run(workitem_env, [fired("a", 0), resolved("a", 0, 5)])
    workitem_env.store.set_state(item["id"], CLOSED, by="bob", at=af_micros(6))
    found = run(workitem_env, [fired("b", 10)])  # within the reopen window
    assert sorted((i["state"], i["reopenCount"]) for i in found) == [(CLOSED, 0), (NEW, 0)]


@pytest.mark.parametrize(("gap", "items", "reopens"), [(60, 1, 1), (60.5, 2, 0)])
def test_rule_mode_reopen_window_edges(
    workitem_env: WorkItemEnv, gap: float, items: int, reopens: int
) -> None:
    workitem_env.configure(mode="rule", reopen=60)
    found = run(workitem_env, [fired("a", 0), resolved("a", 0, 10), fired("b", 10 + gap)])
    assert len(found) == items
    newest = max(found, key=lambda i: i["firedAt"])
    assert (newest["state"], newest["reopenCount"]) == (NEW, reopens)


def test_rule_mode_occurrences_and_alert_ids(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule")
    (item,) = run(workitem_env, [fired("a", 0), fired("b", 1), resolved("a", 0, 4)])
    assert item["state"] == NEW
    assert item["occurrences"] == 2
    assert json.loads(item["alertIds"]) == [af.alert_id("a"), af.alert_id("b")]
    (item,) = run(workitem_env, [resolved("b", 1, 6)])
    assert item["state"] == STATE_RESOLVED
    assert item["resolvedAt"] == af.at(6)


def test_flapping_is_set_and_cleared(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=180, flap_threshold=3, flap_window=60)
    cycles = []
    for n, start in enumerate([0, 5, 10]):
        cycles += [fired(f"f{n}", start), resolved(f"f{n}", start, start + 2)]
    (item,) = run(workitem_env, cycles)
    assert item["flapping"] is True
    assert item["flappingUntil"] == af.at(12 + 60)
    (item,) = run(workitem_env, [fired("q", 102), resolved("q", 102, 107)])  # quiet 90 min
    assert item["flapping"] is False
    assert item["flappingUntil"] == ""
    assert item["reopenCount"] == 3


def test_service_health_stages(workitem_env: WorkItemEnv) -> None:
    (item,) = run(workitem_env, [service_health("TRK-9", "Active", 0)])
    assert item["state"] == NEW
    assert item["groupKind"] == "serviceHealth"
    (item,) = run(
        workitem_env,
        [service_health("TRK-9", "Active", 20), service_health("TRK-9", "Resolved", 45)],
    )
    assert (item["state"], item["resolvedAt"], item["occurrences"]) == (
        STATE_RESOLVED,
        af.at(45),
        3,
    )


def test_resource_health_recovery(workitem_env: WorkItemEnv) -> None:
    (item,) = run(workitem_env, [resource_health("Unavailable", 0)])
    assert item["state"] == NEW
    assert item["groupKind"] == "resourceHealth"
    (item,) = run(workitem_env, [resource_health("Available", 7)])
    assert item["state"] == STATE_RESOLVED
    assert item["resolvedAt"] == af.at(7)


def test_priority_and_assignment_group_overrides(workitem_env: WorkItemEnv) -> None:
    custom = {"itsm.priority": "2", "itsm.assignmentGroup": "DBA on call"}
    found = run(
        workitem_env,
        [fired("sev0", 0, severity="Sev0"), fired("o", 0, severity="Sev4", custom=custom)],
    )
    by_rule = {i["severity"]: i for i in found}
    assert (by_rule["Sev0"]["priority"], by_rule["Sev0"]["assignmentGroup"]) == (1, "")
    assert (by_rule["Sev4"]["priority"], by_rule["Sev4"]["assignmentGroup"]) == (2, "DBA on call")
