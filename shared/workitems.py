"""Work items and their lifecycle, as pure functions of the SET of events a group has seen.

A group (one alert, one rule and CI set, one Service Health tracking id, ...) keeps the
events it has seen in a grow-only set (`GroupState`); `merge` adds one idempotently. What
is stored about its work items -- which items exist, their states, occurrences, reopens,
flapping, every history entry and what it changed -- is `derive(state, policy)`: a
function of the set, computed by replaying it in event-time order. Arrival order,
duplicates and concurrency therefore cannot change the tables: the same set of events
always gives the same work items, exactly as if each event had arrived once, in order.

The replay, step by step:
1. segments: each alert instance is open from its earliest fire to its latest resolve
   (Resolved wins for one alert id, like Alertmanager's earliest start / latest end);
   Service Health and Resource Health follow each event's stage/status instead;
2. periods: overlapping segments merge (the item is open while any alert in it fires);
3. episodes: periods closer than the reopen window form one work item (a reopen), farther
   apart they become separate items; a Closed item keeps what it had when it was closed;
4. each work item's state, severity, priority, flapping and history follow from its periods.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared import table_keys
from shared.alert_events import (
    ALERT,
    CLOSE,
    FIRED,
    LEVEL_KINDS,
    OPEN,
    RESOLVED,
    SERVICE_HEALTH,
    Ci,
    Event,
    GroupKey,
    iso,
)

MINUTE = 60_000_000  # µs

NEW = "New"
ACKNOWLEDGED = "Acknowledged"
IN_PROGRESS = "InProgress"
STATE_RESOLVED = "Resolved"
CLOSED = "Closed"
STATES = (NEW, ACKNOWLEDGED, IN_PROGRESS, STATE_RESOLVED, CLOSED)
OPEN_STATES = (NEW, ACKNOWLEDGED, IN_PROGRESS)

# What a person may do from each state (the work item API; 409 otherwise). New reopens.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    NEW: (ACKNOWLEDGED, IN_PROGRESS, "Resolved", "Closed"),
    ACKNOWLEDGED: (IN_PROGRESS, "Resolved", "Closed"),
    IN_PROGRESS: ("Resolved", "Closed"),
    "Resolved": ("Closed", NEW),
    "Closed": (NEW,),
}

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


@dataclass(frozen=True)
class Policy:
    correlation_mode: str = ALERT
    reopen_window: int = 60 * MINUTE
    flap_threshold: int = 4
    flap_window: int = 60 * MINUTE

    @classmethod
    def of_minutes(
        cls, correlation_mode: str, reopen: int, flap_threshold: int, flap_window: int
    ) -> Policy:
        return cls(correlation_mode, reopen * MINUTE, flap_threshold, flap_window * MINUTE)

    def fingerprint(self) -> str:
        """What `derive` depends on: rows derived under another policy must be rebuilt."""
        return f"reopen={self.reopen_window};flap={self.flap_threshold}/{self.flap_window}"


# -- the group state (stored in the group root) -----------------------------------------


@dataclass(frozen=True)
class Record:
    """One event as the group root keeps it: what the lifecycle needs, nothing more."""

    id: str
    alert_id: str
    condition: str
    signal: str
    time: int
    implicit_time: bool
    fired_at: int | None
    severity: int | None
    priority_override: int | None
    assignment_group: str | None
    marker: str | None
    rules: tuple[str, ...] = ()  # hashes of the alert rule's id and name (index filters)

    @classmethod
    def of(cls, event: Event) -> Record:
        return cls(
            event.id,
            event.alert_id,
            event.condition,
            event.signal,
            event.time,
            event.implicit_time,
            event.fired_at,
            event.severity,
            event.priority_override,
            event.assignment_group,
            event.marker,
            event.rules,
        )


@dataclass(frozen=True)
class CiSeen:
    """A CI of the group: the spelling kept (the smallest) and the minutes it was seen."""

    key: str
    display: str
    data: Mapping[str, Any]
    first: int | None
    last: int | None


@dataclass(frozen=True)
class Overlay:
    """A person's change (the work item API): survives alert events as the rules say.

    One overlay is one request: a state change and/or an assignment, a priority, a note,
    applied together. Empty `state` changes no state; None leaves a field as it is, ""
    (assignee, assignment group) or 0 (priority) goes back to what the alerts say.
    """

    id: str
    anchor: str  # the item's first segment when it was set: follows the item through renames
    item_id: str  # the item's id when it was set (kept by a Closed item for good)
    state: str
    at: int
    by: str  # who, for people: upn / preferred_username, or "app <app id>"
    note: str
    by_type: str = ""  # "user" or "application"
    by_oid: str = ""  # object id of the user or service principal
    by_app: str = ""  # the client app the change came through
    assignee: str | None = None
    assignment_group: str | None = None
    priority: int | None = None


@dataclass(frozen=True)
class GroupState:
    group: GroupKey
    events: tuple[Record, ...] = ()  # sorted by id
    cis: tuple[CiSeen, ...] = ()  # sorted by key
    overlays: tuple[Overlay, ...] = ()  # sorted by (at, id)
    # Compaction (see `compact`): items whose events were dropped from the state, and the
    # latest time among those events. Their rows stay as they are, for good.
    archived: tuple[str, ...] = ()
    horizon: int | None = None

    def record(self, event_id: str) -> Record | None:
        for r in self.events:
            if r.id == event_id:
                return r
        return None

    def ci(self, key: str) -> CiSeen | None:
        for c in self.cis:
            if c.key == key:
                return c
        return None


def minute(micros: int | None) -> int | None:
    return None if micros is None else micros - micros % MINUTE


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def merge_ci(seen: CiSeen | None, ci: Ci, at: int | None) -> CiSeen:
    """Grow a CI's record: earliest and latest minute seen, smallest spelling kept.

    Min, max and min again: commutative and idempotent, so the CMDB entity (merged the
    same way) ends the same whatever order the events came in.
    """
    m = minute(at)
    if seen is None:
        return CiSeen(ci.key, ci.display, dict(ci.data), m, m)
    display, data = (
        (ci.display, ci.data) if ci.display < seen.display else (seen.display, seen.data)
    )
    return CiSeen(seen.key, display, data, _min(seen.first, m), _max(seen.last, m))


def ci_covered(seen: CiSeen | None, ci: Ci, at: int | None) -> bool:
    """True when merging `ci` seen at `at` into `seen` would change nothing.

    Everything merged is monotone, so an older copy of a record that covers an event
    proves the current record covers it too: the store skips CMDB writes on that basis.
    """
    if seen is None or ci.display < seen.display:
        return False
    m = minute(at)
    if m is None:
        return True
    return seen.first is not None and seen.last is not None and seen.first <= m <= seen.last


def before_horizon(state: GroupState, event: Event) -> bool:
    """An unknown event no later than the archived items: too late to change anything."""
    return state.horizon is not None and event.time <= state.horizon


def merge(state: GroupState, event: Event) -> GroupState | None:
    """The state with `event` added, or None when the event adds nothing (a duplicate).

    Events no later than the compaction horizon are not added either (see `compact`).
    """
    known = state.record(event.id)
    if known is None and before_horizon(state, event):
        return None
    if known is not None:
        # Only a receive-time fallback can improve: the earliest copy wins (a min).
        if not (event.implicit_time and event.time < known.time):
            return None
        events = tuple(replace(r, time=event.time) if r.id == event.id else r for r in state.events)
        return replace(state, events=events)
    events = tuple(sorted((*state.events, Record.of(event)), key=lambda r: r.id))
    cis = {c.key: c for c in state.cis}
    for ci in event.cis:
        cis[ci.key] = merge_ci(cis.get(ci.key), ci, event.seen_time)
    return replace(state, events=events, cis=tuple(cis[k] for k in sorted(cis)))


MAX_GROUP_EVENTS = 1500  # keeps the root's JSON well under the 1 MiB entity limit


def compact(state: GroupState, policy: Policy, limit: int | None = None) -> GroupState:
    """Drop the oldest finished items' events once a group holds more than `limit` events.

    Long-lived rule-mode groups (a rule that fires for months) would outgrow the root
    entity. Their oldest items that are Resolved or Closed, never the newest, are archived:
    their rows stay as they are, their events leave the state, and later events no later
    than the newest archived event are ignored (their item is finished and archived). Only
    then can arrival order matter: for an event that arrives after thousands of younger ones.
    """
    limit = MAX_GROUP_EVENTS if limit is None else limit
    if len(state.events) <= limit:
        return state
    items = sorted(derive(state, policy).items.values(), key=lambda i: (i.fired_at, i.id))
    dropped: set[str] = set()
    archived = list(state.archived)
    horizon = state.horizon
    for item in items[:-1]:
        if len(state.events) - len(dropped) <= limit * 3 // 4:
            break
        if item.state not in (STATE_RESOLVED, CLOSED):
            break  # keep everything from the first unfinished item on
        dropped.update(item.events)
        archived.append(item.id)
        horizon = item.last_event_at if horizon is None else max(horizon, item.last_event_at)
    if not dropped:
        return state
    return replace(
        state,
        events=tuple(r for r in state.events if r.id not in dropped),
        overlays=tuple(o for o in state.overlays if o.item_id not in archived),
        archived=tuple(sorted(archived)),
        horizon=horizon,
    )


def with_overlay(state: GroupState, overlay: Overlay) -> GroupState:
    overlays = sorted((*state.overlays, overlay), key=lambda o: (o.at, o.id))
    return replace(state, overlays=tuple(overlays))


# -- derivation -------------------------------------------------------------------------


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


@dataclass
class _Segment:
    """An alert instance's open interval, or one open spell of a tracked status."""

    id: str  # its opening event's id
    start: int
    end: int | None
    start_event: str
    end_event: str | None
    events: list[Record] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)


