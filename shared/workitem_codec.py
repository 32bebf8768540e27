"""The group state as JSON: the group root's text, canonical (equal states, equal text).

Records, overlays and the carry are compact JSON arrays; fields added later are optional at
the end, so a root written by an older version still reads.
"""

from __future__ import annotations

import json
from typing import Any

from shared.alert_events import GroupKey
from shared.workitem_state import Carry, CiSeen, GroupState, Overlay, Record


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
