"""Stored entities as the work item API's JSON (the shapes in shared/openapi.json)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from shared import workitem_index
from shared.store.sync_history import SYNC_EFFECTS

API = "/api"


def _text(entity: Mapping[str, Any], name: str) -> str | None:
    value = entity.get(name)
    if value is None:
        return None
    text = str(value)
    return text or None


def _int(entity: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = entity.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _json(entity: Mapping[str, Any], name: str) -> Any:
    """A JSON property as the value it encodes (None if absent or unreadable)."""
    text = entity.get(name)
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _object(entity: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = _json(entity, name)
    return value if isinstance(value, dict) else None


def item_cis(entity: Mapping[str, Any]) -> list[dict[str, Any]]:
    listed = _json(entity, "configurationItems")
    tenant = str(entity.get("tenantId") or "")
    out = []
    for ci in listed if isinstance(listed, list) else []:
        if not isinstance(ci, dict) or not isinstance(ci.get("key"), str):
            continue
        out.append(
            {
                "id": workitem_index.ci_id(workitem_index.ci_hash(ci["key"], tenant)),
                "key": ci["key"],
                "display": str(ci.get("display") or ci["key"]),
                "kind": ci.get("kind") if isinstance(ci.get("kind"), str) else None,
            }
        )
    return out


def item_summary(entity: Mapping[str, Any], now_micros: int) -> dict[str, Any]:
    item_id = str(entity["id"])
    return {
        "id": item_id,
        "title": _text(entity, "title") or item_id,
        "state": str(entity.get("state")),
        "severity": _text(entity, "severity"),
        "priority": _int(entity, "priority", 3),
        "flapping": workitem_index.is_flapping(entity, now_micros),
        "firedAt": _text(entity, "firedAt"),
        "resolvedAt": _text(entity, "resolvedAt"),
        "lastEventAt": _text(entity, "lastEventAt"),
        "resolution": _text(entity, "resolution"),
        "assignee": _text(entity, "assignee"),
        "assignmentGroup": _text(entity, "assignmentGroup"),
        "alertRule": _text(entity, "alertRule"),
        "alertRuleId": _text(entity, "alertRuleId"),
        "monitoringService": _text(entity, "monitoringService"),
        "signalType": _text(entity, "signalType"),
        "configurationItems": item_cis(entity),
        "occurrences": _int(entity, "occurrences"),
        "reopenCount": _int(entity, "reopenCount"),
        "updatedAt": _text(entity, "updatedAt"),
        "tenantId": _text(entity, "tenantId"),
        "url": f"{API}/workitems/{item_id}",
    }


def _manual(entity: Mapping[str, Any]) -> dict[str, Any] | None:
    if not entity.get("manualAt"):
        return None
    return {
        "state": _text(entity, "manualState"),
        "by": _text(entity, "manualBy"),
        "at": _text(entity, "manualAt"),
        "note": _text(entity, "manualNote"),
    }


def item_detail(
    entity: Mapping[str, Any],
    history: Iterable[Mapping[str, Any]],
    bindings: Iterable[Mapping[str, Any]],
    now_micros: int,
) -> dict[str, Any]:
    alert_ids = _json(entity, "alertIds")
    detail = {
        **item_summary(entity, now_micros),
        "description": _text(entity, "description"),
        "summary": _object(entity, "summary"),
        "links": _object(entity, "links"),
        "customProperties": _object(entity, "customProperties"),
        "lifecycle": _object(entity, "lifecycle"),
        "subscriptionId": _text(entity, "subscriptionId"),
        "tenantId": _text(entity, "tenantId"),
        "targetResourceType": _text(entity, "targetResourceType"),
        "targetResourceGroup": _text(entity, "targetResourceGroup"),
        "alertIds": [str(a) for a in alert_ids] if isinstance(alert_ids, list) else [],
        "alertCount": _int(entity, "alertCount"),
        "cycles": _int(entity, "cycles", 1),
        "flappingUntil": _text(entity, "flappingUntil"),
        "manual": _manual(entity),
        "groupKind": _text(entity, "groupKind"),
        "correlationKey": _text(entity, "correlationKey"),
        "createdAt": _text(entity, "createdAt"),
        "payloadBlob": _text(entity, "lastPayloadBlob"),
    }
    tenant = str(entity.get("tenantId") or "")
    bound = [binding(b, tenant) for b in bindings]
    if bound:  # the bindings are authoritative; the item's list may be truncated
        detail["configurationItems"] = sorted(bound, key=lambda c: str(c["key"]))
    detail["history"] = [history_entry(h) for h in history]
    return detail


def binding(entity: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """An item -> CI binding; the CI id is computed from the item's tenant and the CI's key
    (a binding written before CMDBs were per tenant names the shared CI in `ciPartition`)."""
    key = str(entity.get("ciKey") or "")
    partition = workitem_index.ci_hash(key, tenant)
    return {
        "id": workitem_index.ci_id(partition),
        "key": key,
        "display": str(entity.get("display") or key),
        "kind": _text(entity, "kind"),
    }


def history_entry(entity: Mapping[str, Any]) -> dict[str, Any]:
    changes = _json(entity, "changes")
    effect = str(entity.get("effect") or "")
    manual = effect == "manual"
    sync = effect in SYNC_EFFECTS
    entry: dict[str, Any] = {
        "id": str(entity.get("entryId") or ""),
        "time": _text(entity, "eventTime"),
        "effect": effect,
        "changes": [str(c) for c in changes] if isinstance(changes, list) else [],
        "ignored": bool(entity.get("ignored")),
        "source": "manual" if manual else "sync" if sync else "alert",
    }
    if sync:  # a person's change reaching the Azure alerts (docs/alert-sync.md, "History")
        entry["sync"] = {
            "state": _text(entity, "syncState"),
            "alertId": _text(entity, "alertId"),
        }
        return entry
    if manual:
        entry["actor"] = {
            "type": _text(entity, "actorType"),
            "oid": _text(entity, "actorOid"),
            "name": _text(entity, "actorName"),
            "appId": _text(entity, "actorAppId"),
        }
        entry["note"] = _text(entity, "note")
        return entry
    entry["alert"] = {
        "alertId": _text(entity, "alertId"),
        "condition": _text(entity, "condition"),
        "severity": _text(entity, "severity"),
        "status": _text(entity, "status"),
        "title": _text(entity, "title"),
        "firedAt": _text(entity, "firedAt"),
        "resolvedAt": _text(entity, "resolvedAt"),
        "receivedAt": _text(entity, "receivedAt"),
        "correlationId": _text(entity, "correlationId"),
        "payloadBlob": _text(entity, "payloadBlob"),
    }
    return entry


def ci(entity: Mapping[str, Any]) -> dict[str, Any]:
    partition = str(entity.get("PartitionKey"))
    return {
        "id": workitem_index.ci_id(partition),
        "key": str(entity.get("key") or ""),
        "display": str(entity.get("display") or entity.get("key") or ""),
        "kind": _text(entity, "kind"),
        "name": _text(entity, "name"),
        "subscriptionId": _text(entity, "subscriptionId"),
        "resourceGroup": _text(entity, "resourceGroup"),
        "provider": _text(entity, "provider"),
        "resourceType": _text(entity, "resourceType"),
        "firstSeen": _text(entity, "firstSeen"),
        "lastSeen": _text(entity, "lastSeen"),
        "tenantId": _text(entity, "tenantId"),
        "url": f"{API}/cis/{workitem_index.ci_id(partition)}",
    }
