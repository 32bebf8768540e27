"""Azure Resource Manager's Alerts Management API: read an alert, change its user state.

The contract is the REST specification's stable api-version 2019-03-01
(azure-rest-api-specs, specification/alertsmanagement/resource-manager/
Microsoft.AlertsManagement/AlertsManagement/stable/2019-03-01/AlertsManagement.json;
docs/alert-sync.md cites it):

    GET  {alertId}?api-version=2019-03-01                          -> 200 Alert
    POST {alertId}/changestate?api-version=2019-03-01&newState=S   -> 200 Alert
         body (optional): {"comments": "<reason>"}
    errors: {"error": {"code", "message", ...}}

`alertId` is the common alert schema's `essentials.alertId`: the alert's ARM id, scope
included. We use azure-core's pipeline rather than azure-mgmt-alertsmanagement, whose
latest release (1.0.1) pins this operation to 2019-05-05-preview and takes only a bare
alert GUID under a subscription, not the scoped id the schema gives.

Outcomes: a final one (`SyncOutcome`: changed, already in that state, or failed with a
reason: 404 the alert is gone, 403 no permission, another 4xx rejected), or
`TransientArmError` (429, 5xx, timeouts, no token) once the bounded retries are spent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from shared.alert_sync_plan import USER_STATES, is_alert_id
from shared.log_text import get_logger, quoted

log = get_logger(__name__)

API_VERSION = "2019-03-01"  # the stable Alerts Management version (see the docstring)

_CONNECT_TIMEOUT_S = 5
_READ_TIMEOUT_S = 10
# Retries inside one attempt: a few quick ones; the queue's redelivery does the rest.
_RETRIES = 3
_BACKOFF_S = 0.5
_BACKOFF_MAX_S = 8
# A Retry-After longer than this ends the attempt (the message comes back later) instead
# of holding a worker asleep.
MAX_RETRY_AFTER_S = 30.0
# The whole attempt, retries included, stays well inside the function timeout.
_ATTEMPT_TIMEOUT_S = 45
_REPEATABLE = frozenset({"GET", "POST"})  # change state sets a value: safe to repeat
_MAX_ERROR_TEXT = 300

CHANGED = "changed"
UNCHANGED = "unchanged"  # the alert already had that state: nothing was sent
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
UNAUTHORIZED = "unauthorized"
REJECTED = "rejected"


@dataclass(frozen=True)
class SyncOutcome:
    """How one change state ended, for good: no retry will change it."""

    result: str  # CHANGED, UNCHANGED, NOT_FOUND, FORBIDDEN, UNAUTHORIZED or REJECTED
    reason: str  # for people: the item's detail and history show it

    @property
    def succeeded(self) -> bool:
        return self.result in (CHANGED, UNCHANGED)


class TransientArmError(Exception):
    """ARM could not answer now (throttled, failing, slow, no token): try again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _ArmRetryPolicy(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry (429 honouring Retry-After, 408, 5xx, connection and read errors),
    except that a Retry-After beyond MAX_RETRY_AFTER_S ends the attempt."""

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
            return False
        return bool(super().is_retry(settings, response))


def audience_scope(endpoint: str) -> str:
    """The token scope for a cloud's Resource Manager: its endpoint's `/.default`."""
    return f"{endpoint.rstrip('/')}/.default"


def _error_text(response: HttpResponse) -> str:
    """ARM's error code and message (ErrorResponse), escaped and bounded."""
    try:
        error = response.json().get("error") or {}
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        code, message = None, None
    parts = [str(p) for p in (code, message) if isinstance(p, str) and p]
    text = ": ".join(parts) if parts else f"HTTP {response.status_code}"
    return " ".join(text.split())[:_MAX_ERROR_TEXT]


class AlertsClient:
    """Change state of Azure Monitor alerts with the app's identity."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        *,
        read_timeout: float = _READ_TIMEOUT_S,
        backoff: float = _BACKOFF_S,
        attempt_timeout: float = _ATTEMPT_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        url = urlsplit(self.endpoint)
        # Bearer tokens go over TLS only; plain http is allowed for a loopback test server
        # (shared/config.py refuses it for any other host).
        self._enforce_https = url.scheme == "https" or url.hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        )
        self._attempt_timeout = attempt_timeout
        retry = _ArmRetryPolicy(
            retry_total=_RETRIES,
            retry_backoff_factor=backoff,
            retry_backoff_max=_BACKOFF_MAX_S,
        )
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            base_url=self.endpoint,
            policies=[
                HeadersPolicy({"Accept": "application/json"}),
                UserAgentPolicy(sdk_moniker="azure-monitor-itsm-receiver"),
                retry,
                BearerTokenCredentialPolicy(credential, audience_scope(self.endpoint)),
            ],
            transport=RequestsTransport(
                connection_timeout=_CONNECT_TIMEOUT_S, read_timeout=read_timeout
            ),
        )

    def close(self) -> None:
        self._client.close()

    def _send(self, request: HttpRequest, what: str, alert_id: str) -> HttpResponse:
        options: dict[str, Any] = {
            "retry_on_methods": _REPEATABLE,
            "timeout": self._attempt_timeout,
        }
        if not self._enforce_https:
            options["enforce_https"] = False
        try:
            response = self._client.send_request(request, **options)
        except ClientAuthenticationError as exc:
            raise TransientArmError(
                f"no token for Azure Resource Manager: {type(exc).__name__}"
            ) from None
        except AzureError as exc:
            raise TransientArmError(f"{what} failed: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429 or status == 408 or status >= 500:
            retry_after = None
            header = response.headers.get("Retry-After")
            if header and header.strip().isdigit():
                retry_after = float(header.strip())
            raise TransientArmError(f"{what}: HTTP {status} {_error_text(response)}", retry_after)
        return response

    @staticmethod
    def _final(response: HttpResponse, target: str) -> SyncOutcome:
        status = response.status_code
        detail = _error_text(response)
        if status == 404:
            return SyncOutcome(
                NOT_FOUND,
                f"could not set the Azure alert to {target}: it no longer exists "
                f"(Azure Monitor keeps alerts for 30 days) ({detail})",
            )
        if status == 403:
            return SyncOutcome(
                FORBIDDEN,
                f"could not set the Azure alert to {target}: the identity lacks permission "
                f"(Microsoft.AlertsManagement/alerts/changestate/action) ({detail})",
            )
        if status == 401:
            return SyncOutcome(
                UNAUTHORIZED,
                f"could not set the Azure alert to {target}: Azure Resource Manager "
                f"rejected the app's token ({detail})",
            )
        return SyncOutcome(
            REJECTED, f"could not set the Azure alert to {target}: HTTP {status} ({detail})"
        )

    def current_state(self, alert_id: str) -> tuple[str | None, HttpResponse]:
        request = HttpRequest(
            "GET", f"{self.endpoint}{alert_id}", params={"api-version": API_VERSION}
        )
        response = self._send(request, "reading the alert", alert_id)
        if response.status_code != 200:
            return None, response
        return _alert_state(response), response

    def change_state(self, alert_id: str, new_state: str, comment: str) -> SyncOutcome:
        """Set the alert's user state; a state it already has sends nothing.

        Raises TransientArmError when ARM could not be reached or kept failing; every
        other ending is a SyncOutcome.
        """
        if not is_alert_id(alert_id):
            return SyncOutcome(REJECTED, "not an Alerts Management alert id")
        if new_state not in USER_STATES:
            return SyncOutcome(REJECTED, f"not an alert state: {new_state[:20]!r}")
        state, response = self.current_state(alert_id)
        if response.status_code != 200:
            outcome = self._final(response, new_state)
        elif state == new_state:
            outcome = SyncOutcome(UNCHANGED, f"the Azure alert already was {new_state}")
        else:
            request = HttpRequest(
                "POST",
                f"{self.endpoint}{alert_id}/changestate",
                params={"api-version": API_VERSION, "newState": new_state},
                json={"comments": comment},
            )
            response = self._send(request, "changing the alert's state", alert_id)
            if response.status_code == 200:
                outcome = SyncOutcome(CHANGED, f"set the Azure alert to {new_state}")
            else:
                outcome = self._final(response, new_state)
        level = logging.INFO if outcome.succeeded else logging.WARNING
        log.log(
            level,
            "alert %s -> %s: %s (%s)",
            quoted(alert_id),
            new_state,
            outcome.result,
            quoted(outcome.reason),
        )
        return outcome


def _alert_state(response: HttpResponse) -> str | None:
    try:
        essentials = response.json()["properties"]["essentials"]
        state = essentials.get("alertState")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None
    return state if state in USER_STATES else None
