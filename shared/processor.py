"""The queue trigger's work: one `alerts` message in, its work item effects durable out.

Failure handling, as the Functions host sees it:
- a transient storage fault raises AzureError: the host makes the message visible again
  and retries it (effects are idempotent per event, so a partial first attempt is fine);
- a message that can never succeed (unknown major schema version, broken claim-check
  pointer, no alert id, a write Table Storage refuses for good: 400 or 413) raises
  PermanentAlertError on every attempt, with an error log naming the alert id, the work
  item if known and the reason, until the host moves it to `alerts-poison`.
"""

from __future__ import annotations

import json
from typing import Any

from shared import alert_queue, store, workitem_rows
from shared.alert_events import InvalidAlert, event_from_alert
from shared.config import POISON_QUEUE, get_settings
from shared.log_text import get_logger, redacted

log = get_logger(__name__)


class PermanentAlertError(Exception):
    """This message will fail the same way on every attempt; it belongs in the poison queue."""


def _cannot_store(
    alert_id: str, group: str, message_id: str | None, attempt: int, exc: store.WriteRefused
) -> None:
    log.error(
        "alert %s (work item %s, group %s, message %s, attempt %d) cannot be stored: %s; "
        "it goes to %s once the host gives up, and scripts/replay_poison.py replays it "
        "once fixed",
        alert_id[:300],
        ", ".join(exc.item_ids) or "-",
        group[:200],
        message_id,
        attempt,
        exc.reason[:500],
        POISON_QUEUE,
    )


def _alert_id_hint(text: str) -> str:
    """The alert id, if the message says, for logging a message we cannot decode."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return "<unknown: not JSON>"
    if isinstance(message, dict):
        alert = message.get("alert")
        found: Any = alert.get("alertId") if isinstance(alert, dict) else message.get("alertId")
        if isinstance(found, str):
            return found[:300]
    return "<unknown>"


def handle(text: str, dequeue_count: int, message_id: str | None) -> None:
    """Apply one queued alert to its work item; raise to have the host retry it."""
    settings = get_settings()
    try:
        queued = alert_queue.decode(settings.storage, text)
        event = event_from_alert(queued.alert, settings.correlation_mode)
    except (alert_queue.CorruptMessage, InvalidAlert) as exc:
        alert_id = _alert_id_hint(text)
        log.error(
            "alert %s cannot be processed (attempt %d, message %s): %s; it will end in %s",
            alert_id,
            dequeue_count,
            message_id,
            exc,
            POISON_QUEUE,
        )
        raise PermanentAlertError(redacted(f"alert {alert_id}: {exc}")) from exc

    def facts() -> dict[str, Any]:
        # The raw payload stays reachable: in the history entry, or in a blob if too big.
        envelope = alert_queue.deflated(queued)
        if envelope is not None:
            return workitem_rows.event_facts(
                queued.alert, event, None, envelope.sha256, message_id, payload=envelope.data
            )
        ref = alert_queue.ensure_stored(settings.storage, queued)
        return workitem_rows.event_facts(
            queued.alert, event, f"{ref.container}/{ref.blob}", ref.sha256, message_id
        )

    try:
        result = store.store_for(settings).apply(event, facts)
    except store.WriteRefused as exc:  # Table Storage refused it for good (400, 413)
        _cannot_store(event.alert_id, event.group.key, message_id, dequeue_count, exc)
        raise PermanentAlertError(f"alert {event.alert_id[:300]}: {exc.reason}") from exc
    except (store.ContentionError, store.StoreInconsistent) as exc:
        log.error(
            "alert %s (message %s, attempt %d) not applied, the host will retry it: %s",
            event.alert_id,
            message_id,
            dequeue_count,
            exc,
        )
        raise
    log.info(
        "alert %s %s -> %s: %s (group %s, attempt %d of the store, dequeue %d)",
        event.alert_id,
        event.condition,
        ", ".join(result.item_ids) or "-",
        result.outcome,
        result.group.kind,
        result.attempts,
        dequeue_count,
    )
