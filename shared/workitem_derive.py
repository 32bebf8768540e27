"""The derivation: every work item and history entry of a group, from its set of events.

`derive(state, policy)` replays the group state (shared/workitem_state.py) in event-time
order: segments and periods (shared/workitem_periods.py), episodes (one work item each, its
reopens), then each item's state, severity, priority, flapping and history entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import table_keys
from shared.alert_events import ALERT, LEVEL_KINDS, RESOLVED, SERVICE_HEALTH, GroupKey, iso
from shared.workitem_periods import (
    Period,
    Segment,
    alert_segments,
    flap_replay,
    level_segments,
    periods_of,
)
from shared.workitem_state import (
    ACKNOWLEDGED,
    CLOSED,
    IN_PROGRESS,
    NEW,
    STATE_RESOLVED,
    Carry,
    CiSeen,
    GroupState,
    Overlay,
    Policy,
)

AZURE_RESOLUTION = "resolved in Azure Monitor"
SEVERITY_PRIORITY = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}
DEFAULT_PRIORITY = 3  # budgets and other alerts without a severity

# Effects, most significant first: a history entry shows the first that applies.
CREATED = "created"
REOPENED = "reopened"
EFFECT_RESOLVED = "resolved"
UPDATED = "updated"
IGNORED = "ignored"
MANUAL = "manual"
_EFFECT_ORDER = (CREATED, REOPENED, EFFECT_RESOLVED, UPDATED, IGNORED)

MAX_ALERT_IDS = 10  # alert ids an item lists (alertCount says how many it has)


@dataclass(frozen=True)
class ItemView:
    id: str
    anchor: str  # first segment: what a person's state change is pinned to
    state: str
    resolution: str | None
    fired_at: int
    resolved_at: int | None
    last_event_at: int
    occurrences: int
    cycles: int
    reopen_count: int
    flapping: bool
    flapping_until: int | None
    severity: int | None
    priority: int
    assignment_group: str | None
    alert_ids: tuple[str, ...]
    facts_event: str  # the latest applied event: title, description, links come from it
    manual: Overlay | None
    events: tuple[str, ...]  # in event-time order
    segments: tuple[str, ...]  # ids of its alert instances / status spells
    assignee: str | None = None  # set by a person only
    rules: tuple[str, ...] = ()  # hashes of its alert rules' ids and names (index filters)
    last_manual_at: int | None = None  # a person's latest change of any kind (even a note)


@dataclass(frozen=True)
class HistoryView:
    entry_id: str  # event id, or overlay id for a person's change
    item_id: str | None
    effect: str
    changes: tuple[str, ...]
    time: int
    ignored: bool
    actor: Overlay | None = None  # a person's change: who, and what they sent


@dataclass(frozen=True)
class Derived:
    items: Mapping[str, ItemView]
    history: Mapping[str, HistoryView]
    cis: tuple[CiSeen, ...]
    archived: tuple[str, ...] = ()
    group: GroupKey | None = None  # whose items: the index rows live in its tenant's scope


def _episodes(periods: list[Period], window: int | None) -> list[list[Period]]:
    episodes: list[list[Period]] = []
    for p in periods:
        prev = episodes[-1][-1] if episodes else None
        if (
            prev is not None
            and prev.end is not None
            and (window is None or p.start - prev.end <= window)
        ):
            episodes[-1].append(p)
        else:
            episodes.append([p])
    return episodes


def _window(kind: str, policy: Policy) -> int | None:
    return None if kind == SERVICE_HEALTH else policy.reopen_window


def _segment_ids(episode: list[Period]) -> set[str]:
    return {s.id for p in episode for s in p.segments}


def overlay_changes(o: Overlay) -> tuple[str, ...]:
    """What a person's change did, in sentences for the history."""
    out = []
    note = f": {o.note}" if o.note else ""
    if o.state:
        what = f"reopened ({NEW})" if o.state == NEW else o.state
        out.append(f"{what} by {o.by}{note}")
    if o.assignee is not None:
        out.append(f"assigned to {o.assignee} by {o.by}" if o.assignee else f"unassigned by {o.by}")
    if o.assignment_group is not None:
        out.append(
            f"assignment group {o.assignment_group} set by {o.by}"
            if o.assignment_group
            else f"assignment group back to the alert's, by {o.by}"
        )
    if o.priority is not None:
        out.append(
            f"priority {o.priority} set by {o.by}"
            if o.priority
            else f"priority back to the alert's, by {o.by}"
        )
    if not o.state and o.note:
        out.append(f"note by {o.by}{note}")
    return tuple(out) or (f"no change by {o.by}",)


