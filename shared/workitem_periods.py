"""The replay's first steps: segments, the periods they merge into, and flapping.

Steps 1 and 2 of `derive` (shared/workitems.py says the whole replay): each alert instance
(or status spell) is a segment; overlapping segments merge into periods. The flapping replay
runs over the periods' open/close transitions. A fold (shared/workitem_folds.py) uses the
same pieces to keep the live item's last period as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared import table_keys
from shared.alert_events import FIRED, OPEN, RESOLVED
from shared.workitem_state import MINUTE, Carry, Policy, Record


@dataclass
class Segment:
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
class Period:
    start: int
    end: int | None
    start_event: str
    end_event: str | None
    segments: list[Segment]


def alert_segments(records: Iterable[Record]) -> list[Segment]:
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
        seg = Segment(seg_id, start, end, start_id, end_id, list(evs))
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


def level_segments(records: Iterable[Record]) -> list[Segment]:
    """Service/Resource Health: the status in force is the latest event's (close wins ties)."""
    order = sorted(records, key=lambda r: (r.time, 0 if r.signal == OPEN else 1, r.id))
    segments: list[Segment] = []
    for r in order:
        cur = segments[-1] if segments else None
        what = f"status {r.marker}" if r.marker else r.condition
        if r.signal == OPEN:
            if cur is None or cur.end is not None:
                segments.append(Segment(r.id, r.time, None, r.id, None, [r], {r.id: what}))
            else:
                cur.events.append(r)
                cur.notes[r.id] = f"{what}: still active, no change"
        elif cur is None:
            seg = Segment(r.id, r.time, r.time, r.id, r.id, [r], {r.id: f"{what}: resolved"})
            segments.append(seg)
        elif cur.end is None:
            cur.end, cur.end_event = r.time, r.id
            cur.events.append(r)
            cur.notes[r.id] = f"{what}: resolved"
        else:
            cur.events.append(r)
            cur.notes[r.id] = f"{what}: already resolved, no change"
    return segments


def periods_of(segments: Iterable[Segment]) -> list[Period]:
    periods: list[Period] = []
    for s in sorted(segments, key=lambda s: (s.start, s.id)):
        cur = periods[-1] if periods else None
        if cur is not None and (cur.end is None or s.start <= cur.end):
            cur.segments.append(s)
            if cur.end is not None:
                if s.end is None:
                    cur.end, cur.end_event = None, None
                elif (s.end, neg_id(s.end_event)) > (cur.end, neg_id(cur.end_event)):
                    cur.end, cur.end_event = s.end, s.end_event
        else:
            periods.append(Period(s.start, s.end, s.start_event, s.end_event, [s]))
    return periods


def neg_id(event_id: str | None) -> tuple[int, ...]:
    """Sort key that prefers the smaller id on equal times (max over (time, neg_id(id)))."""
    return tuple(-ord(c) for c in event_id or "")


def _transitions(periods: list[Period]) -> list[tuple[int, int, str]]:
    transitions: list[tuple[int, int, str]] = []
    for p in periods:
        transitions.append((p.start, 0, p.start_event))
        if p.end is not None and p.end_event is not None:
            transitions.append((p.end, 1, p.end_event))
    return sorted(transitions)


def flap_replay(
    periods: list[Period],
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
