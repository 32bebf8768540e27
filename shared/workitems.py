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
    # A record kept (or summarized) by a fold for the live item's last period: it shapes the
    # replay but has no history entry of its own any more and is counted in the carry.
    carried: bool = False

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
class Carry:
    """What the folded events of the group's live item leave behind (see `fold`).

    Everything `derive` needs from them to go on exactly as if they were still there: the
    item's identity, counters, the aggregates of its events, and the flapping state as of
    the start of its last period (whose shape the carried records keep).
    """

    item_id: str
    anchor: str
    fired_at: int
    cycles_before: int  # periods of the item before its last (carried) one
    alert_ids: tuple[str, ...]  # its first alert instances (at most MAX_ALERT_IDS)
    alert_count: int  # alert instances counted so far
    known: tuple[str, ...]  # alert ids of the carried records: counted already
    severity: int | None
    rules: tuple[str, ...]
    last_event_at: int
    facts: Record | None  # the latest applied folded event
    flap_starts: tuple[int, ...]  # recent period starts before the last period
    flapping: bool
    flap_prev: int | None
    hidden: int = 0  # open alert instances kept in rows of their own (see `fold`)


@dataclass(frozen=True)
class GroupState:
    group: GroupKey
    events: tuple[Record, ...] = ()  # sorted by id: the window (and the carried records)
    cis: tuple[CiSeen, ...] = ()  # sorted by key
    overlays: tuple[Overlay, ...] = ()  # sorted by (at, id), at most MAX_OVERLAYS
    # Folding (see `fold`): the latest items archived (their rows stay as they are, for
    # good; older ids are forgotten), the latest folded event time, the live item's carry,
    # and how many distinct events the group has seen.
    archived: tuple[str, ...] = ()
    horizon: int | None = None
    carry: Carry | None = None
    seen: int = 0

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
    """An unknown event no later than the latest folded one: too late to change anything."""
    return (
        state.horizon is not None and event.time <= state.horizon and state.record(event.id) is None
    )


def merge(state: GroupState, event: Event, revived: Record | None = None) -> GroupState | None:
    """The state with `event` added, or None when the event adds nothing (a duplicate).

    Events no later than the horizon are not added either (see `fold`): the store tells a
    duplicate of a folded event (its history row exists) from one that came too late.
    """
    known = state.record(event.id)
    if known is not None and known.carried:
        return None
    if known is None and before_horizon(state, event):
        return None
    if known is not None:
        # Only a receive-time fallback can improve: the earliest copy wins (a min).
        if not (event.implicit_time and event.time < known.time):
            return None
        events = tuple(replace(r, time=event.time) if r.id == event.id else r for r in state.events)
        return replace(state, events=events)
    if revived is not None and state.carry is not None and state.carry.hidden > 0:
        state = _revive(state, revived)
    events = tuple(sorted((*state.events, Record.of(event)), key=lambda r: r.id))
    cis = {c.key: c for c in state.cis}
    for ci in event.cis:
        cis[ci.key] = merge_ci(cis.get(ci.key), ci, event.seen_time)
    return replace(
        state, events=events, cis=tuple(cis[k] for k in sorted(cis)), seen=state.seen + 1
    )


def _revive(state: GroupState, record: Record) -> GroupState:
    """A hidden open alert instance back in the window (its row is deleted by the commit)."""
    carry = state.carry
    assert carry is not None
    hidden = carry.hidden - 1
    events = [r for r in state.events if hidden > 0 or r.id != OPEN_MARK]
    events.append(replace(record, carried=True))
    known = tuple(sorted({*carry.known, record.alert_id}))
    return replace(
        state,
        events=tuple(sorted(events, key=lambda r: r.id)),
        carry=replace(carry, hidden=hidden, known=known),
    )


# Folding bounds (docs/data-model.md, "Bounded state: the window and the horizon").
LATENESS = 30 * MINUTE  # the horizon: how far behind the group's newest event may arrive
FOLD_AT = 24  # window events that trigger a fold (a group below it is never folded)
WINDOW_CAP = 96  # most window events, whatever their times (a storm keeps the newest half)
MAX_FOLD = 48  # events one fold takes: its bookkeeping rows share the root's transaction
MAX_ALERT_IDS = 10  # alert ids an item lists (alertCount says how many it has)
MAX_CARRIED_OPEN = 16  # open alert instances a fold keeps by name; more become one record
MAX_OVERLAYS = 32  # people's changes the state keeps (their history rows keep them all)
MAX_ARCHIVED = 16  # archived item ids the state remembers (ids are never reused)
ROOT_NOTE = 200  # escaped characters of a note kept in the state (its history has it all)


