"""Folding (shared.workitems.fold): bounded group state, the same work items and history.

A group's state keeps a window of recent events and folds older ones into the live item's
carry. These tests replay long event streams the way the store does (merge, then fold) and
keep "tables" the way the store writes them (every derived row overwritten, rows of events
and items that left the state kept as they were), then compare with `derive` over every
event at once: the rows must be equal, and the state must stay small.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shared.alert_events import RULE, event_from_alert
from shared.workitem_rows import history_props, item_props
from shared.workitems import (
    FOLD_AT,
    LATENESS,
    MINUTE,
    WINDOW_CAP,
    GroupState,
    Policy,
    Record,
    before_horizon,
    derive,
    folding,
    hidden_key,
    merge,
    needs_hidden,
    state_from_json,
    state_to_json,
)
from tests.alert_factory import fired, resolved, resource_health, service_health

Tables = tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]


def replay(
    alerts: Iterable[Mapping[str, Any]], policy: Policy, *, fold: bool = True
) -> tuple[GroupState, Tables, int, list[str]]:
    """(state, rows, largest state JSON, too-late alert names) after each alert in turn."""
    state: GroupState | None = None
    items: dict[str, dict[str, Any]] = {}
    history: dict[str, dict[str, Any]] = {}
    largest = 0
    late: list[str] = []
    previous: set[str] = set()
    hidden: dict[str, Record] = {}  # the store's rows of hidden open alert instances
    for alert in alerts:
        event = event_from_alert(alert, policy.correlation_mode)
        state = state or GroupState(event.group)
        if before_horizon(state, event):
            late.append(str(alert["originAlertId"]))
            continue
        revived = (
            hidden.pop(hidden_key(event.alert_id), None) if needs_hidden(state, event) else None
        )
        merged = merge(state, event, revived)
        if merged is None:
            continue
        if fold:
            state, newly = folding(merged, policy)
            hidden.update({hidden_key(r.alert_id): r for r in newly})
        else:
            state = merged
        derived = derive(state, policy)
        for gone in previous - set(derived.items) - set(state.archived):
            del items[gone]  # the store deletes an item's row that the state no longer has
        previous = set(derived.items)
        items.update({k: item_props(v, state.group, state.cis) for k, v in derived.items.items()})
        history.update({k: history_props(v, state.group) for k, v in derived.history.items()})
        largest = max(largest, len(state_to_json(state)))
    assert state is not None
    return state, (items, history), largest, late


def assert_same(policy: Policy, alerts: list[dict[str, Any]], shuffled: bool = False) -> int:
    _, (items, history), _, _ = replay(alerts, policy, fold=False)
    rng = random.Random(7)
    order = list(alerts)
    if shuffled:  # swap neighbours a few places apart: well within the horizon
        for n in range(0, len(order) - 3, 2):
            k = n + rng.randrange(3)
            order[n], order[k] = order[k], order[n]
    state, (f_items, f_history), largest, late = replay(order, policy)
    assert late == []
    for key in items:
        assert f_items[key] == items[key], key
    assert f_items.keys() == items.keys()
    for key in history:
        assert f_history[key] == history[key], key
    assert f_history.keys() == history.keys()
    assert state_from_json(state_to_json(state)) == state
    assert len([r for r in state.events if not r.carried]) <= WINDOW_CAP
    return largest


RULE60 = Policy(RULE, reopen_window=60 * MINUTE, flap_threshold=4, flap_window=60 * MINUTE)


def stateless(n: int, every: float = 5) -> list[dict[str, Any]]:
    return [fired(f"s{k}", k * every, rule="logs") for k in range(n)]


def flapping(n: int, every: float = 4, length: float = 1.5) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        out += [fired(f"f{k}", k * every), resolved(f"f{k}", k * every, k * every + length)]
    return out


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_stateless_rule_that_never_resolves(shuffled: bool) -> None:
    small = assert_same(RULE60, stateless(30), shuffled)
    large = assert_same(RULE60, stateless(400), shuffled)
    assert large < 2 * small  # bounded: it does not grow with the events


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_flapping_metric_alert(shuffled: bool) -> None:
    assert_same(RULE60, flapping(200), shuffled)


def test_flapping_with_gaps_makes_items_and_archives_them() -> None:
    policy = Policy(RULE, reopen_window=10 * MINUTE, flap_threshold=3, flap_window=30 * MINUTE)
    alerts = []
    for burst in range(12):
        alerts += [
            a
            for k in range(8)
            for a in (
                fired(f"b{burst}-{k}", burst * 120 + k * 3),
                resolved(f"b{burst}-{k}", burst * 120 + k * 3, burst * 120 + k * 3 + 1),
            )
        ]
    assert_same(policy, alerts)


def test_overlapping_alerts_and_log_resolves() -> None:
    alerts = []
    for k in range(150):
        alerts.append(fired(f"o{k}", k * 3))
        if k % 3:
            alerts.append(resolved(f"o{k}", k * 3, k * 3 + 7))
        elif k % 2:
            alerts.append(resolved(f"o{k}", k * 3, None, received=k * 3 + 4.5))
    alerts.sort(key=lambda a: str(a["resolvedAt"] or a["occurredAt"] or a["receivedAt"]))
    assert_same(RULE60, alerts)
    assert_same(Policy(RULE, reopen_window=0, flap_threshold=2, flap_window=20 * MINUTE), alerts)


@pytest.mark.parametrize("shuffled", [False, True])
def test_many_alert_instances_open_at_once_resolve_in_any_order(shuffled: bool) -> None:
    alerts = [fired(f"c{i}", i / 2) for i in range(60)]
    alerts += [resolved(f"c{i}", i / 2, 20 + i / 4) for i in random.Random(3).sample(range(60), 60)]
    alerts.sort(key=lambda a: str(a["resolvedAt"] or a["occurredAt"]))
    assert_same(Policy(RULE, reopen_window=600 * MINUTE), alerts, shuffled)
    alerts += [fired(f"d{i}", 40 + i) for i in range(60)]  # stateless: they stay open
    alerts += [resolved(f"d{i}", 40 + i, 120 + i) for i in range(0, 60, 7)]
    assert_same(RULE60, alerts, shuffled)


def test_service_health_with_many_updates() -> None:
    alerts = [service_health("TRK", "Active", k * 7) for k in range(120)]
    alerts.append(service_health("TRK", "Resolved", 120 * 7))
    assert_same(Policy(), alerts)


def test_resource_health_spells() -> None:
    statuses = ["Unavailable", "Degraded", "Available"]
    alerts = [resource_health(statuses[k % 3], k * 11) for k in range(150)]
    assert_same(RULE60, alerts)


def test_an_event_older_than_the_horizon_is_too_late_and_a_known_one_a_duplicate() -> None:
    alerts = stateless(FOLD_AT * 3)
    state, _, _, _ = replay(alerts, RULE60)
    assert state.horizon is not None
    old = event_from_alert(fired("ancient", 0, rule="logs"), RULE)
    assert before_horizon(state, old)
    newest = event_from_alert(alerts[-1], RULE)
    assert not before_horizon(state, newest)
    assert merge(state, newest) is None  # a duplicate within the window
    fresh = event_from_alert(fired("fresh", FOLD_AT * 3 * 5, rule="logs"), RULE)
    assert merge(state, fresh) is not None
    assert state.horizon <= newest.time - LATENESS
