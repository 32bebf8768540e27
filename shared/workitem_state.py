"""The group state: what a group's root keeps, and how an event or a person's change joins it.

The state is a grow-only set of events (`Record`s, bounded by folds: shared/workitem_folds.py),
the group's CIs, people's changes (`Overlay`s) and the live item's `Carry`. `merge` adds an
event idempotently and commutatively; `with_overlay` adds a person's change. The work item
states and the `Policy` (reopen window, flapping) that `derive` reads live here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared.alert_events import ALERT, Ci, Event, GroupKey

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


# Bounds of what the state keeps (docs/data-model.md, "Bounded state: the window and the
# horizon"); the folding bounds are in shared/workitem_folds.py.
MAX_OVERLAYS = 32  # people's changes the state keeps (their history rows keep them all)
ROOT_NOTE = 200  # escaped characters of a note kept in the state (its history has it all)
# The record that keeps the live period open while hidden alert instances are (see `fold`).
OPEN_MARK = "~open"


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
