"""Table entities for a group's derived view, and the row operations between two views.

Pure: the store reads and writes, this module decides what. Every row of a group in the
`workitems` table except the history's event facts is a function of the group state, so
the rows to write for an event are `diff(rows(derive(old)), rows(derive(new)))`, computed
without reading them. Properties that can become empty are written as "" (never None):
a MERGE cannot remove a property, and a stale `resolvedAt` on a reopened item would lie.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from shared import table_keys
from shared.alert_events import SERVICE_HEALTH, Ci, Event, GroupKey, iso
from shared.entity_props import SHORT_LIMIT, TEXT_LIMIT, json_text, truncated
from shared.workitems import (
    CiSeen,
    Derived,
    GroupState,
    HistoryView,
    ItemView,
    carry_json,
    carry_of,
    overlay_json,
    overlay_of,
    record_json,
    record_of,
    state_from_json,
    state_to_json,
)

Props = dict[str, Any]

CREATE = "create"
MERGE = "merge"
DELETE = "delete"

# History facts copied onto the work item from its latest event (history name -> item name).
ITEM_FACTS = {
    "title": "title",
    "description": "description",
    "summary": "summary",
    "monitoringService": "monitoringService",
    "signalType": "signalType",
    "alertRule": "alertRule",
    "alertRuleId": "alertRuleId",
    "subscriptionId": "subscriptionId",
    "tenantId": "tenantId",
    "targetResourceType": "targetResourceType",
    "targetResourceGroup": "targetResourceGroup",
    "lifecycle": "lifecycle",
    "links": "links",
    "customProperties": "customProperties",
    "payloadBlob": "lastPayloadBlob",
    "payloadSha256": "lastPayloadSha256",
}

# Written when a row is written, not derived from the events: ignored when comparing tables.
# `seq` (group root) counts the group's commits and `indexSeq` (work item) names the commit
# that last changed the item's index rows: they depend on how many writes it took.
WRITE_TIME_FIELDS = ("createdAt", "updatedAt", "seq", "indexSeq")
# Which copy of an event was applied first (copies differ only in these): also ignored.
DELIVERY_FIELDS = (
    "correlationId",
    "receivedAt",
    "messageId",
    "payloadBlob",
    "payloadSha256",
    "payload",
    "lastPayloadBlob",
    "lastPayloadSha256",
)


@dataclass(frozen=True)
class RowOp:
    action: str  # CREATE, MERGE, DELETE
    row_key: str
    props: Mapping[str, Any]


def _s(value: str | None) -> str:
    return "" if value is None else value


def severity_text(severity: int | None) -> str:
    return "" if severity is None else f"Sev{severity}"


def item_props(view: ItemView, group: GroupKey, cis: tuple[CiSeen, ...]) -> Props:
    manual = view.manual
    return {
        "id": view.id,
        "group": group.hash[: table_keys.GROUP_CHARS],
        "groupKind": group.kind,
        "correlationKey": truncated(group.key, SHORT_LIMIT),
        "anchor": view.anchor,
        "state": view.state,
        "resolution": _s(view.resolution),
        "firedAt": iso(view.fired_at),
        "resolvedAt": _s(iso(view.resolved_at)),
        "lastEventAt": iso(view.last_event_at),
        "occurrences": view.occurrences,
        "cycles": view.cycles,
        "reopenCount": view.reopen_count,
        "flapping": view.flapping,
        "flappingUntil": _s(iso(view.flapping_until)),
        "severity": severity_text(view.severity),
        "priority": view.priority,
        "assignmentGroup": _s(view.assignment_group),
        "alertIds": json_text(list(view.alert_ids)),
        "alertCount": view.occurrences,
        "configurationItems": json_text(
            [{"key": c.key, "display": c.display, "kind": c.data.get("kind")} for c in cis]
        ),
        "ciCount": len(cis),
        "factsEvent": view.facts_event,
        "manualState": _s(manual.state if manual else None),
        "manualBy": _s(manual.by if manual else None),
        "manualAt": _s(iso(manual.at) if manual else None),
        "manualNote": _s(manual.note if manual else None),
        "assignee": _s(view.assignee),
        "ruleHashes": ",".join(view.rules),
    }


def history_props(view: HistoryView, group: GroupKey) -> Props:
    props: Props = {
        "entryId": view.entry_id,
        "group": group.hash[: table_keys.GROUP_CHARS],
        "itemId": _s(view.item_id),
        "effect": view.effect,
        "changes": json_text(list(view.changes), TEXT_LIMIT),
        "eventTime": iso(view.time),
        "ignored": view.ignored,
    }
    actor = view.actor
    if actor is not None:  # a person's change: who made it, through which app, and the note
        props.update(
            {
                "actorType": actor.by_type,
                "actorOid": actor.by_oid,
                "actorName": actor.by_app if actor.by_type == "application" else actor.by,
                "actorAppId": actor.by_app,
                "note": actor.note,
                "requestedState": actor.state,
            }
        )
    return props


def binding_props(item_id: str, ci: CiSeen, group: GroupKey) -> Props:
    return {
        "group": group.hash[: table_keys.GROUP_CHARS],
        "itemId": item_id,
        "ciKey": ci.key,
        "ciPartition": table_keys.ci_partition(ci.key, group.tenant),
        "display": ci.display,
        "kind": _s(ci.data.get("kind")),
    }


def group_rows(derived: Derived, group: GroupKey) -> dict[str, Props]:
    """Row key -> derived properties of every row the group owns (besides its root)."""
    rows: dict[str, Props] = {}
    for view in derived.items.values():
        rows[table_keys.item_row(view.id)] = item_props(view, group, derived.cis)
        for ci in derived.cis:
            rows[table_keys.binding_row(view.id, ci.key, group.tenant)] = binding_props(
                view.id, ci, group
            )
    for entry in derived.history.values():
        rows[table_keys.history_row(group.hash, entry.entry_id)] = history_props(entry, group)
        if entry.item_id:
            rows[timeline_key(entry)] = timeline_props(entry, group)
    return rows


def timeline_key(entry: HistoryView) -> str:
    return table_keys.timeline_row(entry.item_id or "", entry.time, entry.entry_id)


def timeline_props(entry: HistoryView, group: GroupKey) -> Props:
    """A pointer from the item's timeline to the history entry (which holds the facts)."""
    return {
        "entryId": entry.entry_id,
        "itemId": entry.item_id or "",
        "group": group.hash[: table_keys.GROUP_CHARS],
    }