@dataclass
class _Period:
    start: int
    end: int | None
    start_event: str
    end_event: str | None
    segments: list[_Segment]


def _alert_segments(records: Iterable[Record]) -> list[_Segment]:
    by_alert: dict[str, list[Record]] = {}
    for r in records:
        by_alert.setdefault(r.alert_id.lower(), []).append(r)
    segments = []
    for evs in by_alert.values():
        fires = [r for r in evs if r.condition == FIRED]
        resolves = [r for r in evs if r.condition == RESOLVED]
        opens = sorted(
            [(r.time, 0, r.id) for r in fires]
            + [(r.fired_at, 1, r.id) for r in resolves if r.fired_at is not None]
        )
        if opens:
            start, _, start_id = opens[0]
        else:
            start, start_id = min((r.time, r.id) for r in resolves)
        end: int | None = None
        end_id: str | None = None
        if resolves:
            last = min(resolves, key=lambda r: (-r.time, r.id))
            end, end_id = max(last.time, start), last.id
        # Named by its alert instance, not by its first event: a late Fired of the same
        # instance must not rename it (rule-mode item ids and people's changes hang on it).
        seg_id = "A" + table_keys.digest(evs[0].alert_id.lower(), table_keys.EVENT_CHARS - 1)
        seg = _Segment(seg_id, start, end, start_id, end_id, list(evs))
        for r in fires:
            if r.id == start_id:
                seg.notes[r.id] = "alert fired"
            elif end is not None and r.time > end:
                seg.notes[r.id] = "fired after this alert resolved: ignored (Resolved wins)"
                seg.ignored.add(r.id)
            else:
                seg.notes[r.id] = "alert fired again while open: no change"
        for r in resolves:
            if r.id == end_id:
                implied = " (it fired at its firedAt)" if r.id == start_id else ""
                seg.notes[r.id] = f"alert resolved{implied}"
            else:
                seg.notes[r.id] = "an earlier Resolved of this alert: no change"
        segments.append(seg)
    return segments


