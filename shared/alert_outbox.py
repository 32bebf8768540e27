"""The outbox seam between a person's change and the Azure alert sync (docs/alert-sync.md).

The PATCH commits its change and an outbox record in one transaction (shared/store/people.py);
`flush` then queues the record's messages, shows the alerts pending and deletes the record.
A failure leaves the record for the repair: the item's next PATCH flushes every unsent record,
and a read of the item's detail flushes those older than REPAIR_AFTER_S. Sending twice is
harmless: the sync function skips repeats and stale seqs.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from azure.core.exceptions import AzureError

from shared import alert_sync
from shared.alert_sync_plan import InvalidSyncMessage, SyncRequest
from shared.alert_sync_results import TableSyncResults
from shared.config import Settings, StorageSettings
from shared.log_text import get_logger
from shared.store import WorkItemStore

log = get_logger(__name__)

REPAIR_AFTER_S = 60  # a record this old was left by a PATCH that failed (or died) to send it


def flush(settings: Settings, store: WorkItemStore, item_id: str, older_than_s: float = 0) -> int:
    """Queue the item's unsent sync messages; how many records were sent. Never raises:
    the caller's answer does not depend on Azure or on the queue (failures are logged)."""
    if not settings.alert_sync.enabled:
        return 0
    sent = 0
    try:
        cutoff = int((time.time() - older_than_s) * 1_000_000)
        for record in store.outbox(item_id):
            if record.at > cutoff:
                continue
            alert_sync.send(settings, record.messages)
            _mark_pending(settings, record.messages)
            store.outbox_sent(record)
            sent += 1
    except (AzureError, ValueError) as exc:
        log.warning(
            "work item %s: alert sync messages not queued yet (%s); the outbox resends them",
            item_id,
            type(exc).__name__,
        )
    return sent


@cache
def _results(storage_settings: StorageSettings) -> TableSyncResults:
    return TableSyncResults(storage_settings)


def statuses(settings: Settings, item_id: str) -> list[dict[str, Any]]:
    """Each alert's sync status for the item's detail (pending / done / failed, reason)."""
    try:
        return _results(settings.storage).for_item(item_id)
    except AzureError as exc:  # the detail still answers; the statuses show next time
        log.warning(
            "work item %s: alert sync statuses unreadable (%s)", item_id, type(exc).__name__
        )
        return []


def _mark_pending(settings: Settings, messages: list[str]) -> None:
    """Best effort: the item's detail shows *pending* before the sync function runs."""
    results = _results(settings.storage)
    for text in messages:
        try:
            request = SyncRequest.from_message(text)
        except InvalidSyncMessage:
            continue
        for alert_id in request.alert_ids:
            results.mark_pending(request.item_id, alert_id, request.seq, request.target_state)
