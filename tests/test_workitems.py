"""The lifecycle rules (shared.workitems) as pure functions: no storage involved."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shared import table_keys
from shared.alert_events import RULE, InvalidAlert, event_from_alert
from shared.workitem_rows import item_props
from shared.workitems import (
    ACKNOWLEDGED,
    CLOSED,
    IN_PROGRESS,
    MINUTE,
    NEW,
    STATE_RESOLVED,
    Derived,
    GroupState,
    ItemView,
    Overlay,
    Policy,
    before_horizon,
    derive,
    fold,
    merge,
    state_from_json,
    state_to_json,
    with_overlay,
)
from tests import alert_factory as af
from tests.alert_factory import fired, resolved, resource_health, service_health

ALERT_POLICY = Policy()
RULE_POLICY = Policy(correlation_mode=RULE)


def states(
    alerts: Iterable[Mapping[str, Any]], policy: Policy = ALERT_POLICY
) -> dict[str, GroupState]:
    """Each group's state after merging `alerts` in the order given."""
    out: dict[str, GroupState] = {}
    for alert in alerts:
        event = event_from_alert(alert, policy.correlation_mode)
        state = out.get(event.group.hash, GroupState(event.group))
        out[event.group.hash] = merge(state, event) or state
    return out


def derived(alerts: Iterable[Mapping[str, Any]], policy: Policy = ALERT_POLICY) -> list[Derived]:
    return [derive(s, policy) for _, s in sorted(states(alerts, policy).items())]


def items(alerts: Iterable[Mapping[str, Any]], policy: Policy = ALERT_POLICY) -> list[ItemView]:
    found = [i for d in derived(alerts, policy) for i in d.items.values()]
    return sorted(found, key=lambda i: (i.fired_at, i.id))


def only(alerts: Iterable[Mapping[str, Any]], policy: Policy = ALERT_POLICY) -> ItemView:
    found = items(alerts, policy)
    assert len(found) == 1, found
    return found[0]


def effects(alerts: list[dict[str, Any]], policy: Policy = ALERT_POLICY) -> list[tuple[str, str]]:
    """(alert name, effect) in event-time order, over all groups."""
    names = {event_from_alert(a, policy.correlation_mode).id: a["originAlertId"] for a in alerts}
    entries = [h for d in derived(alerts, policy) for h in d.history.values()]
    return [
        (names[h.entry_id], h.effect) for h in sorted(entries, key=lambda h: (h.time, h.entry_id))
    ]


# -- Fired / Resolved ---------------------------------------------------------------------


def test_fired_creates_a_new_item_and_resolved_resolves_it() -> None:
    item = only([fired("a", 0)])
    assert (item.state, item.resolved_at, item.occurrences) == (NEW, None, 1)
    item = only([fired("a", 0), resolved("a", 0, 12)])
    assert item.state == STATE_RESOLVED
    assert item.resolution == "resolved in Azure Monitor"
    assert item.resolved_at == af_micros(12)
    assert item.fired_at == af_micros(0)


def af_micros(minutes: float) -> int:
    return int((af.BASE.timestamp() + minutes * 60) * 1_000_000)


def test_resolved_before_fired_creates_the_item_already_resolved() -> None:
    early = only([resolved("a", 0, 12)])
    assert early.state == STATE_RESOLVED
    assert early.fired_at == af_micros(0)
    both = only([resolved("a", 0, 12), fired("a", 0)])
    assert both == only([fired("a", 0), resolved("a", 0, 12)])


def test_history_is_the_same_whatever_the_arrival_order() -> None:
    alerts = [fired("a", 0), resolved("a", 0, 12)]
    assert effects(alerts) == effects(alerts[::-1]) == [("a", "created"), ("a", "resolved")]


def test_a_fired_older_than_the_resolution_changes_nothing() -> None:
    base = [fired("a", 0), resolved("a", 0, 12)]
    item = only([*base, fired("a", 30)])  # the same alert instance firing after it resolved
    assert item.state == STATE_RESOLVED
    assert item.resolved_at == af_micros(12)
    assert ("a", "ignored") in effects([*base, fired("a", 30)])


