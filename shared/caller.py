"""What every HTTP function does first: load the settings, then verify the caller's token."""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared import auth, responses
from shared.auth import AccessPolicy, Principal
from shared.config import ConfigError, Settings, get_settings
from shared.log_text import get_logger

log = get_logger(__name__)


def content_length(req: func.HttpRequest) -> int | None:
    """The declared body size, or None when absent or not a number."""
    try:
        return int(req.headers.get("content-length", ""))
    except ValueError:
        return None


def authenticate(
    req: func.HttpRequest,
    correlation_id: str,
    policy: Callable[[Settings], AccessPolicy],
) -> tuple[Settings, Principal] | func.HttpResponse:
    """The settings and the verified caller, or the answer that refuses the request."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        # An operator must fix this; 503 keeps callers (Azure Monitor) retrying meanwhile.
        log.error("configuration error, correlationId=%s: %s", correlation_id, exc)
        return responses.unavailable(
            "The service is misconfigured; its operator has been told.", correlation_id
        )
    try:
        principal = auth.verify(
            req.headers.get("authorization"),
            policy(settings),
            settings=settings.auth,
            correlation_id=correlation_id,
        )
    except auth.AuthError as exc:
        return responses.json_response(
            exc.status, {**exc.body, "correlationId": correlation_id}, exc.headers
        )
    return settings, principal