def _level_segments(records: Iterable[Record]) -> list[_Segment]:
    """Service/Resource Health: the status in force is the latest event's (close wins ties)."""
    order = sorted(records, key=lambda r: (r.time, 0 if r.signal == OPEN else 1, r.id))
    segments: list[_Segment] = []
    for r in order:
        cur = segments[-1] if segments else None
        what = f"status {r.marker}" if r.marker else r.condition
        if r.signal == OPEN:
            if cur is None or cur.end is not None:
                segments.append(_Segment(r.id, r.time, None, r.id, None, [r], {r.id: what}))
            else:
                cur.events.append(r)
                cur.notes[r.id] = f"{what}: still active, no change"
        elif cur is None:
            seg = _Segment(r.id, r.time, r.time, r.id, r.id, [r], {r.id: f"{what}: resolved"})
            segments.append(seg)
        elif cur.end is None:
            cur.end, cur.end_event = r.time, r.id
            cur.events.append(r)
            cur.notes[r.id] = f"{what}: resolved"
        else:
            cur.events.append(r)
            cur.notes[r.id] = f"{what}: already resolved, no change"
    return segments


def _periods(segments: Iterable[_Segment]) -> list[_Period]:
    periods: list[_Period] = []
    for s in sorted(segments, key=lambda s: (s.start, s.id)):
        cur = periods[-1] if periods else None
        if cur is not None and (cur.end is None or s.start <= cur.end):
            cur.segments.append(s)
            if cur.end is not None:
                if s.end is None:
                    cur.end, cur.end_event = None, None
                elif (s.end, _neg(s.end_event)) > (cur.end, _neg(cur.end_event)):
                    cur.end, cur.end_event = s.end, s.end_event
        else:
            periods.append(_Period(s.start, s.end, s.start_event, s.end_event, [s]))
    return periods


