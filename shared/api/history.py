"""A work item's history, page by page, and an alert event's raw payload (the work item API).

`GET /api/workitems/{id}` shows the latest page of history; `GET .../history` pages back
through the rest with the continuation token the previous page gave; `GET
.../events/{eventId}/payload` returns what Azure Monitor sent for one alert event. Each reads
a bounded number of entities, whatever the item's age (shared.store.reads.history_page).
"""

from __future__ import annotations

import re
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError

from shared import alert_queue, responses, store, table_keys
from shared.api import params, security, views
from shared.auth import Principal
from shared.config import Settings

DETAIL_PAGE = 50  # entries the item's detail shows
DEFAULT_TOP = 50
MAX_TOP = 200
EVENT_ID = re.compile(r"[0-9A-Z]{16}")


def _fingerprint(item_id: str) -> str:
    return f"history|{item_id}"


def token(item_id: str, after: str | None) -> str | None:
    return None if after is None else params.make_token(_fingerprint(item_id), after)


def latest(s: store.WorkItemStore, item: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The newest entries for the item's detail, and the token of the older ones."""
    entries, after = s.history_page(item, DETAIL_PAGE)
    return [views.history_entry(e) for e in entries], token(str(item["id"]), after)


def _top(query: dict[str, str]) -> int:
    raw = query.get("top")
    if raw is None:
        return DEFAULT_TOP
    if not re.fullmatch(r"\d{1,4}", raw.strip()) or not 1 <= int(raw) <= MAX_TOP:
        raise params.BadRequest(
            "invalid_parameter", f"top must be a whole number from 1 to {MAX_TOP}.", "top"
        )
    return int(raw)


def page(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    item_id = params.item_id(req.route_params.get("id"))
    query = params.query_params(req.url, ("top", "continuationToken"))
    top = _top(query)
    raw_token = query.get("continuationToken")
    prefix = table_keys.timeline_prefix(item_id)
    after = (
        None
        if raw_token is None
        else params.continuation(
            raw_token, _fingerprint(item_id), lambda v: v.startswith(prefix) and len(v) <= 200
        )
    )
    s = store.store_for(settings)
    item = s.get_item(item_id, security.caller(settings, principal).reads)
    if item is None:
        raise store.ItemNotFound(item_id)
    entries, next_after = s.history_page(item, top, after)
    return responses.json_response(
        200,
        {
            "value": [views.history_entry(e) for e in entries],
            "continuationToken": token(item_id, next_after),
            "correlationId": correlation_id,
        },
    )


def payload(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    item_id = params.item_id(req.route_params.get("id"))
    event_id = str(req.route_params.get("eventId") or "")
    params.query_params(req.url, ())
    missing = responses.error(
        404,
        "not_found",
        f"Work item {item_id} has no alert event {event_id[:40]!r} with a payload (the id "
        "of a history entry whose source is alert).",
        correlation_id=correlation_id,
    )
    if not EVENT_ID.fullmatch(event_id):
        return missing
    data, blob = store.store_for(settings).event_payload(
        item_id, event_id, security.caller(settings, principal).reads
    )
    try:
        if data is not None:
            envelope = alert_queue.inflate(data)
        elif blob is not None:
            envelope = alert_queue.stored_envelope(settings.storage, blob)
        else:
            return missing
    except (ResourceNotFoundError, alert_queue.CorruptMessage):
        return missing
    raw = envelope.get("raw") if isinstance(envelope, dict) else None
    if raw is None:
        return missing
    return func.HttpResponse(
        responses.json_text(raw),
        status_code=200,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        mimetype="application/json",
        charset="utf-8",
    )
