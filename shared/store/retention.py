"""Retention: deleting resolved and closed work items older than RETENTION_DAYS.

docs/operations.md, "Retention". Each run examines a bounded number of index rows and
deletes a bounded number of items and of history entries (an item of a long life may take
several runs), oldest fired month first, and can stop anywhere: rows
go in an order that leaves every interrupted deletion findable by the next run (history,
timeline and bindings first, the item row after them, its index rows last; a group's root
after its items). Open items are never deleted, and neither is an item its group's state
can still change: a live group is deleted whole, only once all its items are finished and
expired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared import table_keys, workitem_index
from shared.alert_events import to_micros
from shared.store.base import MAX_TRANSACTION_OPS, _parallel
from shared.store.people import _People
from shared.workitem_index import INDEX_TABLE
from shared.workitems import CLOSED, STATE_RESOLVED, derive

FINISHED = (STATE_RESOLVED, CLOSED)
MAX_EXAMINED = 2_000  # index rows one run looks at
MAX_DELETED = 200  # items one run deletes
# History entries (with their timeline rows) one run deletes: an item that lived for months
# has tens of thousands, so one item may take several runs; its item row goes last.
MAX_ENTRIES = 20_000
ENTRY_PAGE = 500  # entries read (timeline page) and deleted at a time


@dataclass
class Purged:
    items: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)  # "container/name" of claim-check blobs
    examined: int = 0
    entries: int = 0  # history entries deleted
    entries_left: int = MAX_ENTRIES  # the run's entry bound, counting down
    complete: bool = True  # False: a bound stopped the run; the next one goes on


def expired(item: Mapping[str, Any], cutoff: int) -> bool:
    """Finished, and nothing happened to it (alert or person) since the cutoff."""
    if item.get("state") not in FINISHED:
        return False
    times = [to_micros(item.get(name)) for name in ("resolvedAt", "lastEventAt", "lastManualAt")]
    known = [t for t in times if t is not None]
    return bool(known) and max(known) < cutoff and to_micros(item.get("resolvedAt")) is not None


class _Retention(_People):
    """The store's retention part (shared.store.WorkItemStore combines them)."""

    def purge_expired(
        self,
        cutoff: int,
        max_examined: int = MAX_EXAMINED,
        max_deleted: int = MAX_DELETED,
        forget: Callable[[str], None] = lambda _item_id: None,
        max_entries: int = MAX_ENTRIES,
    ) -> Purged:
        """Delete finished items whose last change is older than `cutoff` (µs).

        `forget(item_id)` deletes what other modules keep about an item outside this store
        (its alerts' sync statuses); it runs before the item row goes, so an interrupted
        run leaves the item findable and the next one calls it again."""
        out = Purged(entries_left=max_entries)
        last_month = workitem_index.month_of(cutoff)
        for scope, month in sorted(m for m in self._months() if m[1] <= last_month):
            pk = workitem_index.month_partition(scope, month)
            flt = f"PartitionKey eq '{pk}' and " + table_keys.prefix_filter(
                workitem_index.MONTH_ROW_PREFIX
            )

            def rows(t: TableClient, flt: str = flt) -> Iterable[Any]:
                return t.query_entities(flt, select=["PartitionKey", "RowKey", "itemId"])

            for row in self._call(INDEX_TABLE, rows):
                if out.examined >= max_examined or len(out.items) >= max_deleted:
                    out.complete = False
                    return out
                out.examined += 1
                item_id = str(row.get("itemId") or "")
                item = self.get_item(item_id) if table_keys.is_item_id(item_id) else None
                if item is None:  # its item is gone: an interrupted deletion's last step
                    self._delete_quietly(INDEX_TABLE, [(pk, str(row["RowKey"]))])
                    continue
                if expired(item, cutoff) and not self._purge(item, cutoff, out, forget):
                    out.complete = False  # the entry bound: the next run goes on with it
                    return out
        return out

    def _purge(
        self, item: Mapping[str, Any], cutoff: int, out: Purged, forget: Callable[[str], None]
    ) -> bool:
        """False when the entry bound stopped it part way (what is left stays findable)."""
        root = self._read_state(str(item["group"]))
        derived = derive(root.state, self.policy) if root is not None else None
        if derived is None or str(item["id"]) not in derived.items:
            return self._purge_item(item, out, forget)  # archived: no state refers to it
        items = [self.get_item(i) for i in sorted(derived.items)]
        if not all(i is None or expired(i, cutoff) for i in items):
            return True  # its group can still change it: wait until every item has expired
        assert root is not None
        group = root.state.group
        for other in items:
            if other is not None and not self._purge_item(other, out, forget):
                return False
        self._forget_root(group)
        short = group.hash[: table_keys.GROUP_CHARS]
        hidden = self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{group.partition}' and "
            + table_keys.prefix_filter(f"{table_keys.HIDDEN_PREFIX}{short}|"),
        )
        state = self._query(table_keys.WORKITEMS_TABLE, table_keys.root_range(group.hash))
        root_key = table_keys.root_row(group.hash)
        keys = [(group.partition, str(r["RowKey"])) for r in [*hidden, *state]]
        keys.sort(key=lambda k: k[1] == root_key)  # the root last
        self._delete_quietly(table_keys.WORKITEMS_TABLE, keys)
        bindings = [
            (table_keys.ci_partition(c.key, group.tenant), f"{table_keys.CI_ITEM_PREFIX}{short}")
            for c in root.state.cis
        ]
        self._delete_quietly(table_keys.CMDB_TABLE, bindings)
        return True

    def _purge_item(
        self, item: Mapping[str, Any], out: Purged, forget: Callable[[str], None]
    ) -> bool:
        """Delete one item, its entries a page at a time: False when the entry bound
        stopped it, with its item row and index rows still there to find it by."""
        item_id = str(item["id"])
        pk = table_keys.item_partition(item_id)
        while True:
            if out.entries_left <= 0:
                return False
            if not self._purge_entries(item, out):
                break
        bindings = self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{pk}' and "
            + table_keys.prefix_filter(table_keys.binding_prefix(item_id)),
        )
        # Alert sync outbox records not sent yet (docs/alert-sync.md): the item is gone.
        outbox = self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{pk}' and "
            + table_keys.prefix_filter(table_keys.outbox_prefix(item_id)),
        )
        keys = [(pk, str(r["RowKey"])) for r in [*bindings, *outbox]]
        self._delete_quietly(table_keys.WORKITEMS_TABLE, keys)
        forget(item_id)
        self._delete_quietly(table_keys.WORKITEMS_TABLE, [(pk, table_keys.item_row(item_id))])
        fired = to_micros(item.get("firedAt"))
        if fired is not None:
            key = workitem_index.sort_key(fired, item_id)
            scope = workitem_index.tenant_scope(str(item.get("tenantId") or ""))
            month = workitem_index.month_partition(scope, workitem_index.month_of(fired))
            index = [
                (month, workitem_index.MONTH_ROW_PREFIX + key),
                (month, workitem_index.OPEN_ROW_PREFIX + key),
            ]
            self._delete_quietly(INDEX_TABLE, index)
            ci_rows = [
                (str(b.get("ciPartition")), workitem_index.CI_ITEMS_ROW_PREFIX + key)
                for b in bindings
                if b.get("ciPartition")
            ]
            self._delete_quietly(table_keys.CMDB_TABLE, ci_rows)
        out.items.append(item_id)
        return True

    def _purge_entries(self, item: Mapping[str, Any], out: Purged) -> bool:
        """Delete the item's next page of history entries (their claim-check blobs go to
        `out.blobs`), each before its timeline row, by which a later run finds the rest.
        False when there were none left."""
        item_id, group = str(item["id"]), str(item["group"])
        pk = table_keys.item_partition(item_id)
        size = min(ENTRY_PAGE, out.entries_left)
        flt = f"PartitionKey eq '{pk}' and " + table_keys.prefix_filter(
            table_keys.timeline_prefix(item_id)
        )

        def page(t: TableClient) -> list[Any]:
            rows = t.query_entities(flt, select=["RowKey", "entryId"], results_per_page=size)
            return list(islice(rows, size))  # the first page only

        timeline = self._call(table_keys.WORKITEMS_TABLE, page)
        if not timeline:
            return False
        entries = [table_keys.history_row(group, str(r.get("entryId"))) for r in timeline]

        def blob_of(rk: str) -> str:
            def get(t: TableClient) -> str:
                try:
                    found = t.get_entity(pk, rk, select=["payloadBlob"])
                except ResourceNotFoundError:
                    return ""
                return str(found.get("payloadBlob") or "")

            return self._call(table_keys.WORKITEMS_TABLE, get)

        out.blobs.extend(b for b in _parallel(blob_of, entries) if b)
        keys = [(pk, rk) for rk in entries] + [(pk, str(r["RowKey"])) for r in timeline]
        self._delete_quietly(table_keys.WORKITEMS_TABLE, keys)
        out.entries += len(timeline)
        out.entries_left -= len(timeline)
        return True

    def _delete_quietly(self, table: str, keys: list[tuple[str, str]]) -> None:
        """Delete rows that may be gone already: a transaction per partition and 100 rows,
        one by one when a row of it is missing (an earlier run deleted it)."""
        by_partition: dict[str, list[str]] = {}
        for pk, rk in keys:
            by_partition.setdefault(pk, []).append(rk)
        for pk, rks in by_partition.items():
            for start in range(0, len(rks), MAX_TRANSACTION_OPS):
                chunk = rks[start : start + MAX_TRANSACTION_OPS]
                ops = [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in chunk]
                try:
                    self._submit(table, ops)
                except HttpResponseError as exc:
                    if exc.status_code != 404:
                        raise
                    for op in ops:
                        try:
                            self._submit(table, [op])
                        except ResourceNotFoundError:
                            continue