def diff(old: Mapping[str, Props], new: Mapping[str, Props]) -> list[RowOp]:
    """Creates, merges (changed properties only) and deletes that turn `old` into `new`."""
    ops: list[RowOp] = []
    for key in sorted(new):
        if key not in old:
            ops.append(RowOp(CREATE, key, new[key]))
            continue
        changed = {k: v for k, v in new[key].items() if old[key].get(k) != v}
        if changed:
            ops.append(RowOp(MERGE, key, changed))
    ops.extend(RowOp(DELETE, key, {}) for key in sorted(old) if key not in new)
    return ops


def facts_needed(old: Derived, new: Derived) -> dict[str, str]:
    """Item id -> event whose facts the item must (re)copy: new items, new latest events."""
    needed = {}
    for item_id, view in new.items.items():
        before = old.items.get(item_id)
        if before is None or before.facts_event != view.facts_event:
            needed[item_id] = view.facts_event
    return needed


def item_facts(history_entity: Mapping[str, Any]) -> Props:
    """The facts a work item copies from its latest event's history entry."""
    return {item: history_entity.get(hist, "") or "" for hist, item in ITEM_FACTS.items()}


def ci_group_props(group: GroupKey) -> Props:
    """CI -> work items binding in the CI's partition, one per group that names the CI.

    Immutable (blind upserts agree) and never deleted (a group's CIs only grow), so no
    race can leave it stale. In alert mode the group's one item id is stable: it is here.
    Other groups list their items with one query of the group's partition.
    """
    return {
        "group": group.hash[: table_keys.GROUP_CHARS],
        "groupKind": group.kind,
        "groupPartition": group.partition,
        "itemId": table_keys.base_item_id(group.hash) if group.kind == "alert" else "",
        "correlationKey": truncated(group.key, SHORT_LIMIT),
    }


CI_FIELDS = ("kind", "subscriptionId", "resourceGroup", "provider", "resourceType", "name")


def cmdb_props(ci: CiSeen, tenant: str) -> Props:
    """The CMDB entity's content for a merged CI record (minute precision, see ci_covered),
    and the tenant whose CI it is (the API shows a CI to that tenant only)."""
    props: Props = {"key": ci.key, "display": ci.display, "tenantId": tenant}
    for name in CI_FIELDS:
        value = ci.data.get(name)
        props[name] = "" if value is None else str(value)[:SHORT_LIMIT]
    props["firstSeen"] = _s(iso(ci.first))
    props["lastSeen"] = _s(iso(ci.last))
    return props


def _str(value: object, limit: int = SHORT_LIMIT) -> str | None:
    return truncated(value, limit) if isinstance(value, str) else None


def title(alert: Mapping[str, Any], event: Event) -> str:
    """One line naming the rule and its primary target, e.g. "High CPU on vm-web-01 (+2 more)";
    a child resource keeps its parent ("vmss-web/212")."""
    summary = alert.get("summary")
    headline = _str(summary.get("title")) if isinstance(summary, dict) else None
    if event.group.kind == SERVICE_HEALTH and headline:
        return headline
    rule = _str(alert.get("alertRule")) or headline or _str(alert.get("monitoringService"))
    rule = rule or "Azure Monitor alert"
    if not event.cis:
        return truncated(rule, SHORT_LIMIT) or rule
    target = primary_target(alert, event)
    name = str(target.data.get("displayName") or target.data.get("name") or target.display)
    more = f" (+{len(event.cis) - 1} more)" if len(event.cis) > 1 else ""
    return truncated(f"{rule} on {name}{more}", SHORT_LIMIT) or rule


