"""POST /api/alerts: verify the caller, normalize the alert, queue it, answer fast.

Every failure maps to an answer Azure Monitor handles well: 4xx for requests that
will never succeed (it does not retry them), 503 with Retry-After for anything
transient (it retries 408/429/503/504), never 500.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import azure.functions as func

from shared import alert_queue, auth, caller, responses
from shared.alerts import SchemaError, normalize, parse_payload
from shared.log_text import get_logger

log = get_logger(__name__)


def handle(req: func.HttpRequest) -> func.HttpResponse:
    correlation_id = str(uuid.uuid4())
    received_at = datetime.now(UTC)
    front = caller.authenticate(req, correlation_id, lambda s: auth.ingest_policy(s.auth))
    if isinstance(front, func.HttpResponse):
        return front
    settings, principal = front

    limit = settings.max_payload_bytes
    declared = caller.content_length(req)
    body = req.get_body() if declared is None or declared <= limit else b""
    if (declared is not None and declared > limit) or len(body) > limit:
        log.warning(
            "alert rejected: payload_too_large (%s bytes > %d), correlationId=%s",
            declared if declared is not None else len(body),
            limit,
            correlation_id,
        )
        return responses.error(
            413,
            "payload_too_large",
            f"The body exceeds MAX_PAYLOAD_BYTES ({limit} bytes). Azure Monitor alerts are at "
            "most 256 KB; raise MAX_PAYLOAD_BYTES only if you post larger ones yourself.",
            correlation_id=correlation_id,
        )

    if not body and "chunked" in req.headers.get("transfer-encoding", "").lower():
        # The Functions host forwards a body only with a positive Content-Length
        # (azure-functions-host#4926): a chunked body never reaches us. Say so, instead of
        # the empty_body a client would take for its own mistake.
        log.warning("alert rejected: length_required (chunked), correlationId=%s", correlation_id)
        return responses.error(
            411,
            "length_required",
            "The body was sent chunked (Transfer-Encoding: chunked) without Content-Length, "
            "and the Functions host drops such a body before the app sees it. Send the body "
            "with a Content-Length header; a proxy in front of this app must keep it.",
            correlation_id=correlation_id,
        )

    try:
        payload = parse_payload(body)
        alert = normalize(
            payload,
            tenant_id=principal.tenant_id,
            correlation_id=correlation_id,
            received_at=received_at,
        )
    except SchemaError as exc:
        log.warning(
            "alert rejected: %s (%s), correlationId=%s", exc.code, exc.field, correlation_id
        )
        return responses.error(
            400, exc.code, exc.message, correlation_id=correlation_id, field=exc.field
        )

    try:
        delivery = alert_queue.enqueue(settings.storage, alert, payload)
    except alert_queue.NotEncodable as exc:
        log.warning("alert rejected: nesting_too_deep, correlationId=%s", correlation_id)
        return responses.error(
            400,
            "nesting_too_deep",
            f"The JSON body is nested too deeply to be stored ({exc}); Azure Monitor alerts "
            "are a few levels deep.",
            correlation_id=correlation_id,
        )
    except alert_queue.QueueUnavailable as exc:
        log.error(
            "could not queue alert %s, correlationId=%s: %s",
            alert["alertId"],
            correlation_id,
            exc,
        )
        return responses.unavailable("The alert could not be queued; retry later.", correlation_id)

    log.info(
        "alert queued: alertId=%s condition=%s service=%s delivery=%s correlationId=%s",
        alert["alertId"],
        alert["monitorCondition"],
        alert.get("monitoringService"),
        delivery,
        correlation_id,
    )
    return responses.json_response(
        202,
        {
            "status": "accepted",
            "correlationId": correlation_id,
            "alertId": alert["alertId"],
            "monitorCondition": alert["monitorCondition"],
        },
    )