def _owned_overlays(
    overlays: Iterable[Overlay], segment_ids: set[str], item_id: str, all_ids: set[str]
) -> list[Overlay]:
    """A person's changes to the item made of these segments, oldest first.

    A change is pinned to the item's first segment when it was made (its anchor); the item
    that holds that segment now is the one it applies to, whatever its id is today. A change
    whose anchor no longer names any segment (a status spell renamed by a late event) stays
    with the item id it was made on.
    """
    return sorted(
        (
            o
            for o in overlays
            if o.anchor in segment_ids or (o.anchor not in all_ids and o.item_id == item_id)
        ),
        key=lambda o: (o.at, o.id),
    )


def derive(state: GroupState, policy: Policy) -> Derived:
    """Every work item of the group and every history entry, from the set of events.

    After a fold (`fold`), the set is the window plus the live item's carry: the items and
    entries of the window's events come out as they would from every event.
    """
    kind = state.group.kind
    segments = (level_segments if kind in LEVEL_KINDS else alert_segments)(state.events)
    window = _window(kind, policy)
    carry = state.carry
    carried = {s.id for s in segments if any(r.carried for r in s.events)}

    def ids(episode: list[Period]) -> set[str]:
        found = _segment_ids(episode)
        if carry is not None and found & carried:
            found.add(carry.anchor)
        return found

    def carry_of(segs: Iterable[Segment]) -> Carry | None:
        return carry if carry is not None and any(s.id in carried for s in segs) else None

    # A Closed item keeps the segments it had when it was first closed (and their late
    # events); anything that starts after that goes to other items: it never reopens by an
    # alert. A person may reopen it; the items opened meanwhile stay apart.
    remaining = segments
    closed: list[tuple[Overlay, list[Segment]]] = []
    owned_ids: set[str] = set()
    for o in sorted(state.overlays, key=lambda o: (o.at, o.id)):
        if o.state != CLOSED or o.anchor in owned_ids:
            continue
        episodes = _episodes(periods_of(remaining), window)
        owner = next((e for e in episodes if o.anchor in ids(e)), None)
        if owner is None:
            # A status spell is named by its first event, which a late event can change:
            # then the close applies to the latest episode that began before it.
            earlier = [e for e in episodes if e[0].start <= o.at]
            if kind not in LEVEL_KINDS or not earlier:
                continue
            owner = earlier[-1]
        owned = [
            s
            for p in owner
            for s in p.segments
            if s.start <= o.at or s.id == o.anchor or s.id in carried
        ]
        taken = {s.id for s in owned}
        owned_ids |= taken
        remaining = [s for s in remaining if s.id not in taken]
        closed.append((o, owned))

    items: dict[str, ItemView] = {}
    history: dict[str, HistoryView] = {}
    all_ids = {seg.id for seg in segments} | ({carry.anchor} if carry is not None else set())
    used = {o.item_id for o, _ in closed} | set(state.archived)  # ids are never reused
    if carry is not None:
        used.add(carry.item_id)
    for o, owned in closed:
        mine_ids = {s.id for s in owned} | (
            {carry.anchor} if carry_of(owned) is not None and carry is not None else set()
        )
        mine = _owned_overlays(state.overlays, mine_ids, o.item_id, all_ids)
        mine = mine if o in mine else sorted([*mine, o], key=lambda x: (x.at, x.id))
        _build(o.item_id, periods_of(owned), policy, o, mine, items, history, carry_of(owned))
    for episode in _episodes(periods_of(remaining), window):
        first = episode[0].segments[0].id
        mine_carry = carry_of(s for p in episode for s in p.segments)
        if mine_carry is not None:
            item_id = mine_carry.item_id
        elif (
            kind in (ALERT, SERVICE_HEALTH)
            and table_keys.base_item_id(state.group.hash) not in used
        ):
            item_id = table_keys.base_item_id(state.group.hash)
        else:
            attempt = 0
            while table_keys.anchored_item_id(state.group.hash, first, attempt) in used:
                attempt += 1
            item_id = table_keys.anchored_item_id(state.group.hash, first, attempt)
        used.add(item_id)
        mine = _owned_overlays(state.overlays, ids(episode), item_id, all_ids)
        _build(item_id, episode, policy, None, mine, items, history, mine_carry)

    owners = {r: i.id for i in items.values() for r in (*i.segments, i.anchor)}
    for o in state.overlays:
        target = owners.get(o.anchor) or (o.item_id if o.item_id in items else None)
        history[o.id] = HistoryView(o.id, target, MANUAL, overlay_changes(o), o.at, False, actor=o)
    return Derived(items, history, state.cis, state.archived, state.group)


