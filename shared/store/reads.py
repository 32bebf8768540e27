"""The work item API's reads: items, history, bindings, CIs and listings (docs/data-model.md,
"Listing algorithm")."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient

from shared import table_keys, workitem_index
from shared.log_text import get_logger
from shared.store.base import ItemNotFound, Page, _int, _is_table_missing, _parallel
from shared.store.cmdb import _Cmdb
from shared.workitem_index import INDEX_TABLE, ItemFilter

log = get_logger(__name__)


# What the API shows of a history entry (shared/api/views.py history_entry): no payload.
HISTORY_COLUMNS = [
    "entryId",
    "eventTime",
    "effect",
    "changes",
    "ignored",
    "actorType",
    "actorOid",
    "actorName",
    "actorAppId",
    "note",
    "alertId",
    "condition",
    "severity",
    "status",
    "title",
    "firedAt",
    "resolvedAt",
    "receivedAt",
    "correlationId",
    "payloadBlob",
]
STALE_INDEX_GRACE_SECONDS = 600  # a row of a missing item younger than this may be in flight


def _month_stream(flt: ItemFilter, month: str) -> str:
    """The logical index partition a listing reads in `month`: open rows, or all items."""
    return workitem_index.OPEN_PARTITION if flt.open_only else workitem_index.month_partition(month)


def _index_row_holds(key: workitem_index.Key, item: Mapping[str, Any] | None) -> bool:
    """Whether the stored item still wants this index row (its key and partition)."""
    if item is None:
        return False
    view = workitem_index.view_of_entity(item)
    if view is None:
        return False
    pk, rk = key
    if rk != workitem_index.sort_key(view.fired_at, view.item_id):
        return False
    if pk == workitem_index.OPEN_PARTITION:
        return view.is_open
    if pk.startswith(workitem_index.MONTH_PREFIX):
        return pk == workitem_index.month_partition(workitem_index.month_of(view.fired_at))
    if pk.startswith(workitem_index.CI_PREFIX):
        return not view.cis_complete or pk[len(workitem_index.CI_PREFIX) :] in view.cis
    return False


class _Reads(_Cmdb):
    """The store's reads part (shared.store.WorkItemStore combines them)."""

    def _query_rows(self, name: str, flt: str, need: int) -> tuple[list[Any], bool, int]:
        """Up to `need` entities matching `flt` in key order, whether more may follow, and
        the requests it took (the service may answer a filtered query in short pages)."""

        def run(t: TableClient) -> tuple[list[Any], bool, int]:
            out: list[Any] = []
            token: Any = None
            requests = 0
            while True:
                pager: Any = t.query_entities(flt, results_per_page=need - len(out)).by_page(
                    continuation_token=token
                )
                out.extend(next(pager, []))
                requests += 1
                token = pager.continuation_token
                if token is None or len(out) >= need:
                    return out[:need], token is not None or len(out) > need, requests

        return self._call(name, run)

    def list_items(self, flt: ItemFilter, top: int, after: str | None) -> Page:
        """Work items matching `flt`, newest fired first, from the indexes (never a scan).

        Open items come from the `open` rows, the items of one CI from its partition,
        anything else from the month rows; `open` and month rows are read one month at a
        time, newest first. The server filters on the rows' flags; every hit is then
        confirmed by a point read of the item, and the whole filter applied to what the item
        says: a stale row costs a read, never a wrong answer (and is repaired when safe).
        """
        now = int(time.time() * 1_000_000)
        stats: Counter[str] = Counter()
        streams: list[tuple[tuple[str, str, str], str]]
        if flt.ci is not None and not flt.open_only:
            ci = workitem_index.ci_partition_key(flt.ci)
            streams = [(workitem_index.stream_location(ci), "ci")]
        else:
            months = self._months()
            stats["requests"] += 1
            kind = "open" if flt.open_only else "month"
            streams = [
                (workitem_index.stream_location(_month_stream(flt, m), m), kind)
                for m in workitem_index.months_between(months, flt, after)
            ]
        found: list[Any] = []
        position = after
        more = False
        stale: list[tuple[workitem_index.Key, Any, Any]] = []
        for n, ((table, stored_pk, prefix), kind) in enumerate(streams):
            more_here = False
            while len(found) < top:
                clauses = [f"PartitionKey eq '{stored_pk}'"]
                clauses += [c for c in (workitem_index.key_range(flt, position, prefix),) if c]
                server = workitem_index.server_filter(flt, stream=kind)
                clauses += [server] if server else []
                rows, more_here, requests = self._query_rows(
                    table, " and ".join(clauses), top - len(found)
                )
                stats["requests"] += requests
                stats["index_rows"] += len(rows)
                if not rows:
                    break
                items = self._read_items([str(r.get("itemId") or "") for r in rows])
                stats["requests"] += len(rows)
                stats["items_read"] += sum(1 for i in items if i is not None)
                for row, item in zip(rows, items, strict=True):
                    key = workitem_index.key_of(table, row)
                    position = key[1]
                    if _index_row_holds(key, item) and flt.matches(item, now):
                        found.append(item)
                    else:
                        stale.append((key, row, item))
                if not more_here:
                    break
            if len(found) >= top:
                more = more_here or n < len(streams) - 1
                break
        if stale:
            stats["stale_rows"] += len(stale)
            stats["repairs"] += sum(1 for done in _parallel(self._repair_index_row, stale) if done)
        return Page(found, position if more else None, stats)

    def _read_items(self, item_ids: Sequence[str]) -> list[Any]:
        def read(item_id: str) -> tuple[str, Any]:
            if not table_keys.is_item_id(item_id):
                return item_id, None
            return item_id, self.get_item(item_id)

        return [item for _, item in _parallel(read, list(item_ids))]

    def _repair_index_row(self, hit: tuple[workitem_index.Key, Any, Any]) -> bool:
        """Fix an index row a reader found stale, when that cannot race a writer.

        A writer stamps the rows it widens with its commit's `seq` before committing, and
        the item with `indexSeq` in the commit. A row whose seq is not above the item's
        indexSeq was written by a commit that is done (or failed for good): the item's
        current rows are known, so the row can be deleted or narrowed, conditionally on
        the ETag the reader saw (a writer touching it since wins). Other rows (a missing
        item, a higher seq) come from a commit that failed or is still in flight: they are
        left alone until they are older than STALE_INDEX_GRACE_SECONDS, far longer than a
        commit takes (its requests time out in seconds).
        """
        key, row, item = hit
        etag = str(row.metadata.get("etag") or "")
        if not etag:
            return False
        seq = _int(row.get("seq"))
        written = row.metadata.get("timestamp")
        old = written is not None and time.time() - written.timestamp() > STALE_INDEX_GRACE_SECONDS
        try:
            if item is None:
                if not old:
                    return False  # a commit creating the item may be in flight
                self._delete_if(key, etag)
                return True
            if seq > _int(item.get("indexSeq")) and not old:
                return False  # written by a commit that may still land: leave it
            view = workitem_index.view_of_entity(item)
            if view is None:
                return False
            wanted = workitem_index.rows(view).get(key)
            if not _index_row_holds(key, item):
                self._delete_if(key, etag)
                return True
            if key[0] == workitem_index.OPEN_PARTITION and not view.cis_complete:
                return False  # its CI list was truncated: the flags cannot be rebuilt here
            if wanted is None or not workitem_index.narrows(dict(row), wanted):
                return False
            self._replace_if(key, {**wanted, "seq": seq}, etag)
            return True
        except AzureError as exc:
            log.info("index row %s/%s not repaired: %s", key[0], key[1], exc)
            return False

    def ci_entity(self, ci_partition: str) -> Any | None:
        """The CMDB entity of a CI by its hash (its id without `CI-`), or None."""
        return self._get(table_keys.CMDB_TABLE, ci_partition, table_keys.CI_ROW)

    def search_cis(
        self,
        query: str | None,
        resource_type: str | None,
        subscription: str | None,
        top: int,
        after: str | None,
    ) -> Page:
        """CIs by name prefix (or one ARM resource id), type and subscription, by name."""
        stats: Counter[str] = Counter()
        if query is not None and query.lower().startswith("/subscriptions/"):
            entity = self.get_ci(query.lower())
            stats["requests"] += 1
            hits = [entity] if entity is not None and after is None else []
            hits = [
                e
                for e in hits
                if (resource_type is None or str(e.get("resourceType")).lower() == resource_type)
                and (subscription is None or str(e.get("subscriptionId")).lower() == subscription)
            ]
            return Page(hits, None, stats)
        clauses = [f"PartitionKey eq '{workitem_index.CI_NAMES_PARTITION}'"]
        prefix = workitem_index.name_prefix_range(query or "")
        clauses += [prefix] if prefix else []
        if resource_type is not None:
            clauses.append(f"resourceType eq '{workitem_index.quote(resource_type)}'")
        if subscription is not None:
            clauses.append(f"subscriptionId eq '{workitem_index.quote(subscription)}'")
        if after is not None:
            clauses.append(f"RowKey gt '{workitem_index.quote(after)}'")
        rows, more, requests = self._query_rows(INDEX_TABLE, " and ".join(clauses), top)
        stats["requests"] += requests + len(rows)
        stats["index_rows"] += len(rows)

        def read(row: Any) -> tuple[Any, Any]:
            return row, self.ci_entity(str(row.get("ci") or ""))

        found = [e for _, e in _parallel(read, rows) if e is not None]
        stats["items_read"] += len(found)
        return Page(found, str(rows[-1]["RowKey"]) if more and rows else None, stats)

    def ci_hashes_named(self, name: str, limit: int = 20) -> list[str]:
        """The CIs whose name is `name` (case-insensitive), from the name index."""
        key = workitem_index.name_key(name)
        if not key:
            return []
        flt = (
            f"PartitionKey eq '{workitem_index.CI_NAMES_PARTITION}' and "
            f"RowKey gt '{workitem_index.quote(key)}|' and "
            f"RowKey lt '{workitem_index.quote(key)}}}'"
        )
        rows, _more, _requests = self._query_rows(INDEX_TABLE, flt, limit)
        return sorted({str(r["ci"]) for r in rows if r.get("ci")})

    def get_item(self, item_id: str) -> Any | None:
        """The work item entity (with `.metadata["etag"]`), or None."""
        item_id = table_keys.normalize_item_id(item_id)
        return self._get(
            table_keys.WORKITEMS_TABLE,
            table_keys.item_partition(item_id),
            table_keys.item_row(item_id),
        )

    def history_page(
        self, item: Mapping[str, Any], top: int, after: str | None = None
    ) -> tuple[list[Any], str | None]:
        """A page of the item's history, newest first, and where the next page starts.

        One query of the item's timeline (pointers, newest first) and one point read per
        entry, of the columns the API shows only: the cost of a page does not depend on how
        many entries the item has, nor on the raw payloads they keep.
        """
        item_id = str(item["id"])
        pk = table_keys.item_partition(item_id)
        prefix = table_keys.timeline_prefix(item_id)
        low = after if after is not None and after.startswith(prefix) else None
        flt = (
            f"PartitionKey eq '{pk}' and RowKey gt '{low}' and RowKey lt '{prefix}~'"
            if low is not None
            else f"PartitionKey eq '{pk}' and " + table_keys.prefix_filter(prefix)
        )

        def first(t: TableClient) -> tuple[list[Any], bool]:
            pages = t.query_entities(
                flt, results_per_page=top + 1, select=["RowKey", "entryId"]
            ).by_page()
            rows: list[Any] = []
            for page in pages:  # a page may come back short: read on up to top + 1
                rows.extend(page)
                if len(rows) > top:
                    break
            return rows[: top + 1], len(rows) > top

        rows, more = self._call(table_keys.WORKITEMS_TABLE, first)
        rows = rows[:top]
        group = str(item["group"])

        def read(row: Any) -> Any | None:
            key = table_keys.history_row(group, str(row.get("entryId")))

            def get(t: TableClient) -> Any | None:
                try:
                    return t.get_entity(pk, key, select=HISTORY_COLUMNS)
                except ResourceNotFoundError as exc:
                    if _is_table_missing(exc):
                        raise
                    return None

            return self._call(table_keys.WORKITEMS_TABLE, get)

        entries = [e for e in _parallel(read, rows) if e is not None]
        return entries, (str(rows[-1]["RowKey"]) if more and rows else None)

    def event_payload(self, item_id: str, event_id: str) -> tuple[bytes | None, str | None]:
        """An alert event's raw payload, as its history entry keeps it: the deflated
        envelope, or the blob holding it ("container/name"). (None, None): no such event of
        this item, or no payload."""
        item = self.get_item(item_id)
        if item is None:
            raise ItemNotFound(item_id)
        pk = table_keys.item_partition(str(item["id"]))
        key = table_keys.history_row(str(item["group"]), event_id)

        def get(t: TableClient) -> Any | None:
            try:
                return t.get_entity(pk, key, select=["itemId", "effect", "payload", "payloadBlob"])
            except ResourceNotFoundError as exc:
                if _is_table_missing(exc):
                    raise
                return None

        entry = self._call(table_keys.WORKITEMS_TABLE, get)
        if entry is None or entry.get("effect") == "manual":
            return None, None
        if entry.get("itemId") not in (item["id"], "", None):
            return None, None
        payload = entry.get("payload")
        blob = entry.get("payloadBlob")
        return (bytes(payload) if payload else None), (str(blob) if blob else None)

    def item_cis(self, item_id: str) -> list[Any]:
        """The item -> CI bindings (one single-partition query)."""
        item_id = table_keys.normalize_item_id(item_id)
        return self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{table_keys.item_partition(item_id)}' and "
            + table_keys.prefix_filter(table_keys.binding_prefix(item_id)),
        )

    def get_ci(self, ci_key: str) -> Any | None:
        return self._get(table_keys.CMDB_TABLE, table_keys.ci_partition(ci_key), table_keys.CI_ROW)
