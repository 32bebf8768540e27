"""The `alert-state-sync` queue: a person's state change carried to the Azure alerts.

Producer side (the outbox, wired by the work item store): `plan_messages` turns a
committed `StateChange` into messages; `send` queues them. Consumer side: `handle`, called
by the queue-triggered function `sync_alert_state`, sets each alert's user state with the
app's identity and records every alert's outcome through `SyncResults`.

Failure handling, as the Functions host sees it:
- a message that can never be carried out (bad JSON, not an alert id) raises
  PermanentSyncError on every attempt and ends in `alert-state-sync-poison`;
- 404 (the alert is gone) and 403 (no permission) are final: recorded as failed with the
  reason (the alert's status, and an entry in the item's history), logged with the alert
  id, never retried;
- 429, 5xx and timeouts raise SyncRetryLater, so the host delivers the message again; on
  the last attempt (MAX_ATTEMPTS, host.json's maxDequeueCount) the alerts still open are
  recorded as failed instead, so nothing is retried forever and no other message waits;
- an alert whose previous sync is still in flight is looked at again BUSY_RECHECK_S later,
  in a fresh message (waiting is not failing: it uses up no attempt).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cache

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from shared import storage, store
from shared.alert_sync_plan import (
    DONE,
    FAILED,
    PENDING,
    Decision,
    InvalidSyncMessage,
    StateChange,
    SyncRequest,
    SyncRow,
    decide,
    plan,
)
from shared.alert_sync_results import SyncResults, TableSyncResults
from shared.azure_alerts import AlertsClient, SyncOutcome, TransientArmError
from shared.config import (
    ALERT_SYNC_POISON_QUEUE,
    ALERT_SYNC_QUEUE,
    Settings,
    StorageSettings,
    get_settings,
)
from shared.log_text import get_logger, quoted

log = get_logger(__name__)

MAX_ATTEMPTS = 5  # host.json extensions.queues.maxDequeueCount (a test holds them together)
# A claim's lease: longer than one alert's calls can take (a GET and a POST, each bounded
# by AlertsClient's 45 s attempt timeout), so a lease only lapses when its holder crashed.
LEASE_S = 120.0
# How soon a sync that found another one in flight for the same alert looks again.
BUSY_RECHECK_S = 3


class PermanentSyncError(Exception):
    """This message will fail the same way on every attempt; it belongs in the poison queue."""


class SyncRetryLater(Exception):
    """Some alerts could not be synced now; the host delivers the message again."""


# -- producer: the outbox seam ------------------------------------------------------------


def plan_messages(change: StateChange) -> list[str]:
    """The queue messages for a committed state change (none for Azure Monitor's own)."""
    return [request.to_message() for request in plan(change).requests]


def send(settings: Settings, messages: list[str], delay_s: int = 0) -> None:
    """Queue sync messages (visible after `delay_s`); AzureError propagates (the outbox's
    repair path resends)."""
    queue = storage.queue_client(settings.storage, ALERT_SYNC_QUEUE)
    for text in messages:
        try:
            queue.send_message(text, visibility_timeout=delay_s or None)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(text, visibility_timeout=delay_s or None)


# -- consumer: the sync function ----------------------------------------------------------


@cache
def _client(endpoint: str, storage_settings: StorageSettings) -> AlertsClient:
    return AlertsClient(endpoint, storage.credential(storage_settings))


@cache
def _results(storage_settings: StorageSettings) -> TableSyncResults:
    return TableSyncResults(storage_settings)


class _Busy(Exception):
    """Another sync of this alert holds its lease, or took it while we read."""


def _finish(
    results: SyncResults,
    request: SyncRequest,
    alert_id: str,
    status: str,
    reason: str,
    etag: str,
) -> None:
    row = SyncRow(request.seq, status, request.target_state, 0.0, reason)
    if not results.record(request.item_id, alert_id, row, etag):
        log.warning(
            "alert %s, item %s: sync %d's outcome not recorded, a newer one took over",
            quoted(alert_id),
            request.item_id,
            request.seq,
        )


def sync_one(
    results: SyncResults,
    client: AlertsClient,
    request: SyncRequest,
    alert_id: str,
    now: Callable[[], float] = time.time,
) -> SyncOutcome | Decision:
    """One alert: claim it, change its state, record the outcome.

    Raises TransientArmError (the claim released, so the retry may claim at once) or _Busy.
    """
    row, etag = results.load(request.item_id, alert_id)
    decision = decide(row, request.seq, now())
    if decision in (Decision.STALE, Decision.DUPLICATE):
        log.info(
            "alert %s, item %s: sync %d skipped (%s; recorded seq %s)",
            quoted(alert_id),
            request.item_id,
            request.seq,
            decision.value,
            row.seq if row else "-",
        )
        return decision
    if decision is Decision.WAIT:
        raise _Busy(f"alert {alert_id}: sync {row.seq if row else '-'} in flight")
    claim = SyncRow(request.seq, PENDING, request.target_state, now() + LEASE_S)
    claimed = results.claim(request.item_id, alert_id, claim, etag)
    if claimed is None:
        raise _Busy(f"alert {alert_id}: claimed by another sync meanwhile")
    try:
        outcome = client.change_state(alert_id, request.target_state, request.comment)
    except TransientArmError as exc:
        released = SyncRow(request.seq, PENDING, request.target_state, 0.0, str(exc))
        results.record(request.item_id, alert_id, released, claimed)
        raise
    _finish(
        results, request, alert_id, DONE if outcome.succeeded else FAILED, outcome.reason, claimed
    )
    return outcome


def give_up(results: SyncResults, request: SyncRequest, alert_id: str, reason: str) -> bool:
    """Record the sync as failed for good, unless it ended or a newer one owns the alert
    (False: left alone)."""
    row, etag = results.load(request.item_id, alert_id)
    if row is not None and row.seq > request.seq:
        return False  # a newer change owns this alert now
    if row is not None and row.seq == request.seq and row.status != PENDING:
        return False  # a copy of this message already ended it (done stays done)
    if row is not None and row.status == PENDING and row.lease_until > time.time():
        return False  # the holder will record its own outcome
    failed = SyncRow(request.seq, FAILED, request.target_state, 0.0, reason)
    if results.claim(request.item_id, alert_id, failed, etag) is None:
        return False
    log.error(
        "alert %s, item %s: gave up setting it to %s after %d attempts: %s",
        quoted(alert_id),
        request.item_id,
        request.target_state,
        MAX_ATTEMPTS,
        quoted(reason),
    )
    return True


class _Ended:
    """The first alert of a message that ended done, and the first that failed: what the
    item's history records (shared/store/sync_history.py: one entry per change and outcome)."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, str]] = {}  # status -> (alert id, reason)

    def add(self, status: str, alert_id: str, reason: str) -> None:
        if status in (DONE, FAILED):
            self.first.setdefault(status, (alert_id, reason))

    def add_outcome(
        self, results: SyncResults, request: SyncRequest, alert_id: str, ended: object
    ) -> None:
        if isinstance(ended, SyncOutcome):
            self.add(DONE if ended.succeeded else FAILED, alert_id, ended.reason)
        elif ended is Decision.DUPLICATE:  # a redelivery: record what the first one ended in
            row, _etag = results.load(request.item_id, alert_id)
            if row is not None and row.seq == request.seq:
                self.add(row.status, alert_id, row.reason)

    def record(self, settings: Settings, request: SyncRequest) -> None:
        """Write the entries (AzureError propagates: a redelivery writes them again)."""
        items = store.store_for(settings)
        at = int(time.time() * 1_000_000)
        for status, (alert_id, reason) in sorted(self.first.items()):
            items.add_sync_entry(
                request.item_id, request.seq, status, request.target_state, alert_id, reason, at
            )


def handle(
    text: str,
    dequeue_count: int,
    message_id: str | None,
    *,
    results: SyncResults | None = None,
    client: AlertsClient | None = None,
) -> None:
    """Carry out one sync message; raise to have the host deliver it again."""
    settings = get_settings()
    try:
        request = SyncRequest.from_message(text)
    except InvalidSyncMessage as exc:
        log.error(
            "sync message %s cannot be carried out (attempt %d): %s; it will end in %s",
            message_id,
            dequeue_count,
            exc,
            ALERT_SYNC_POISON_QUEUE,
        )
        raise PermanentSyncError(str(exc)) from exc
    results = results or _results(settings.storage)
    endpoint = settings.alert_sync.arm_endpoint
    off_reason = None
    if not settings.alert_sync.enabled:
        off_reason = "the sync with Azure Monitor is turned off (SYNC_ALERT_STATE=false)"
    elif endpoint is None:
        off_reason = (
            "ARM_ENDPOINT is not set and AAD_AUTHORITY_HOST is not a cloud whose "
            "Resource Manager endpoint is known"
        )
    ended = _Ended()
    if off_reason is not None or endpoint is None:
        for alert_id in request.alert_ids:
            if give_up(results, request, alert_id, off_reason or ""):
                ended.add(FAILED, alert_id, off_reason or "")
        log.warning(
            "item %s: sync %d not carried out: %s", request.item_id, request.seq, off_reason
        )
        _record_history(settings, request, ended, dequeue_count)
        return
    client = client or _client(endpoint, settings.storage)
    retry: dict[str, str] = {}
    busy: list[str] = []
    for alert_id in request.alert_ids:
        try:
            ended.add_outcome(
                results, request, alert_id, sync_one(results, client, request, alert_id)
            )
        except _Busy:
            busy.append(alert_id)
        except TransientArmError as exc:
            retry[alert_id] = str(exc)
        except AzureError as exc:  # our own table: the message comes back
            retry[alert_id] = f"storage: {type(exc).__name__}"
    if retry and dequeue_count >= MAX_ATTEMPTS:
        for alert_id, reason in retry.items():
            reason = f"Azure Resource Manager kept failing: {reason}"
            if give_up(results, request, alert_id, reason):
                ended.add(FAILED, alert_id, reason)
        retry = {}
    _record_history(settings, request, ended, dequeue_count)
    if busy and not retry:
        # Waiting for another sync of the same alert is no failure: it must not use up
        # this message's attempts, or a slow call would make the newer change give up.
        # A later look comes as a fresh message; a lease lapses within LEASE_S, so the
        # looks are bounded.
        later = replace(request, alert_ids=tuple(busy))
        try:
            send(settings, [later.to_message()], BUSY_RECHECK_S)
        except AzureError as exc:
            raise SyncRetryLater(f"could not queue the later look: {exc}") from None
        log.info(
            "item %s: sync %d of %d alert(s) waits for a sync in flight",
            request.item_id,
            request.seq,
            len(busy),
        )
    if not retry:
        return
    log.warning(
        "item %s: sync %d of %d alert(s) will be retried (attempt %d): %s",
        request.item_id,
        request.seq,
        len(retry),
        dequeue_count,
        quoted("; ".join(retry.values())),
    )
    raise SyncRetryLater(f"{len(retry)} alert(s) not synced yet")


def _record_history(
    settings: Settings, request: SyncRequest, ended: _Ended, dequeue_count: int
) -> None:
    """The outcomes in the item's history; a storage failure brings the message back (its
    alerts are then repeats, whose outcomes are written again), except on the last attempt."""
    try:
        ended.record(settings, request)
    except AzureError as exc:
        if dequeue_count < MAX_ATTEMPTS:
            raise SyncRetryLater(f"history not written: {type(exc).__name__}") from None
        log.warning(
            "item %s: sync %d's outcome not written in its history (%s)",
            request.item_id,
            request.seq,
            type(exc).__name__,
        )