def primary_target(alert: Mapping[str, Any], event: Event) -> Ci:
    """The CI the alert is about: the normalizer's `primaryTarget` (docs/queue-message.md);
    the first CI by key for messages older than schema 1.1, which do not name one."""
    key = alert.get("primaryTarget")
    if isinstance(key, str):
        key = key.strip()
        for ci in event.cis:
            if ci.key == key:
                return ci
    return event.cis[0]


def event_facts(
    alert: Mapping[str, Any],
    event: Event,
    payload_blob: str | None,
    payload_sha256: str | None,
    message_id: str | None,
    *,
    payload: bytes | None = None,
) -> Props:
    """What a history entry records about its event, within the property limits.

    The raw payload is either in a blob (`payload_blob`) or, deflated, in the entry itself
    (`payload`, shared.alert_queue.inflate reads it back).
    """
    where = payload_blob or "this event's history entry (payload)"
    summary = alert.get("summary")
    return {
        "alertId": truncated(event.alert_id, SHORT_LIMIT * 4),
        "condition": event.condition,
        "signal": event.signal,
        "status": event.marker,
        "originAlertId": _str(alert.get("originAlertId")),
        "alertRule": _str(alert.get("alertRule")),
        "alertRuleId": _str(alert.get("alertRuleId"), SHORT_LIMIT * 4),
        "subscriptionId": _str(alert.get("subscriptionId")),
        "tenantId": _str(alert.get("tenantId")),
        "severity": severity_text(event.severity) or None,
        "signalType": _str(alert.get("signalType")),
        "monitoringService": _str(alert.get("monitoringService")),
        "firedAt": _str(alert.get("firedAt")),
        "resolvedAt": _str(alert.get("resolvedAt")),
        "title": title(alert, event),
        "description": truncated(_str(alert.get("description"), 10**9), TEXT_LIMIT, where),
        "summary": json_text(summary, TEXT_LIMIT),
        "targetResourceType": _str(alert.get("targetResourceType")),
        "targetResourceGroup": _str(alert.get("targetResourceGroup")),
        "lifecycle": json_text(alert.get("lifecycle")),
        "links": json_text(alert.get("links")),
        "customProperties": json_text(alert.get("customProperties")),
        "configurationItems": json_text([c.key for c in event.cis]),
        "schemaVersion": _str(alert.get("schemaVersion")),
        "correlationId": _str(alert.get("correlationId")),
        "receivedAt": _str(alert.get("receivedAt")),
        "messageId": message_id,
        "payloadBlob": payload_blob,
        "payloadSha256": payload_sha256,
        **({"payload": payload} if payload is not None else {}),
    }


# -- the group state: the root and its bookkeeping rows ------------------------------------

STATE_ROW_PROPS = {"e": "rec", "m": "ov", "c": "carry"}


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def state_entities(state: GroupState) -> tuple[str, dict[str, Props]]:
    """The group state as the root's JSON and its rows (row key -> properties).

    The root keeps what every event needs (group, CIs, horizon, archived ids); the window's
    records, people's changes and the carry are rows of their own beside it, read with it
    (one range) and written in its transaction only when they change: an event writes the
    root and one record, whatever the group has seen.
    """
    h = state.group.hash
    rows: dict[str, Props] = {
        table_keys.window_row(h, r.id): {"rec": _compact(record_json(r))} for r in state.events
    }
    for o in state.overlays:
        rows[table_keys.overlay_row(h, o.id)] = {"ov": _compact(overlay_json(o))}
    if state.carry is not None:
        rows[table_keys.carry_row(h)] = {"carry": _compact(carry_json(state.carry))}
    root = replace(state, events=(), overlays=(), carry=None)
    return state_to_json(root), rows


def state_of(root_json: str, rows: Mapping[str, Mapping[str, Any]]) -> GroupState:
    """The group state from the root's JSON and the rows read with it."""
    state = state_from_json(root_json)
    events, overlays, carry = [], [], None
    for rk, props in rows.items():
        kind = rk.split("|")[2] if rk.count("|") >= 2 else ""
        if kind == "e" and "rec" in props:
            events.append(record_of(json.loads(str(props["rec"]))))
        elif kind == "m" and "ov" in props:
            overlays.append(overlay_of(json.loads(str(props["ov"]))))
        elif kind == "c" and "carry" in props:
            carry = carry_of(json.loads(str(props["carry"])))
    # A root written before the state had rows of its own keeps its events and people's
    # changes in its JSON: they count too (the next commit moves them into rows).
    by_id = {r.id: r for r in state.events} | {r.id: r for r in events}
    changes = {o.id: o for o in state.overlays} | {o.id: o for o in overlays}
    return replace(
        state,
        events=tuple(sorted(by_id.values(), key=lambda r: r.id)),
        overlays=tuple(sorted(changes.values(), key=lambda o: (o.at, o.id))),
        carry=carry or state.carry,
    )
