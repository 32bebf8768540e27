"""Folds: how a long-lived group's state stays the same size (a window and a horizon).

Once the window holds FOLD_AT events, its old events fold into the live item's `Carry`
(docs/data-model.md, "Bounded state: the window and the horizon"); open alert instances
beyond MAX_CARRIED_OPEN are hidden in rows of their own. `derive` of the folded state gives
the same rows as `derive` of every event.
"""

from __future__ import annotations

from dataclasses import replace

from shared import table_keys
from shared.alert_events import CLOSE, FIRED, LEVEL_KINDS, OPEN, RESOLVED, Event
from shared.workitem_derive import ItemView, derive
from shared.workitem_periods import (
    alert_segments,
    flap_replay,
    level_segments,
    neg_id,
    periods_of,
)
from shared.workitem_state import (
    CLOSED,
    MINUTE,
    OPEN_MARK,
    Carry,
    GroupState,
    Policy,
    Record,
)

# Folding bounds (docs/data-model.md, "Bounded state: the window and the horizon").
LATENESS = 30 * MINUTE  # the horizon: how far behind the group's newest event may arrive
FOLD_AT = 24  # window events that trigger a fold (a group below it is never folded)
WINDOW_CAP = 96  # most window events, whatever their times (a storm keeps the newest half)
MAX_FOLD = 48  # events one fold takes: its bookkeeping rows share the root's transaction
MAX_CARRIED_OPEN = 16  # open alert instances a fold keeps by name; more become one record
MAX_ARCHIVED = 16  # archived item ids the state remembers (ids are never reused)


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
    segments = (level_segments if kind in LEVEL_KINDS else alert_segments)(prefix.events)
    mine = [s for s in segments if s.id in live.segments]
    periods = periods_of(mine)
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
            end_seg = max(closed, key=lambda s: (s.end or 0, neg_id(s.end_event)))
            end = next(r for r in end_seg.events if r.id == end_seg.end_event)
            records.append(
                _synthetic(end, "~closed", end_seg.end or end.time, last.start, RESOLVED)
            )
    init = prefix.carry if live.id == _carry_item(prefix) else None
    replayed, flapping, prev = flap_replay(periods[:-1], policy, init)
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