def priority(severity: int | None, override: int | None) -> int:
    """Sev0..Sev4 -> 1..5 unless the rule's `itsm.priority` says otherwise."""
    if override is not None:
        return override
    return DEFAULT_PRIORITY if severity is None else SEVERITY_PRIORITY[severity]


def _flapping(
    periods: list[Period], policy: Policy, init: Carry | None = None
) -> tuple[bool, int | None, dict[str, list[str]]]:
    """Flag at the threshold-th cycle start within the window; clear after a quiet window."""
    notes: dict[str, list[str]] = {}
    _, flapping, prev = flap_replay(periods, policy, init, notes)
    until = prev + policy.flap_window if flapping and prev is not None else None
    return flapping, until, notes


def _decisive_change(changes: list[Overlay], last: Period) -> Overlay | None:
    """The person's state change that decides the state, or None: the alerts decide.

    While the last period is open, the latest change made during it holds (a duplicate or
    further Fired changes nothing). Once Azure Monitor resolved the period, its resolution
    wins over an acknowledgement (the history says so), unless a person reopened the item
    after that resolution: then their latest change holds.
    """
    if not changes:
        return None
    latest = changes[-1]
    if last.end is None:
        return latest if latest.at >= last.start else None
    after = [o for o in changes if o.at >= last.end]
    if not any(o.state == NEW for o in after):
        return None
    return after[-1]


def _latest(changes: list[Overlay], name: str) -> Any:
    """The latest value a person gave `name` (None: never set)."""
    for o in reversed(changes):
        value = getattr(o, name)
        if value is not None:
            return value
    return None


