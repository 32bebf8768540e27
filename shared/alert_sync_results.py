"""Each alert's sync status within a work item: the `alertsync` table.

    alertsync  PK = work item id    RK = a|<hash of the lowercased alert id>

One row per alert the item asked to sync (at most alert_sync_plan.MAX_ALERTS_PER_ITEM), so
an item's statuses are one bounded partition query however old the item gets. Every write
is conditional on the row's ETag: the lease in `claim` is what keeps one call per alert in
flight (alert_sync_plan.decide).

`SyncResults` is the seam for the work item store: it may keep these rows in the item's
own partition later, behind the same four methods.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import storage, table_keys
from shared.alert_sync_plan import MAX_ALERTS_PER_ITEM, PENDING, SyncRow
from shared.config import ALERT_SYNC_TABLE, StorageSettings

ROW_PREFIX = "a|"
_ALERT_KEY_CHARS = 26  # 130 bits


def row_key(alert_id: str) -> str:
    return ROW_PREFIX + table_keys.digest(alert_id.lower(), _ALERT_KEY_CHARS)


class SyncResults(Protocol):
    """Where the sync function reads and writes each alert's sync status."""

    def load(self, item_id: str, alert_id: str) -> tuple[SyncRow | None, str | None]:
        """The row and its ETag (None, None when there is none yet)."""
        ...

    def claim(self, item_id: str, alert_id: str, row: SyncRow, etag: str | None) -> str | None:
        """Write `row` if the stored one still has `etag` (absent when None); its new ETag,
        or None when another writer got there first."""
        ...

    def record(self, item_id: str, alert_id: str, row: SyncRow, etag: str) -> bool:
        """Write the outcome over our claim; False if the claim was taken over meanwhile."""
        ...

    def for_item(self, item_id: str) -> list[dict[str, Any]]:
        """Every alert's sync status for the item's detail, bounded."""
        ...


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _entity(item_id: str, alert_id: str, row: SyncRow) -> dict[str, Any]:
    return {
        "PartitionKey": item_id,
        "RowKey": row_key(alert_id),
        "alertId": alert_id,
        "seq": row.seq,
        "status": row.status,
        "targetState": row.target_state,
        "leaseUntil": float(row.lease_until),
        "reason": row.reason,
        "updatedAt": _now_iso(),
    }


def _row(entity: Any) -> SyncRow:
    return SyncRow(
        seq=int(entity["seq"]),
        status=str(entity["status"]),
        target_state=str(entity["targetState"]),
        lease_until=float(entity.get("leaseUntil") or 0.0),
        reason=str(entity.get("reason") or ""),
    )


def _etag(entity_or_metadata: Any) -> str:
    meta = getattr(entity_or_metadata, "metadata", entity_or_metadata)
    return str(meta["etag"])


class TableSyncResults:
    def __init__(self, settings: StorageSettings) -> None:
        self._table: TableClient = storage.table_client(settings, ALERT_SYNC_TABLE)

    def _create_table(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._table.create_table()

    def load(self, item_id: str, alert_id: str) -> tuple[SyncRow | None, str | None]:
        try:
            entity = self._table.get_entity(item_id, row_key(alert_id))
        except ResourceNotFoundError:
            return None, None
        return _row(entity), _etag(entity)

    def claim(self, item_id: str, alert_id: str, row: SyncRow, etag: str | None) -> str | None:
        entity = _entity(item_id, alert_id, row)
        try:
            if etag is None:
                try:
                    meta = self._table.create_entity(entity)
                except ResourceNotFoundError:
                    self._create_table()
                    meta = self._table.create_entity(entity)
            else:
                meta = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):  # deleted or changed since we read it
                return None
            raise
        return _etag(meta)

    def record(self, item_id: str, alert_id: str, row: SyncRow, etag: str) -> bool:
        return self.claim(item_id, alert_id, row, etag) is not None

    def mark_pending(self, item_id: str, alert_id: str, seq: int, target_state: str) -> bool:
        """Show a queued sync as pending (the outbox's side): only over an older, unleased
        row, so it never breaks the lease of a sync in flight. False if it left it alone."""
        row, etag = self.load(item_id, alert_id)
        if row is not None and (row.seq >= seq or row.lease_until > time.time()):
            return False
        return (
            self.claim(item_id, alert_id, SyncRow(seq, PENDING, target_state, 0.0), etag)
            is not None
        )

    def forget(self, item_id: str) -> None:
        """Delete every status row of the item: one partition, at most MAX_ALERTS_PER_ITEM
        rows, in transactions of 100. Rows gone already (an earlier run) are fine."""
        try:
            keys = [
                str(e["RowKey"])
                for e in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": item_id}, select=["RowKey"]
                )
            ]
        except ResourceNotFoundError:  # no table yet: nothing was ever synced
            return
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            try:
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": item_id, "RowKey": key}) for key in chunk]
                )
            except TableTransactionError:  # a row went meanwhile: one by one
                for key in chunk:
                    self._table.delete_entity(item_id, key)  # no error if it is gone

    def for_item(self, item_id: str) -> list[dict[str, Any]]:
        try:
            entities = self._table.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": item_id},
                results_per_page=MAX_ALERTS_PER_ITEM,
            )
            rows = []
            for entity in entities:
                rows.append(
                    {
                        "alertId": entity["alertId"],
                        **_row(entity).to_view(),
                        "updatedAt": entity.get("updatedAt"),
                    }
                )
                if len(rows) >= MAX_ALERTS_PER_ITEM:
                    break
        except ResourceNotFoundError:
            return []
        return rows