def test_duplicates_add_nothing() -> None:
    event = event_from_alert(fired("a", 0), "alert")
    state = merge(GroupState(event.group), event)
    assert state is not None
    copy = event_from_alert(af.redelivered(fired("a", 0)), "alert")
    assert copy.id == event.id
    assert merge(state, copy) is None


def test_a_log_alert_resolve_without_resolved_at_uses_the_earliest_copy() -> None:
    late = resolved("a", 0, None, received=20)
    early = resolved("a", 0, None, received=15)
    assert only([fired("a", 0), late, early]).resolved_at == af_micros(15)
    assert only([fired("a", 0), early, late]) == only([fired("a", 0), late, early])


def test_changed_content_is_a_different_event() -> None:
    a = event_from_alert(fired("a", 0, severity="Sev2"), "alert")
    b = event_from_alert(fired("a", 0, severity="Sev1"), "alert")
    assert a.id != b.id
    assert a.group == b.group
    assert only([fired("a", 0, severity="Sev2"), fired("a", 0, severity="Sev1")]).severity == 1


# -- correlation --------------------------------------------------------------------------


def test_alert_mode_gives_one_item_per_alert_id() -> None:
    found = items([fired("a", 0), fired("b", 1)])
    assert len(found) == 2
    assert {i.id for i in found} == {
        table_keys.base_item_id(event_from_alert(fired(n, 0), "alert").group.hash) for n in "ab"
    }


def test_rule_mode_groups_alerts_of_a_rule_and_ci_set_and_resolves_when_all_resolved() -> None:
    alerts = [fired("a", 0), fired("b", 5), resolved("a", 0, 10)]
    item = only(alerts, RULE_POLICY)
    assert item.state == NEW
    assert item.occurrences == 2
    assert item.alert_ids == (af.alert_id("a"), af.alert_id("b"))
    done = only([*alerts, resolved("b", 5, 20)], RULE_POLICY)
    assert done.state == STATE_RESOLVED
    assert done.resolved_at == af_micros(20)


def test_rule_mode_keeps_different_ci_sets_apart() -> None:
    other = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-2"
    assert len(items([fired("a", 0), fired("b", 1, cis=(other,))], RULE_POLICY)) == 2


def test_custom_property_overrides_the_correlation_mode() -> None:
    rule = {"itsm.correlation": "rule"}
    assert len(items([fired("a", 0, custom=rule), fired("b", 1, custom=rule)])) == 1
    alert = {"ITSM.Correlation": "alert"}
    assert len(items([fired("a", 0, custom=alert), fired("b", 1, custom=alert)], RULE_POLICY)) == 2


# -- reopen window ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap_minutes", "expected_items", "reopens"),
    [(0.5, 1, 1), (60, 1, 1), (60 + 1e-6 / 60, 2, 0), (61, 2, 0)],
)
def test_reopen_window_edges(gap_minutes: float, expected_items: int, reopens: int) -> None:
    alerts = [fired("a", 0), resolved("a", 0, 10), fired("b", 10 + gap_minutes)]
    found = items(alerts, RULE_POLICY)
    assert len(found) == expected_items
    assert found[-1].reopen_count == reopens
    assert found[-1].state == NEW


def test_a_reopened_item_counts_reopens_and_cycles() -> None:
    alerts = [
        fired("a", 0), resolved("a", 0, 5),
        fired("b", 20), resolved("b", 20, 25),
        fired("c", 40),
    ]  # fmt: skip
    item = only(alerts, RULE_POLICY)
    assert (item.reopen_count, item.cycles, item.occurrences, item.state) == (2, 3, 3, NEW)
    assert [e for _, e in effects(alerts, RULE_POLICY)] == [
        "created", "resolved", "reopened", "resolved", "reopened",
    ]  # fmt: skip


