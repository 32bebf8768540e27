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
from shared.store.ci_reads import _CiReads, of_tenant
from shared.workitem_index import ItemFilter

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
    "syncState",
]
STALE_INDEX_GRACE_SECONDS = 600  # a row of a missing item younger than this may be in flight


def _month_stream(flt: ItemFilter, scope: str, month: str) -> str:
    """The logical index partition a listing reads in `month`: open rows, or all items."""
    if flt.open_only:
        return workitem_index.open_partition(scope)
    return workitem_index.month_partition(scope, month)


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
    scope = workitem_index.tenant_scope(view.tenant)
    if workitem_index.is_open_partition(pk):
        return view.is_open and pk == workitem_index.open_partition(scope)
    if workitem_index.is_month_partition(pk):
        return pk == workitem_index.month_partition(scope, workitem_index.month_of(view.fired_at))
    if pk.startswith(workitem_index.CI_PREFIX):
        return not view.cis_complete or pk[len(workitem_index.CI_PREFIX) :] in view.cis
    return False


def _merged(pages: list[Page], top: int) -> Page:
    """The first `top` items of several tenants' pages, newest fired first; the position is
    the last one's sort key, which every tenant's listing resumes after."""
    keyed = []
    for page in pages:
        for item in page.items:
            view = workitem_index.view_of_entity(item)
            if view is not None:
                keyed.append((workitem_index.sort_key(view.fired_at, view.item_id), item))
    keyed.sort(key=lambda pair: pair[0])
    stats: Counter[str] = Counter()
    for page in pages:
        stats.update(page.stats)
    more = len(keyed) > top or any(p.after is not None for p in pages)
    taken = keyed[:top]
    return Page([i for _, i in taken], taken[-1][0] if more and taken else None, stats)


class _Reads(_CiReads):
    """The store's reads part (shared.store.WorkItemStore combines them)."""

    def list_items(self, flt: ItemFilter, top: int, after: str | None) -> Page:
        """Work items matching `flt`, newest fired first, from the indexes (never a scan).

        Open items come from the `open` rows, the items of one CI from its partition,
        anything else from the month rows; `open` and month rows are read one month at a
        time, newest first, in the partitions of `flt.tenant` only (None: every tenant, one
        listing per tenant, merged). The server filters on the rows' flags; every hit is then
        confirmed by a point read of the item, and the whole filter applied to what the item
        says: a stale row costs a read, never a wrong answer (and is repaired when safe).
        """
        stats: Counter[str] = Counter()
        if flt.ci is not None and (flt.tenant is None or not flt.open_only):
            # The CI's own partition (or, for every tenant, the CI's tenant) is read only
            # once the CI is known to be the tenant's: another tenant's CI lists nothing.
            owner = self._ci_tenant(flt.ci)
            stats["requests"] += 1
            if owner is None or (flt.tenant is not None and owner != flt.tenant):
                return Page([], None, stats)
            flt = flt.scoped(owner)
        if flt.tenant is not None:
            page = self._list_scope(flt, workitem_index.tenant_scope(flt.tenant), top, after)
            page.stats.update(stats)
            return page
        months = self._months()
        stats["requests"] += 1
        scopes = sorted({scope for scope, _ in months})
        pages = [self._list_scope(flt, scope, top, after, months) for scope in scopes]
        merged = _merged(pages, top)
        merged.stats.update(stats)
        return merged

    def _list_scope(
        self,
        flt: ItemFilter,
        scope: str,
        top: int,
        after: str | None,
        known: list[tuple[str, str]] | None = None,
    ) -> Page:
        """`list_items` within one tenant's partitions (`known`: every tenant's months)."""
        now = int(time.time() * 1_000_000)
        stats: Counter[str] = Counter()
        streams: list[tuple[tuple[str, str, str], str]]
        if flt.ci is not None and not flt.open_only:
            ci = workitem_index.ci_partition_key(flt.ci)
            streams = [(workitem_index.stream_location(ci), "ci")]
        else:
            if known is None:
                known = self._months(scope)
                stats["requests"] += 1
            months = [m for s, m in known if s == scope]
            kind = "open" if flt.open_only else "month"
            streams = [
                (workitem_index.stream_location(_month_stream(flt, scope, m), m), kind)
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
            if workitem_index.is_open_partition(key[0]) and not view.cis_complete:
                return False  # its CI list was truncated: the flags cannot be rebuilt here
            if wanted is None or not workitem_index.narrows(dict(row), wanted):
                return False
            self._replace_if(key, {**wanted, "seq": seq}, etag)
            return True
        except AzureError as exc:
            log.info("index row %s/%s not repaired: %s", key[0], key[1], exc)
            return False

    def get_item(self, item_id: str, tenant: str | None = None) -> Any | None:
        """The work item entity (with `.metadata["etag"]`), or None; with `tenant`, None
        also when the item is another tenant's (exactly as if there were none)."""
        item_id = table_keys.normalize_item_id(item_id)
        item = self._get(
            table_keys.WORKITEMS_TABLE,
            table_keys.item_partition(item_id),
            table_keys.item_row(item_id),
        )
        if item is None or tenant is None or of_tenant(item, tenant):
            return item
        return None

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

    def event_payload(
        self, item_id: str, event_id: str, tenant: str | None = None
    ) -> tuple[bytes | None, str | None]:
        """An alert event's raw payload, as its history entry keeps it: the deflated
        envelope, or the blob holding it ("container/name"). (None, None): no such event of
        this item, or no payload. ItemNotFound: no such item (of `tenant`)."""
        item = self.get_item(item_id, tenant)
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
