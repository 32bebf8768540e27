"""Which work items have an alert sync outbox record in flight: the repair timer's index.

    alertsync  PK = "outbox"   RK = <when, µs, 17 digits>|<item id>|<seq, 12 digits>

Outbox records live in their items' partitions (shared/store/people.py), where nothing but
a scan of every partition could find them all. So a PATCH writes this row just before the
transaction that creates a record (the record's `at` and `seq` name it), and the outbox
deletes it once the record was queued: the partition holds only what is in flight. Rows
sort oldest first, so the timer reads the oldest few with one range query of one
partition, however large the table grows. (`alertsync`'s other partitions are work item
ids, `WI-…`: no clash.)
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared import storage, table_keys
from shared.config import ALERT_SYNC_TABLE, StorageSettings

PARTITION = "outbox"


@dataclass(frozen=True)
class InFlight:
    """An outbox record that may not be queued yet: its item, change seq and time (µs)."""

    item_id: str
    seq: int
    at: int

    @property
    def row_key(self) -> str:
        return f"{max(0, self.at):017d}|{self.item_id}|{self.seq:012d}"

    @classmethod
    def of_row_key(cls, row_key: str) -> InFlight | None:
        parts = row_key.split("|")
        if len(parts) != 3 or not (parts[0].isdigit() and parts[2].isdigit()):
            return None
        if not table_keys.is_item_id(parts[1]):
            return None
        return cls(parts[1], int(parts[2]), int(parts[0]))


class OutboxIndex:
    def __init__(self, settings: StorageSettings) -> None:
        self._table: TableClient = storage.table_client(settings, ALERT_SYNC_TABLE)

    def add(self, record: InFlight) -> None:
        entity = {"PartitionKey": PARTITION, "RowKey": record.row_key, "itemId": record.item_id}
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def remove(self, record: InFlight) -> None:
        with contextlib.suppress(ResourceNotFoundError):  # gone already, or no table
            self._table.delete_entity(PARTITION, record.row_key)

    def oldest(self, before: int, limit: int) -> list[InFlight]:
        """At most `limit` rows written before `before` (µs), oldest first."""
        flt = f"PartitionKey eq '{PARTITION}' and RowKey lt '{max(0, before):017d}'"
        try:
            rows = list(
                itertools.islice(
                    self._table.query_entities(flt, results_per_page=limit, select=["RowKey"]),
                    limit,
                )
            )
        except ResourceNotFoundError:
            return []
        found = (InFlight.of_row_key(str(r["RowKey"])) for r in rows)
        return [f for f in found if f is not None]