def _build(
    item_id: str,
    periods: list[Period],
    policy: Policy,
    closure: Overlay | None,
    mine: list[Overlay],
    items: dict[str, ItemView],
    history: dict[str, HistoryView],
    carry: Carry | None = None,
) -> None:
    segments = [s for p in periods for s in p.segments]
    records = sorted(
        (r for s in segments for r in s.events if not r.carried),
        key=lambda r: (r.time, r.condition, r.id),
    )
    ignored = {i for s in segments for i in s.ignored}
    applied = [r for r in records if r.id not in ignored]
    if not applied and carry is None:
        applied = records
    candidates = [*applied, *([carry.facts] if carry is not None and carry.facts else [])]
    if not candidates:  # only carried records: their first one stands in
        candidates = [r for s in segments for r in s.events][:1]
    facts = max(candidates, key=lambda r: (r.time, r.condition == RESOLVED, r.id))
    severities = [r.severity for r in applied if r.severity is not None]
    if carry is not None and carry.severity is not None:
        severities.append(carry.severity)
    severity = min(severities) if severities else None
    last = periods[-1]
    before = carry.cycles_before if carry is not None else 0

    state_changes = [o for o in mine if o.state]
    manual = state_changes[-1] if state_changes else None
    state, resolved_at, resolution = NEW, last.end, None
    acked: Overlay | None = None
    closer: Overlay | None = None
    if closure is not None and manual is not None and manual.state == CLOSED:
        state, closer = CLOSED, manual
        resolution = f"closed by {manual.by}" + (f": {manual.note}" if manual.note else "")
    else:
        decisive = _decisive_change(state_changes, last)
        if decisive is not None and decisive.state != CLOSED:
            state = decisive.state
            if state == STATE_RESOLVED:
                resolved_at = decisive.at
                resolution = f"resolved by {decisive.by}" + (
                    f": {decisive.note}" if decisive.note else ""
                )
        elif last.end is not None:
            state, resolution = STATE_RESOLVED, AZURE_RESOLUTION
            if manual is not None and manual.state in (ACKNOWLEDGED, IN_PROGRESS):
                acked = manual if manual.at >= last.start else None
    flapping, flapping_until, flap_notes = _flapping(periods, policy, carry)

    # Alert instances in the order they started (then appeared): later ones come after.
    first_seen: dict[str, tuple[int, int]] = {}
    for s in segments:
        for r in s.events:
            if not r.carried:
                seen = (s.start, r.time)
                first_seen[r.alert_id] = min(first_seen.get(r.alert_id, seen), seen)
    ordered = sorted(first_seen, key=lambda a: (first_seen[a], a))
    if carry is not None:
        counted = {*carry.known, *carry.alert_ids}
        fresh = [a for a in ordered if a not in counted]
        alert_ids = (*carry.alert_ids, *fresh)[:MAX_ALERT_IDS]
        occurrences = carry.alert_count + len(fresh)
    else:
        alert_ids, occurrences = tuple(ordered[:MAX_ALERT_IDS]), len(ordered)
    times = [r.time for r in applied] + ([carry.last_event_at] if carry is not None else [])
    rules = {h for r in records for h in r.rules} | set(carry.rules if carry else ())

    view = ItemView(
        id=item_id,
        anchor=carry.anchor if carry is not None else periods[0].segments[0].id,
        state=state,
        resolution=resolution,
        fired_at=carry.fired_at if carry is not None else periods[0].start,
        resolved_at=resolved_at if state in (STATE_RESOLVED, CLOSED) else None,
        last_event_at=max(times) if times else facts.time,
        occurrences=occurrences,
        cycles=before + len(periods),
        reopen_count=before + len(periods) - 1,
        flapping=flapping,
        flapping_until=flapping_until,
        severity=severity,
        priority=_latest(mine, "priority") or priority(severity, facts.priority_override),
        assignment_group=_latest(mine, "assignment_group") or facts.assignment_group,
        alert_ids=alert_ids,
        facts_event=facts.id,
        manual=manual,
        events=tuple(r.id for r in records),
        segments=tuple(sorted(s.id for s in segments)),
        assignee=_latest(mine, "assignee") or None,
        last_manual_at=mine[-1].at if mine else None,
        rules=tuple(sorted(rules)),
    )
    items[item_id] = view

    effects: dict[str, set[str]] = {}
    changes: dict[str, list[str]] = {}
    for n, p in enumerate(periods, start=before):
        if n == 0:
            effects.setdefault(p.start_event, set()).add(CREATED)
            changes.setdefault(p.start_event, []).append(f"work item created, fired {iso(p.start)}")
        else:
            effects.setdefault(p.start_event, set()).add(REOPENED)
            changes.setdefault(p.start_event, []).append(f"reopened (reopen {n})")
        if p.end_event is not None:
            effects.setdefault(p.end_event, set()).add(EFFECT_RESOLVED)
            text = AZURE_RESOLUTION
            if acked is not None and p is last:
                text += f" (it was {acked.state} by {acked.by})"
            changes.setdefault(p.end_event, []).append(text)
    for event, notes in flap_notes.items():
        changes.setdefault(event, []).extend(notes)
    instance_notes = {k: v for s in segments for k, v in s.notes.items()}
    for r in records:
        found = effects.get(r.id, set())
        effect = next(
            (e for e in _EFFECT_ORDER if e in found),
            IGNORED if r.id in ignored else UPDATED,
        )
        entry = [instance_notes[r.id], *changes.get(r.id, [])]
        if closer is not None and r.time > closer.at:
            entry.append("the work item is Closed: its state does not change")
        history[r.id] = HistoryView(r.id, item_id, effect, tuple(entry), r.time, r.id in ignored)
