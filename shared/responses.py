"""JSON HTTP answers: every error says what is wrong and how to fix it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func

# Seconds Azure Monitor (or any client) should wait before retrying a 503.
RETRY_AFTER_SECONDS = 10


def json_text(body: Any) -> str:
    """Compact JSON that always encodes as UTF-8: a lone surrogate (quoted from a request,
    or kept in a raw payload) is sent as its \\udxxx escape instead of failing the answer."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return text


def json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    all_headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    all_headers.update(headers or {})
    return func.HttpResponse(
        json_text(body),
        status_code=status,
        headers=all_headers,
        mimetype="application/json",
        charset="utf-8",
    )


def error(
    status: int,
    code: str,
    detail: str,
    *,
    correlation_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> func.HttpResponse:
    body: dict[str, Any] = {"error": code, "detail": detail, **extra}
    if correlation_id:
        body["correlationId"] = correlation_id
    return json_response(status, body, headers)


def unavailable(detail: str, correlation_id: str | None = None) -> func.HttpResponse:
    """503 with Retry-After: a status Azure Monitor retries (500 it does not)."""
    return error(
        503,
        "service_unavailable",
        detail,
        correlation_id=correlation_id,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
