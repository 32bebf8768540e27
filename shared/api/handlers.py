"""The work item API's HTTP functions (function_app.py calls one per route).

Every answer is JSON. Order of checks: settings (503), token (401/403, shared/auth.py),
request (400/413/415/428), then the store (404/409/412). Storage faults answer 503 with
Retry-After; nothing a client sends can produce a 500.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import alert_outbox, caller, responses, store, table_keys, workitem_index
from shared.api import history, params, security, views
from shared.auth import Principal
from shared.config import Settings
from shared.log_text import get_logger

log = get_logger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
CI_OPEN_ITEMS = 100  # open work items listed with a CI
CI_RECENT_ITEMS = 20  # most recent work items (any state) listed with a CI

Work = Callable[[func.HttpRequest, Settings, Principal, str], func.HttpResponse]


def _now() -> int:
    return int(time.time() * 1_000_000)


def _run(req: func.HttpRequest, *, write: bool, work: Work) -> func.HttpResponse:
    correlation_id = str(uuid.uuid4())
    front = caller.authenticate(req, correlation_id, lambda s: security.policy(s.auth, write=write))
    if isinstance(front, func.HttpResponse):
        return front
    settings, principal = front
    try:
        return work(req, settings, principal, correlation_id)
    except params.BadRequest as exc:
        if exc.field:
            return responses.error(
                400, exc.code, exc.detail, correlation_id=correlation_id, field=exc.field
            )
        return responses.error(400, exc.code, exc.detail, correlation_id=correlation_id)
    except params.PayloadTooLarge as exc:
        return responses.error(413, "payload_too_large", str(exc), correlation_id=correlation_id)
    except params.UnsupportedMediaType as exc:
        return responses.error(
            415, "unsupported_media_type", str(exc), correlation_id=correlation_id
        )
    except store.ItemNotFound as exc:
        return responses.error(
            404, "not_found", f"No work item {exc}.", correlation_id=correlation_id
        )
    except (AzureError, store.ContentionError, store.StoreInconsistent) as exc:
        log.warning("storage unavailable, correlationId=%s: %s", correlation_id, exc)
        return responses.unavailable("Storage is unavailable; retry later.", correlation_id)
    except Exception:
        # A bug, not the client's fault: say so without details (they are in the log).
        log.exception("work item API failed, correlationId=%s", correlation_id)
        return responses.error(
            500,
            "internal_error",
            "The request failed unexpectedly; nothing was changed.",
            correlation_id=correlation_id,
        )


def _store(settings: Settings) -> store.WorkItemStore:
    return store.store_for(settings)


def _item_response(
    status: int, settings: Settings, s: store.WorkItemStore, item: Any, correlation_id: str
) -> func.HttpResponse:
    item_id = str(item["id"])
    body = views.item_detail(item, [], s.item_cis(item_id), _now())
    body["alertSync"] = alert_outbox.statuses(settings, item_id)
    body["history"], body["historyContinuationToken"] = history.latest(s, item)
    headers = {"ETag": params.etag_header(item.metadata["etag"])}
    return responses.json_response(status, {**body, "correlationId": correlation_id}, headers)


# -- GET /api/workitems ---------------------------------------------------------------------


def _list(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    s = _store(settings)
    who = security.caller(settings, principal)
    request = params.list_request(
        req.url, who.tenant, who.operator, lambda name, tenant: _ci_named(s, name, tenant)
    )
    page = s.list_items(request.filter, request.top, request.after)
    now = _now()
    token = (
        None if page.after is None else params.make_token(request.filter.fingerprint(), page.after)
    )
    return responses.json_response(
        200,
        {
            "items": [views.item_summary(item, now) for item in page.items],
            "count": len(page.items),
            "continuationToken": token,
            "correlationId": correlation_id,
        },
    )


def _ci_named(s: store.WorkItemStore, name: str, tenant: str) -> str | None:
    """The one CI with this name in the tenant's CMDB, None if none; 400 if several."""
    found = s.ci_hashes_named(name, tenant)
    key = workitem_index.ci_hash(name, tenant)
    if not found or key in found:
        return None  # the CI known by this very key (a computer name)
    if len(found) == 1:
        return found[0]
    shown = ", ".join(workitem_index.ci_id(h) for h in found[:5])
    raise params.BadRequest(
        "ambiguous_ci",
        f"{len(found)} CIs are named {name[:100]!r} ({shown}); pass the id of the one you mean "
        "(GET /api/cis?query=<name> lists them) or its ARM resource id.",
        "ci",
    )


def list_workitems(req: func.HttpRequest) -> func.HttpResponse:
    return _run(req, write=False, work=_list)


# -- GET /api/workitems/{id} ---------------------------------------------------------------------


