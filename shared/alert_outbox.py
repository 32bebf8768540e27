"""The outbox seam between a person's change and the Azure alert sync (docs/alert-sync.md).

The PATCH commits its change and an outbox record in one transaction (shared/store/people.py),
after writing the record's row in the outbox index (`before_commit`); `flush` then queues the
record's messages, shows the alerts pending and deletes the record and its index row.
A failure leaves the record for the repair: the timer `repair_alert_sync` (`run`) flushes the
items whose index rows are older than REPAIR_AFTER_S, a bounded batch a run; the item's next
PATCH flushes every unsent record, and a read of the item's detail those older than
REPAIR_AFTER_S. Sending twice is harmless: the sync function skips repeats and stale seqs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from azure.core.exceptions import AzureError

from shared import alert_sync, store
from shared.alert_outbox_index import InFlight, OutboxIndex
from shared.alert_sync_plan import InvalidSyncMessage, SyncRequest
from shared.alert_sync_results import TableSyncResults
from shared.config import Settings, StorageSettings, get_settings
from shared.log_text import get_logger
from shared.store import WorkItemStore

log = get_logger(__name__)

REPAIR_AFTER_S = 60  # a record this old was left by a PATCH that failed (or died) to send it
REPAIR_BATCH = 50  # index rows one timer run looks at (oldest first; the next run goes on)
# An index row this old without its record belongs to a transaction that failed: a commit
# is one storage request, which the service ends within 30 s, long before this.
ORPHAN_AFTER_S = 15 * 60


def flush(
    settings: Settings,
    items: WorkItemStore,
    item_id: str,
    older_than_s: float = 0,
    now: float | None = None,
) -> int:
    """Queue the item's unsent sync messages; how many records were sent. Never raises:
    the caller's answer does not depend on Azure or on the queue (failures are logged)."""
    if not settings.alert_sync.enabled:
        return 0
    sent = 0
    try:
        cutoff = int(((time.time() if now is None else now) - older_than_s) * 1_000_000)
        for record in items.outbox(item_id):
            if record.at > cutoff:
                continue
            alert_sync.send(settings, record.messages)
            _mark_pending(settings, record.messages)
            items.outbox_sent(record)
            _index(settings.storage).remove(InFlight(record.item_id, record.seq, record.at))
            sent += 1
    except (AzureError, ValueError) as exc:
        log.warning(
            "work item %s: alert sync messages not queued yet (%s); the outbox resends them",
            item_id,
            type(exc).__name__,
        )
    return sent


def before_commit(settings: Settings) -> Callable[[str, int, int], None]:
    """The store's `before_outbox`: the record's index row, written before its commit."""
    index = _index(settings.storage)
    return lambda item_id, seq, at: index.add(InFlight(item_id, seq, at))


@dataclass
class Repaired:
    examined: int = 0  # index rows looked at
    sent: int = 0  # outbox records queued
    removed: int = 0  # index rows of transactions that never committed


def repair(settings: Settings, items: WorkItemStore, now: float | None = None) -> Repaired:
    """Queue what PATCHes left unsent: the items of the oldest index rows older than
    REPAIR_AFTER_S (at most REPAIR_BATCH), and forget rows that point at no record."""
    out = Repaired()
    if not settings.alert_sync.enabled:
        return out
    now_us = int((time.time() if now is None else now) * 1_000_000)
    index = _index(settings.storage)
    due = index.oldest(now_us - REPAIR_AFTER_S * 1_000_000, REPAIR_BATCH)
    out.examined = len(due)
    for item_id in dict.fromkeys(d.item_id for d in due):
        out.sent += flush(settings, items, item_id, REPAIR_AFTER_S, now)
    orphan_before = now_us - ORPHAN_AFTER_S * 1_000_000
    unsent: dict[str, set[int]] = {}
    for d in due:
        if d.at >= orphan_before:
            continue  # its transaction may still commit, or its PATCH still send
        try:
            if d.item_id not in unsent:
                unsent[d.item_id] = {r.seq for r in items.outbox(d.item_id)}
            if d.seq not in unsent[d.item_id]:
                index.remove(d)
                out.removed += 1
        except AzureError as exc:  # the next run looks again
            log.warning("outbox repair: work item %s skipped (%s)", d.item_id, type(exc).__name__)
    if out.examined:
        log.info(
            "outbox repair: %d index rows examined, %d records queued, %d rows removed",
            out.examined,
            out.sent,
            out.removed,
        )
    return out


def run() -> Repaired:
    """The timer's work (function_app.repair_alert_sync)."""
    settings = get_settings()
    return repair(settings, store.store_for(settings))


@cache
def _index(storage_settings: StorageSettings) -> OutboxIndex:
    return OutboxIndex(storage_settings)


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


def forget(settings: Settings, item_id: str) -> None:
    """Delete the item's sync statuses (retention, before the item row goes). A storage
    error propagates: the retention run stops and the next one deletes them."""
    _results(settings.storage).forget(item_id)


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