def test_a_late_event_splits_an_episode_exactly_as_in_order_delivery() -> None:
    # a fires at 0 and resolves at 10; b fires at 100 (outside the window after a resolved).
    in_order = [fired("a", 0), resolved("a", 0, 10), fired("b", 100)]
    late_resolve = [fired("a", 0), fired("b", 100), resolved("a", 0, 10)]
    assert items(in_order, RULE_POLICY) == items(late_resolve, RULE_POLICY)
    assert len(items(in_order, RULE_POLICY)) == 2


# -- flapping -----------------------------------------------------------------------------


def cycles(starts: Iterable[float], length: float = 2, prefix: str = "f") -> list[dict[str, Any]]:
    out = []
    for n, start in enumerate(starts):
        name = f"{prefix}{n}"
        out += [fired(name, start), resolved(name, start, start + length)]
    return out


def test_flapping_is_set_at_the_threshold_within_the_window() -> None:
    policy = Policy(RULE, reopen_window=60 * MINUTE, flap_threshold=4, flap_window=60 * MINUTE)
    three = only(cycles([0, 10, 20]), policy)
    assert not three.flapping
    four = only(cycles([0, 10, 20, 30]), policy)
    assert four.flapping
    assert four.flapping_until == af_micros(32 + 60)
    spread = only(cycles([0, 30, 61, 95]), policy)  # never 4 starts within 60 minutes
    assert not spread.flapping


def test_flapping_clears_after_a_quiet_window() -> None:
    policy = Policy(RULE, reopen_window=180 * MINUTE, flap_threshold=3, flap_window=60 * MINUTE)
    flapping = cycles([0, 5, 10])
    assert only(flapping, policy).flapping
    quiet = [*flapping, *cycles([12 + 90], length=5, prefix="q")]  # quiet 90 min, reopens
    later = only(quiet, policy)
    assert not later.flapping
    assert later.reopen_count == 3
    messages = [c for d in derived(quiet, policy) for h in d.history.values() for c in h.changes]
    assert any(m.startswith("flapping cleared") for m in messages)


def test_flapping_also_clears_when_the_last_cycle_lasts_a_window() -> None:
    policy = Policy(RULE, reopen_window=60 * MINUTE, flap_threshold=3, flap_window=60 * MINUTE)
    alerts = [*cycles([0, 5]), fired("long", 10), resolved("long", 10, 80)]
    assert not only(alerts, policy).flapping
    assert only(alerts[:-1], policy).flapping


# -- people's states ----------------------------------------------------------------------


def overlay(item: ItemView, state: str, at_minutes: float, by: str = "alice") -> Overlay:
    return Overlay(
        f"M{state}{at_minutes}", item.anchor, item.id, state, af_micros(at_minutes), by, ""
    )


def with_person(
    alerts: list[dict[str, Any]], state: str, at_minutes: float, policy: Policy = ALERT_POLICY
) -> GroupState:
    (group_state,) = states(alerts, policy).values()
    (item,) = derive(group_state, policy).items.values()
    return with_overlay(group_state, overlay(item, state, at_minutes))


def add(state: GroupState, *alerts: dict[str, Any], policy: Policy = ALERT_POLICY) -> GroupState:
    for alert in alerts:
        state = merge(state, event_from_alert(alert, policy.correlation_mode)) or state
    return state


@pytest.mark.parametrize("manual", [ACKNOWLEDGED, IN_PROGRESS])
def test_a_person_state_survives_a_duplicate_fired(manual: str) -> None:
    state = with_person([fired("a", 0)], manual, 5)
    state = add(state, af.redelivered(fired("a", 0)))
    (item,) = derive(state, ALERT_POLICY).items.values()
    assert item.state == manual
    assert item.manual is not None
    assert item.manual.by == "alice"


