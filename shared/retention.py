"""The retention timer's work: delete what RETENTION_DAYS says is old enough.

Resolved and Closed work items whose last change (alert or person) is older than
RETENTION_DAYS go, with their history, timeline, bindings, index rows, alert sync
statuses and claim-check blobs (shared/store/retention.py decides and deletes the rows).
A run is bounded and can be interrupted anywhere: the next one finishes what it left. Open
items are never deleted.
Blobs a run could not delete are caught by the storage account's lifecycle rule (infra/).
"""

from __future__ import annotations

import time

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared import alert_outbox, storage, store
from shared.config import get_settings
from shared.log_text import get_logger

log = get_logger(__name__)

DAY = 86_400_000_000  # µs


def run(now: float | None = None) -> store.Purged:
    settings = get_settings()
    cutoff = int((time.time() if now is None else now) * 1_000_000) - settings.retention_days * DAY
    purged = store.store_for(settings).purge_expired(
        cutoff, forget=lambda item_id: alert_outbox.forget(settings, item_id)
    )
    failed = 0
    for path in purged.blobs:
        container, _, name = path.partition("/")
        try:
            storage.blob_client(settings.storage, container, name).delete_blob()
        except ResourceNotFoundError:
            continue
        except AzureError as exc:  # the lifecycle rule deletes it later
            failed += 1
            log.warning("retention: blob %s not deleted: %s", name[:200], exc)
    log.info(
        "retention: %d work items deleted (older than %d days), %d blobs (%d failed), "
        "%d index rows examined, %s",
        len(purged.items),
        settings.retention_days,
        len(purged.blobs) - failed,
        failed,
        purged.examined,
        "done" if purged.complete else "more next run",
    )
    return purged