def _get(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    item_id = params.item_id(req.route_params.get("id"))
    params.query_params(req.url, ())
    s = _store(settings)
    item = s.get_item(item_id, security.caller(settings, principal).reads)
    if item is None:
        raise store.ItemNotFound(item_id)
    # The outbox's repair: a PATCH that could not queue its alert sync left a record.
    alert_outbox.flush(settings, s, item_id, alert_outbox.REPAIR_AFTER_S)
    return _item_response(200, settings, s, item, correlation_id)


def get_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return _run(req, write=False, work=_get)


def workitem_history(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/workitems/{id}/history: older pages of the history (shared/api/history.py)."""
    return _run(req, write=False, work=history.page)


def event_payload(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/workitems/{id}/events/{eventId}/payload: what Azure Monitor sent."""
    return _run(req, write=False, work=history.payload)


# -- PATCH /api/workitems/{id} ---------------------------------------------------------------------


def _update(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    item_id = params.item_id(req.route_params.get("id"))
    params.query_params(req.url, ())
    expected = params.if_match(req.headers.get("if-match"))
    if expected is None:
        return responses.error(
            428,
            "precondition_required",
            "Send If-Match with the ETag of the work item as you last read it (GET "
            "/api/workitems/{id} returns it), so that you do not overwrite a change you have "
            "not seen; If-Match: * updates whatever the item holds now.",
            correlation_id=correlation_id,
        )
    params.media_type(req.headers.get("content-type"))
    declared = caller.content_length(req)
    if declared is not None and declared > params.MAX_BODY_BYTES:
        raise params.PayloadTooLarge(f"The body is larger than {params.MAX_BODY_BYTES} bytes.")
    change = params.item_change(params.json_body(req.get_body()))
    who = security.actor(principal)
    s = _store(settings)
    try:
        item = s.update_item(
            item_id,
            _store_change(change),
            who,
            if_match=None if expected == params.ANY else tuple(expected),
            sync_alerts=settings.alert_sync.enabled,
            before_outbox=alert_outbox.before_commit(settings),
            tenant=security.caller(settings, principal).reads,
        )
    except store.PreconditionFailed as exc:
        headers = {"ETag": params.etag_header(exc.etag)} if exc.etag else {}
        return responses.error(
            412,
            "precondition_failed",
            "The work item changed since you read it (If-Match does not match its ETag): "
            "read it again, check the change still makes sense, and retry with the new ETag.",
            correlation_id=correlation_id,
            headers=headers,
        )
    except store.InvalidTransition as exc:
        return responses.error(
            409,
            "invalid_transition",
            f"A work item in state {exc.current} cannot {exc.describe()}; from {exc.current} "
            f"it can go to: {', '.join(exc.allowed) or 'nothing'}.",
            correlation_id=correlation_id,
            state=exc.current,
            requested=exc.requested,
            allowedTransitions=list(exc.allowed),
        )
    log.info(
        "work item %s updated by %s %s (%s), correlationId=%s",
        item_id,
        who.type,
        who.oid,
        ", ".join(_changed(change)),
        correlation_id,
    )
    # After the commit, never failing the PATCH: queue this change's alert sync (and any
    # an earlier PATCH of the item left unsent).
    alert_outbox.flush(settings, s, item_id)
    return _item_response(200, settings, s, item, correlation_id)


def _store_change(change: params.ItemChange) -> store.Change:
    """The request's change in the store's terms ("" / 0: back to what the alerts say)."""
    return store.Change(
        state=change.state or "",
        note=change.note or "",
        assignee=None if change.assignee is params.UNSET else (change.assignee or ""),
        assignment_group=(
            None if change.assignment_group is params.UNSET else (change.assignment_group or "")
        ),
        priority=None if change.priority is params.UNSET else (change.priority or 0),
    )


def _changed(change: params.ItemChange) -> list[str]:
    out = []
    if change.state is not None:
        out.append(f"state={change.state}")
    for name in ("assignee", "assignment_group", "priority"):
        if getattr(change, name) is not params.UNSET:
            out.append(name)
    if change.note is not None:
        out.append("note")
    return out


def update_workitem(req: func.HttpRequest) -> func.HttpResponse:
    return _run(req, write=True, work=_update)


# -- GET /api/cis ---------------------------------------------------------------------------------


def _search(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    who = security.caller(settings, principal)
    search = params.ci_search(req.url, who.tenant, who.operator)
    page = _store(settings).search_cis(
        search.query,
        search.resource_type,
        search.subscription,
        search.top,
        search.after,
        search.tenant,
    )
    token = None if page.after is None else params.make_token(search.fingerprint(), page.after)
    return responses.json_response(
        200,
        {
            "items": [views.ci(c) for c in page.items],
            "count": len(page.items),
            "continuationToken": token,
            "correlationId": correlation_id,
        },
    )


def search_cis(req: func.HttpRequest) -> func.HttpResponse:
    return _run(req, write=False, work=_search)


# -- GET /api/cis/{id} ---------------------------------------------------------------------


def _get_ci(
    req: func.HttpRequest, settings: Settings, principal: Principal, correlation_id: str
) -> func.HttpResponse:
    ci = params.ci_id(req.route_params.get("id"))
    params.query_params(req.url, ())
    s = _store(settings)
    entity = s.ci_entity(ci, security.caller(settings, principal).reads)
    if entity is None:
        return responses.error(
            404,
            "not_found",
            f"No CI {workitem_index.ci_id(ci)}.",
            correlation_id=correlation_id,
        )
    now = _now()
    tenant = table_keys.tenant_key(str(entity.get("tenantId") or ""))  # the CI's items
    open_items = s.list_items(
        workitem_index.ItemFilter(states=workitem_index.OPEN_STATES, ci=ci, tenant=tenant),
        CI_OPEN_ITEMS,
        None,
    )
    recent = s.list_items(
        workitem_index.ItemFilter(states=workitem_index.STATES, ci=ci, tenant=tenant),
        CI_RECENT_ITEMS,
        None,
    )
    return responses.json_response(
        200,
        {
            **views.ci(entity),
            "openWorkItems": [views.item_summary(i, now) for i in open_items.items],
            "moreOpenWorkItems": open_items.after is not None,
            "recentWorkItems": [views.item_summary(i, now) for i in recent.items],
            "correlationId": correlation_id,
        },
    )


def get_ci(req: func.HttpRequest) -> func.HttpResponse:
    return _run(req, write=False, work=_get_ci)


# -- GET /api/openapi.json ----------------------------------------------------------------


@cache
def _openapi() -> bytes:
    return OPENAPI_PATH.read_bytes()


def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI document, public: it describes the API, it grants nothing."""
    return func.HttpResponse(
        _openapi(),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