def test_resolved_from_azure_resolves_an_acknowledged_item_and_says_so() -> None:
    state = add(with_person([fired("a", 0)], ACKNOWLEDGED, 5), resolved("a", 0, 12))
    view = derive(state, ALERT_POLICY)
    (item,) = view.items.values()
    assert item.state == STATE_RESOLVED
    assert item.resolution == "resolved in Azure Monitor"
    (entry,) = [h for h in view.history.values() if h.effect == "resolved"]
    assert any("it was Acknowledged by alice" in c for c in entry.changes)


def test_a_closed_item_is_never_reopened_by_an_alert_event() -> None:
    # alert mode: its own Resolved, late, changes nothing
    state = add(with_person([fired("a", 0)], CLOSED, 5), resolved("a", 0, 12))
    (item,) = derive(state, ALERT_POLICY).items.values()
    assert item.state == CLOSED
    # rule mode: a new alert within the reopen window opens a new item instead
    state = with_person([fired("a", 0), resolved("a", 0, 5)], CLOSED, 6, RULE_POLICY)
    state = add(state, fired("b", 10), policy=RULE_POLICY)
    found = sorted(derive(state, RULE_POLICY).items.values(), key=lambda i: i.fired_at)
    assert [i.state for i in found] == [CLOSED, NEW]
    assert found[1].reopen_count == 0


def test_a_closed_item_keeps_its_id_when_a_late_event_joins_it() -> None:
    state = with_person([fired("b", 5)], CLOSED, 8, RULE_POLICY)
    closed_id = next(iter(derive(state, RULE_POLICY).items))
    state = add(state, fired("a", 0), policy=RULE_POLICY)  # fired earlier, arrived later
    found = derive(state, RULE_POLICY).items
    assert list(found) == [closed_id]
    assert found[closed_id].state == CLOSED
    assert found[closed_id].occurrences == 2


# -- stateless and status-driven types ----------------------------------------------------


def test_activity_log_alerts_stay_open_until_closed() -> None:
    alert = fired("a", 0, service="Activity Log - Administrative", signal_type="ActivityLog")
    assert only([alert]).state == NEW


def test_service_health_updates_one_item_and_its_resolved_stage_resolves_it() -> None:
    updates = [
        service_health("TRK-1", "Active", 0),
        service_health("TRK-1", "Active", 30),
        service_health("TRK-1", "Resolved", 90),
        service_health("TRK-1", "RCA", 2000),
    ]
    for policy in (ALERT_POLICY, RULE_POLICY):
        assert only(updates[:2], policy).state == NEW
        item = only(updates, policy)
        assert item.state == STATE_RESOLVED
        assert item.resolved_at == af_micros(90)
        assert item.occurrences == 4
        assert only(list(reversed(updates)), policy) == item
    assert (
        len(items([service_health("TRK-1", "Active", 0), service_health("TRK-2", "Active", 0)]))
        == 2
    )


def test_resource_health_available_resolves_the_open_item_of_rule_and_resource() -> None:
    events = [resource_health("Unavailable", 0), resource_health("Degraded", 5)]
    assert only(events).state == NEW
    item = only([*events, resource_health("Available", 12)])
    assert item.state == STATE_RESOLVED
    assert item.resolved_at == af_micros(12)
    alone = only([resource_health("Available", 12)])
    assert alone.state == STATE_RESOLVED
    again = items([*events, resource_health("Available", 12), resource_health("Unavailable", 200)])
    assert [i.state for i in again] == [STATE_RESOLVED, NEW]


# -- priority and assignment --------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("Sev0", 1), ("Sev1", 2), ("Sev2", 3), ("Sev3", 4), ("Sev4", 5), (None, 3)],
)
def test_severity_maps_to_priority(severity: str | None, expected: int) -> None:
    assert only([fired("a", 0, severity=severity)]).priority == expected


def test_custom_properties_override_priority_and_assignment_group() -> None:
    custom = {"itsm.priority": "1", "itsm.assignmentGroup": "Team Web"}
    item = only([fired("a", 0, severity="Sev4", custom=custom)])
    assert (item.priority, item.assignment_group) == (1, "Team Web")
    assert only([fired("a", 0, custom={"itsm.priority": "9"})]).priority == 3