def _neg(event_id: str | None) -> tuple[int, ...]:
    """Sort key that prefers the smaller id on equal times (max over (time, _neg(id)))."""
    return tuple(-ord(c) for c in event_id or "")


def _episodes(periods: list[_Period], window: int | None) -> list[list[_Period]]:
    episodes: list[list[_Period]] = []
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


def _segment_ids(episode: list[_Period]) -> set[str]:
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
    """Every work item of the group and every history entry, from the set of events."""
    kind = state.group.kind
    segments = (_level_segments if kind in LEVEL_KINDS else _alert_segments)(state.events)
    window = _window(kind, policy)

    # A Closed item keeps the segments it had when it was first closed (and their late
    # events); anything that starts after that goes to other items: it never reopens by an
    # alert. A person may reopen it; the items opened meanwhile stay apart.
    remaining = segments
    closed: list[tuple[Overlay, list[_Segment]]] = []
    owned_ids: set[str] = set()
    for o in sorted(state.overlays, key=lambda o: (o.at, o.id)):
        if o.state != CLOSED or o.anchor in owned_ids:
            continue
        episodes = _episodes(_periods(remaining), window)
        owner = next((e for e in episodes if o.anchor in _segment_ids(e)), None)
        if owner is None:
            # A status spell is named by its first event, which a late event can change:
            # then the close applies to the latest episode that began before it.
            earlier = [e for e in episodes if e[0].start <= o.at]
            if kind not in LEVEL_KINDS or not earlier:
                continue
            owner = earlier[-1]
        owned = [s for p in owner for s in p.segments if s.start <= o.at or s.id == o.anchor]
        taken = {s.id for s in owned}
        owned_ids |= taken
        remaining = [s for s in remaining if s.id not in taken]
        closed.append((o, owned))

    items: dict[str, ItemView] = {}
    history: dict[str, HistoryView] = {}
    all_ids = {seg.id for seg in segments}
    used = {o.item_id for o, _ in closed} | set(state.archived)  # ids are never reused
    for o, owned in closed:
        mine = _owned_overlays(state.overlays, {s.id for s in owned}, o.item_id, all_ids)
        mine = mine if o in mine else sorted([*mine, o], key=lambda x: (x.at, x.id))
        _build(o.item_id, _periods(owned), policy, o, mine, items, history)
    for episode in _episodes(_periods(remaining), window):
        first = episode[0].segments[0].id
        if (
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
        mine = _owned_overlays(state.overlays, _segment_ids(episode), item_id, all_ids)
        _build(item_id, episode, policy, None, mine, items, history)

    owners = {r: i.id for i in items.values() for r in i.segments}
    for o in state.overlays:
        target = owners.get(o.anchor) or (o.item_id if o.item_id in items else None)
        history[o.id] = HistoryView(o.id, target, MANUAL, overlay_changes(o), o.at, False, actor=o)
    return Derived(items, history, state.cis, state.archived)


def priority(severity: int | None, override: int | None) -> int:
    """Sev0..Sev4 -> 1..5 unless the rule's `itsm.priority` says otherwise."""
    if override is not None:
        return override
    return DEFAULT_PRIORITY if severity is None else SEVERITY_PRIORITY[severity]


def _flapping(
    periods: list[_Period], policy: Policy
) -> tuple[bool, int | None, dict[str, list[str]]]:
    """Flag at the threshold-th cycle start within the window; clear after a quiet window."""
    window, threshold = policy.flap_window, policy.flap_threshold
    transitions: list[tuple[int, int, str]] = []
    for p in periods:
        transitions.append((p.start, 0, p.start_event))
        if p.end is not None and p.end_event is not None:
            transitions.append((p.end, 1, p.end_event))
    transitions.sort()
    flapping = False
    notes: dict[str, list[str]] = {}
    starts: list[int] = []
    prev: int | None = None
    for t, kind, event in transitions:
        if flapping and prev is not None and t - prev >= window:
            flapping = False
            notes.setdefault(event, []).append(
                f"flapping cleared (quiet for {window // MINUTE} min)"
            )
        if kind == 0:
            starts.append(t)
            recent = sum(1 for s in starts if s > t - window)
            if not flapping and recent >= threshold:
                flapping = True
                notes.setdefault(event, []).append(
                    f"flapping: {recent} cycles within {window // MINUTE} min"
                )
        prev = t
    until = transitions[-1][0] + window if flapping else None
    return flapping, until, notes


def _decisive_change(changes: list[Overlay], last: _Period) -> Overlay | None:
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
    periods: list[_Period],
    policy: Policy,
    closure: Overlay | None,
    mine: list[Overlay],
    items: dict[str, ItemView],
    history: dict[str, HistoryView],
) -> None:
    segments = [s for p in periods for s in p.segments]
    records = sorted(
        (r for s in segments for r in s.events), key=lambda r: (r.time, r.condition, r.id)
    )
    ignored = {i for s in segments for i in s.ignored}
    applied = [r for r in records if r.id not in ignored] or records
    facts = max(applied, key=lambda r: (r.time, r.condition == RESOLVED, r.id))
    severities = [r.severity for r in applied if r.severity is not None]
    severity = min(severities) if severities else None
    last = periods[-1]

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
    flapping, flapping_until, flap_notes = _flapping(periods, policy)

    first_seen: dict[str, int] = {}
    for s in sorted(segments, key=lambda s: (s.start, s.id)):
        for r in s.events:
            first_seen.setdefault(r.alert_id, s.start)
    alert_ids = tuple(sorted(first_seen, key=lambda a: (first_seen[a], a)))

    view = ItemView(
        id=item_id,
        anchor=periods[0].segments[0].id,
        state=state,
        resolution=resolution,
        fired_at=periods[0].start,
        resolved_at=resolved_at if state in (STATE_RESOLVED, CLOSED) else None,
        last_event_at=max(r.time for r in applied),
        occurrences=len(alert_ids),
        cycles=len(periods),
        reopen_count=len(periods) - 1,
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
        rules=tuple(sorted({h for r in records for h in r.rules})),
    )
    items[item_id] = view

    effects: dict[str, set[str]] = {}
    changes: dict[str, list[str]] = {}
    for n, p in enumerate(periods):
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