def fold(state: GroupState, policy: Policy) -> GroupState:
    """`folding` without the hidden instances (pure callers that keep everything)."""
    return folding(state, policy)[0]


def folding(state: GroupState, policy: Policy) -> tuple[GroupState, tuple[Record, ...]]:
    """Fold the window's old events into the live item's carry once it holds FOLD_AT.

    Events older than the newest by more than LATENESS leave the window (and more, oldest
    first, when a storm leaves over WINDOW_CAP). What they did stays: items that ended
    before are archived (their rows frozen as they are), and the item that can still
    change, the live one, keeps a bounded `Carry` plus the records that shape its last
    period. `derive` of the result gives the same rows as `derive` of everything, for any
    later event no older than the horizon (the latest folded time); an event at or before
    it is a duplicate (its history row exists) or too late (recorded, not applied).
    """
    real = sorted((r for r in state.events if not r.carried), key=lambda r: (r.time, r.id))
    if len(real) <= FOLD_AT:
        return state, ()
    cut = real[-1].time - LATENESS
    if len(real) - sum(1 for r in real if r.time <= cut) > WINDOW_CAP:
        cut = real[len(real) - WINDOW_CAP // 2 - 1].time
    folded = [r for r in real if r.time <= cut][:MAX_FOLD]
    if not folded:
        return state, ()
    cut = folded[-1].time
    folded = [r for r in real if r.time <= cut]  # equal times fold together
    gone = {r.id for r in folded}
    kept = tuple(r for r in state.events if r.id not in gone and not r.carried)
    prefix = replace(state, events=tuple(r for r in state.events if r.carried or r.id in gone))
    derived = derive(prefix, policy)
    items = sorted(derived.items.values(), key=lambda i: (i.fired_at, i.id))
    live = items[-1] if items and items[-1].state != CLOSED else None
    archived = [i.id for i in items if live is None or i.id != live.id]
    busy = {r.alert_id.lower() for r in kept}
    carry, carried, hidden = (None, (), ()) if live is None else _carry(prefix, policy, live, busy)
    owned = _segment_ids_of(live) if live is not None else set()
    overlays = tuple(o for o in state.overlays if o.item_id not in archived or o.anchor in owned)
    folded_state = replace(
        state,
        events=tuple(sorted((*carried, *kept), key=lambda r: r.id)),
        overlays=overlays,
        archived=_remember(state.archived, archived),
        horizon=cut if state.horizon is None else max(state.horizon, cut),
        carry=carry,
    )
    return folded_state, hidden


def _remember(old: tuple[str, ...], new: list[str]) -> tuple[str, ...]:
    """Archived ids, latest last: this fold's all, older ones up to MAX_ARCHIVED in all."""
    fresh = [i for i in new if i not in old]
    return (*old, *fresh)[-max(MAX_ARCHIVED, len(fresh)) :]


def _segment_ids_of(view: ItemView) -> set[str]:
    return {*view.segments, view.anchor}


def _carry(
    prefix: GroupState, policy: Policy, live: ItemView, busy: set[str]
) -> tuple[Carry, tuple[Record, ...], tuple[Record, ...]]:
    """The live item's carry, the records that keep its last period's shape, and the open
    alert instances beyond MAX_CARRIED_OPEN (their first Fired), which go to rows of their
    own: one record, `~open`, keeps the period open while any of them is."""
    kind = prefix.group.kind
    segments = (_level_segments if kind in LEVEL_KINDS else _alert_segments)(prefix.events)
    mine = [s for s in segments if s.id in live.segments]
    periods = _periods(mine)
    last = periods[-1]
    records: list[Record] = []
    hidden: list[Record] = []
    already = 0
    if prefix.carry is not None and live.id == prefix.carry.item_id:
        already = prefix.carry.hidden
    if kind in LEVEL_KINDS:
        for seg in last.segments[-MAX_CARRIED_OPEN:]:
            ends = [r for r in seg.events if r.id in (seg.start_event, seg.end_event)]
            records.extend(replace(r, carried=True) for r in ends)
    else:
        open_segs = sorted(
            (s for s in last.segments if s.end is None and s.start_event != OPEN_MARK),
            key=lambda s: (s.start, s.id),
        )
        # Instances with events still in the window stay named (their events are there).
        named = [s for s in open_segs if s.events[0].alert_id.lower() in busy]
        free = [s for s in open_segs if s.events[0].alert_id.lower() not in busy]
        room = max(0, MAX_CARRIED_OPEN - len(named))
        named += free[len(free) - room :] if room else []
        rest = free[: len(free) - room]
        for seg in named:
            start = next(r for r in seg.events if r.id == seg.start_event)
            records.append(replace(start, carried=True))
        for seg in rest:
            start = next(r for r in seg.events if r.id == seg.start_event)
            hidden.append(replace(start, carried=True))
        if rest or already:  # one record keeps the period open while any hidden one is
            records.append(_open_mark(last.start))
        closed = [s for s in last.segments if s.end is not None]
        if closed:  # their extent: one Resolved from the period's start to their latest end
            end_seg = max(closed, key=lambda s: (s.end or 0, _neg(s.end_event)))
            end = next(r for r in end_seg.events if r.id == end_seg.end_event)
            records.append(
                _synthetic(end, "~closed", end_seg.end or end.time, last.start, RESOLVED)
            )
    init = prefix.carry if live.id == _carry_item(prefix) else None
    replayed, flapping, prev = _flap_replay(periods[:-1], policy, init)
    recent = [t for t in replayed if t > last.start - policy.flap_window]
    starts = tuple(recent[-policy.flap_threshold :])
    facts = _find(prefix, live.facts_event)
    carry = Carry(
        item_id=live.id,
        anchor=live.anchor,
        fired_at=live.fired_at,
        cycles_before=live.cycles - 1,
        alert_ids=live.alert_ids,
        alert_count=live.occurrences,
        known=tuple(sorted({r.alert_id for r in records if not r.alert_id.startswith("~")})),
        severity=live.severity,
        rules=live.rules,
        last_event_at=live.last_event_at,
        facts=None if facts is None else replace(facts, carried=False),
        flap_starts=starts,
        flapping=flapping,
        flap_prev=prev,
        hidden=already + len(hidden),
    )
    return carry, tuple(records), tuple(hidden)


OPEN_MARK = "~open"


def _open_mark(start: int) -> Record:
    """Keeps the live period open from its start while hidden alert instances are open."""
    return Record(
        OPEN_MARK, OPEN_MARK, FIRED, OPEN, start, False, None, None, None, None, None, (), True
    )


def hidden_key(alert_id: str) -> str:
    """Names a hidden open alert instance's row (its alert id, case-insensitively)."""
    return table_keys.digest(alert_id.lower(), table_keys.EVENT_CHARS)


def needs_hidden(state: GroupState, event: Event) -> bool:
    """Whether `event` may belong to a hidden open alert instance: the store then reads its
    row (one point read) and hands the record to `merge`."""
    carry = state.carry
    if carry is None or carry.hidden <= 0 or event.group.kind in LEVEL_KINDS:
        return False
    # A hidden instance started at or before the horizon; an alert instance's firedAt never
    # changes, so only a Resolved that says it fired then can be one of them.
    if event.condition != RESOLVED:
        return False
    if event.fired_at is not None and state.horizon is not None and event.fired_at > state.horizon:
        return False
    lowered = event.alert_id.lower()
    if any(r.alert_id.lower() == lowered for r in state.events):
        return False
    return event.alert_id not in carry.known


def _carry_item(state: GroupState) -> str | None:
    return None if state.carry is None else state.carry.item_id


def _find(state: GroupState, event_id: str) -> Record | None:
    if state.carry is not None and state.carry.facts and state.carry.facts.id == event_id:
        return state.carry.facts
    return state.record(event_id)


def _synthetic(like: Record, tag: str, time: int, fired_at: int | None, condition: str) -> Record:
    """A record standing for several folded ones; its alert id is no alert's."""
    return Record(
        like.id,
        like.alert_id if like.alert_id.startswith("~") else f"{tag}|{like.alert_id}",
        condition,
        OPEN if condition == FIRED else CLOSE,
        time,
        False,
        fired_at,
        None,
        None,
        None,
        None,
        (),
        True,
    )


def with_overlay(state: GroupState, overlay: Overlay) -> GroupState:
    """Add a person's change; the oldest beyond MAX_OVERLAYS leave the state.

    A change that leaves hands its assignee, assignment group and priority to the next one
    of the same item that does not set them, so what the person set still holds; the first
    Close of each item stays (it decides which alert instances the closed item keeps).
    """
    kept = (*state.overlays, replace(overlay, note=_cut_note(overlay.note)))
    overlays = sorted(kept, key=lambda o: (o.at, o.id))
    while len(overlays) > MAX_OVERLAYS:
        first_close: dict[str, str] = {}
        for o in overlays:
            if o.state == CLOSED:
                first_close.setdefault(o.anchor, o.id)
        victim = next((o for o in overlays if first_close.get(o.anchor) != o.id), overlays[0])
        overlays.remove(victim)
        for n, o in enumerate(overlays):
            if o.anchor == victim.anchor and o.at >= victim.at:
                overlays[n] = replace(
                    o,
                    assignee=o.assignee if o.assignee is not None else victim.assignee,
                    assignment_group=(
                        o.assignment_group
                        if o.assignment_group is not None
                        else victim.assignment_group
                    ),
                    priority=o.priority if o.priority is not None else victim.priority,
                )
                break
    return replace(state, overlays=tuple(overlays))


def _cut_note(note: str) -> str:
    """The start of a note, at most ROOT_NOTE characters once escaped as the state's JSON."""
    size = 0
    for n, char in enumerate(note):
        size += len(json.dumps(char)) - 2
        if size > ROOT_NOTE - 6:
            return note[:n] + "\u2026"
    return note


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
    group: GroupKey | None = None  # whose items: the index rows live in its tenant's scope


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
    """Every work item of the group and every history entry, from the set of events.

    After a fold (`fold`), the set is the window plus the live item's carry: the items and
    entries of the window's events come out as they would from every event.
    """
    kind = state.group.kind
    segments = (_level_segments if kind in LEVEL_KINDS else _alert_segments)(state.events)
    window = _window(kind, policy)
    carry = state.carry
    carried = {s.id for s in segments if any(r.carried for r in s.events)}

    def ids(episode: list[_Period]) -> set[str]:
        found = _segment_ids(episode)
        if carry is not None and found & carried:
            found.add(carry.anchor)
        return found

    def carry_of(segs: Iterable[_Segment]) -> Carry | None:
        return carry if carry is not None and any(s.id in carried for s in segs) else None

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
        _build(o.item_id, _periods(owned), policy, o, mine, items, history, carry_of(owned))
    for episode in _episodes(_periods(remaining), window):
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


def _transitions(periods: list[_Period]) -> list[tuple[int, int, str]]:
    transitions: list[tuple[int, int, str]] = []
    for p in periods:
        transitions.append((p.start, 0, p.start_event))
        if p.end is not None and p.end_event is not None:
            transitions.append((p.end, 1, p.end_event))
    return sorted(transitions)


def _flap_replay(
    periods: list[_Period],
    policy: Policy,
    init: Carry | None,
    notes: dict[str, list[str]] | None = None,
) -> tuple[list[int], bool, int | None]:
    """Replay open/close transitions: (period starts, flapping, last transition time)."""
    window, threshold = policy.flap_window, policy.flap_threshold
    flapping = init.flapping if init is not None else False
    starts: list[int] = list(init.flap_starts) if init is not None else []
    prev: int | None = init.flap_prev if init is not None else None
    for t, kind, event in _transitions(periods):
        if flapping and prev is not None and t - prev >= window:
            flapping = False
            if notes is not None:
                notes.setdefault(event, []).append(
                    f"flapping cleared (quiet for {window // MINUTE} min)"
                )
        if kind == 0:
            starts.append(t)
            recent = sum(1 for s in starts if s > t - window)
            if not flapping and recent >= threshold:
                flapping = True
                if notes is not None:
                    notes.setdefault(event, []).append(
                        f"flapping: {recent} cycles within {window // MINUTE} min"
                    )
        prev = t
    return starts, flapping, prev


def _flapping(
    periods: list[_Period], policy: Policy, init: Carry | None = None
) -> tuple[bool, int | None, dict[str, list[str]]]:
    """Flag at the threshold-th cycle start within the window; clear after a quiet window."""
    notes: dict[str, list[str]] = {}
    _, flapping, prev = _flap_replay(periods, policy, init, notes)
    until = prev + policy.flap_window if flapping and prev is not None else None
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


# -- serialization of the group state ---------------------------------------------------


def record_json(r: Record) -> list[Any]:
    doc: list[Any] = [
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
    ]
    if r.rules or r.carried:
        doc.append(list(r.rules))
    if r.carried:
        doc.append(1)
    return doc


def record_of(e: list[Any]) -> Record:
    return Record(
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
        bool(e[12]) if len(e) > 12 else False,
    )


def carry_json(c: Carry | None) -> list[Any] | None:
    if c is None:
        return None
    return [
        c.item_id,
        c.anchor,
        c.fired_at,
        c.cycles_before,
        list(c.alert_ids),
        c.alert_count,
        list(c.known),
        c.severity,
        list(c.rules),
        c.last_event_at,
        None if c.facts is None else record_json(c.facts),
        list(c.flap_starts),
        int(c.flapping),
        c.flap_prev,
        c.hidden,
    ]


def carry_of(d: list[Any] | None) -> Carry | None:
    if d is None:
        return None
    return Carry(
        d[0],
        d[1],
        d[2],
        d[3],
        tuple(d[4]),
        d[5],
        tuple(d[6]),
        d[7],
        tuple(d[8]),
        d[9],
        None if d[10] is None else record_of(d[10]),
        tuple(d[11]),
        bool(d[12]),
        d[13],
        int(d[14]) if len(d) > 14 else 0,
    )


def state_to_json(state: GroupState) -> str:
    """Canonical JSON (sorted, compact, ASCII): equal states give equal text."""
    doc = {
        "v": 1,
        "group": [state.group.kind, state.group.key],
        "events": [record_json(r) for r in state.events],
        "cis": [[c.key, c.display, dict(c.data), c.first, c.last] for c in state.cis],
        "overlays": [overlay_json(o) for o in state.overlays],
        "archived": list(state.archived),
        "horizon": state.horizon,
        "carry": carry_json(state.carry),
        "seen": state.seen,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def overlay_json(o: Overlay) -> list[Any]:
    """An overlay as a JSON array: the first seven fields always, the rest when used."""
    base: list[Any] = [o.id, o.anchor, o.item_id, o.state, o.at, o.by, o.note]
    extra = [o.by_type, o.by_oid, o.by_app, o.assignee, o.assignment_group, o.priority]
    if not any(extra[:3]) and all(v is None for v in extra[3:]):
        return base
    return base + extra


def overlay_of(doc: list[Any]) -> Overlay:
    fields = list(doc) + [""] * (10 - len(doc)) + [None] * (13 - max(len(doc), 10))
    return Overlay(*fields[:13])


def state_from_json(text: str) -> GroupState:
    doc = json.loads(text)
    if doc.get("v") != 1:
        raise ValueError(f"unknown group state version {doc.get('v')!r}")
    group = GroupKey.of(doc["group"][0], doc["group"][1])
    events = tuple(record_of(e) for e in doc["events"])
    cis = tuple(CiSeen(c[0], c[1], c[2], c[3], c[4]) for c in doc["cis"])
    overlays = tuple(overlay_of(o) for o in doc["overlays"])
    archived = tuple(doc.get("archived", ()))
    return GroupState(
        group,
        events,
        cis,
        overlays,
        archived,
        doc.get("horizon"),
        carry_of(doc.get("carry")),
        int(doc.get("seen", len(events))),
    )


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
    "Carry",
    "CiSeen",
    "Derived",
    "GroupState",
    "HistoryView",
    "ItemView",
    "Overlay",
    "Policy",
    "Record",
    "before_horizon",
    "carry_json",
    "carry_of",
    "ci_covered",
    "derive",
    "fold",
    "folding",
    "hidden_key",
    "merge",
    "merge_ci",
    "needs_hidden",
    "overlay_json",
    "overlay_of",
    "record_json",
    "record_of",
    "state_from_json",
    "state_to_json",
    "with_overlay",
]