# -- invalid alerts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schemaVersion": "2.0"}, "major version 2"),
        ({"schemaVersion": None}, "schemaVersion"),
        ({"alertId": ""}, "no alertId"),
        ({"monitorCondition": "Maybe"}, "monitorCondition"),
    ],
)
def test_alerts_that_can_never_be_processed_are_rejected(
    change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidAlert, match=reason):
        event_from_alert({**fired("a", 0), **change}, "alert")


def test_unknown_fields_and_minor_versions_are_tolerated() -> None:
    event_from_alert({**fired("a", 0), "schemaVersion": "1.7", "somethingNew": [1]}, "alert")


# -- serialization ------------------------------------------------------------------------


def test_group_state_round_trips_through_json() -> None:
    (state,) = states([fired("a", 0), resolved("a", 0, 3)]).values()
    (item,) = derive(state, ALERT_POLICY).items.values()
    state = with_overlay(state, overlay(item, ACKNOWLEDGED, 1))
    assert state_from_json(state_to_json(state)) == state


# -- order independence (pure; the storage-level property test is in test_processor_*) ----


def test_any_permutation_gives_the_same_items_and_history() -> None:
    rng = random.Random(7)
    for policy in (ALERT_POLICY, RULE_POLICY, Policy(RULE, 10 * MINUTE, 2, 30 * MINUTE)):
        alerts = []
        for n in range(8):
            start = rng.choice([0, 5, 12, 30, 31, 70, 75, 200])
            alerts.append(fired(f"p{n}", start))
            if rng.random() < 0.7:
                alerts.append(resolved(f"p{n}", start, start + rng.choice([1, 4, 20])))
        alerts += [service_health("T", "Active", 3), service_health("T", "Resolved", 40)]
        expected = derived(sorted(alerts, key=lambda a: a["occurredAt"] or a["receivedAt"]), policy)
        for _ in range(30):
            shuffled = rng.sample(alerts, len(alerts))
            shuffled += [af.redelivered(a) for a in rng.sample(alerts, 3)]
            assert derived(shuffled, policy) == expected


def test_folding_archives_the_oldest_finished_items_and_ignores_older_events() -> None:
    policy = Policy(RULE, reopen_window=5 * MINUTE)
    alerts = cycles([n * 30 for n in range(15)], length=2)  # 15 separate items, 30 events
    (state,) = states(alerts, policy).values()
    folded = fold(state, policy)
    assert len(folded.events) < len(state.events)
    assert folded.archived
    before = derive(state, policy).items
    after = derive(folded, policy).items
    assert set(after) | set(folded.archived) == set(before)
    assert all(  # the kept items' rows are unchanged
        item_props(after[i], state.group, state.cis)
        == item_props(before[i], state.group, state.cis)
        for i in after
    )
    late = event_from_alert(fired("late", 1), policy.correlation_mode)  # before the horizon
    assert before_horizon(folded, late)
    assert merge(folded, late) is None
    fresh = event_from_alert(fired("fresh", 600), policy.correlation_mode)
    assert merge(folded, fresh) is not None
    assert fold(folded, policy) == folded  # below the window's bound: unchanged


def test_a_late_fired_of_the_same_instance_keeps_ids_and_peoples_changes() -> None:
    # Resolved first (rule mode), a person acknowledges, then the instance's Fired arrives.
    late = fired("b", 1)
    state = with_person([fired("a", 0), resolved("b", 1, 20)], ACKNOWLEDGED, 5, RULE_POLICY)
    (before,) = derive(state, RULE_POLICY).items.values()
    (after,) = derive(add(state, late, policy=RULE_POLICY), RULE_POLICY).items.values()
    assert after.id == before.id
    assert after.anchor == before.anchor
    assert after.state == ACKNOWLEDGED
    assert after.manual == before.manual