# -- serialization of the group state ---------------------------------------------------


def state_to_json(state: GroupState) -> str:
    """Canonical JSON (sorted, compact, ASCII): equal states give equal text."""
    doc = {
        "v": 1,
        "group": [state.group.kind, state.group.key],
        "events": [
            [
                r.id,
                r.alert_id,
                r.condition,
                r.signal,
                r.time,
                int(r.implicit_time),
                r.fired_at,
                r.severity,
                r.priority_override,
                r.assignment_group,
                r.marker,
                *([list(r.rules)] if r.rules else []),
            ]
            for r in state.events
        ],
        "cis": [[c.key, c.display, dict(c.data), c.first, c.last] for c in state.cis],
        "overlays": [_overlay_json(o) for o in state.overlays],
        "archived": list(state.archived),
        "horizon": state.horizon,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _overlay_json(o: Overlay) -> list[Any]:
    """An overlay as a JSON array: the first seven fields always, the rest when used."""
    base: list[Any] = [o.id, o.anchor, o.item_id, o.state, o.at, o.by, o.note]
    extra = [o.by_type, o.by_oid, o.by_app, o.assignee, o.assignment_group, o.priority]
    if not any(extra[:3]) and all(v is None for v in extra[3:]):
        return base
    return base + extra


def _overlay_of(doc: list[Any]) -> Overlay:
    fields = list(doc) + [""] * (10 - len(doc)) + [None] * (13 - max(len(doc), 10))
    return Overlay(*fields[:13])


def state_from_json(text: str) -> GroupState:
    doc = json.loads(text)
    if doc.get("v") != 1:
        raise ValueError(f"unknown group state version {doc.get('v')!r}")
    group = GroupKey.of(doc["group"][0], doc["group"][1])
    events = tuple(
        Record(
            e[0],
            e[1],
            e[2],
            e[3],
            e[4],
            bool(e[5]),
            e[6],
            e[7],
            e[8],
            e[9],
            e[10],
            tuple(e[11]) if len(e) > 11 else (),
        )
        for e in doc["events"]
    )
    cis = tuple(CiSeen(c[0], c[1], c[2], c[3], c[4]) for c in doc["cis"])
    overlays = tuple(_overlay_of(o) for o in doc["overlays"])
    archived = tuple(doc.get("archived", ()))
    return GroupState(group, events, cis, overlays, archived, doc.get("horizon"))


__all__ = [
    "ACKNOWLEDGED",
    "CLOSE",
    "CLOSED",
    "IN_PROGRESS",
    "NEW",
    "OPEN",
    "OPEN_STATES",
    "STATES",
    "STATE_RESOLVED",
    "TRANSITIONS",
    "CiSeen",
    "Derived",
    "GroupState",
    "HistoryView",
    "ItemView",
    "Overlay",
    "Policy",
    "Record",
    "before_horizon",
    "ci_covered",
    "compact",
    "derive",
    "merge",
    "merge_ci",
    "state_from_json",
    "state_to_json",
    "with_overlay",
]
