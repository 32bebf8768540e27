"""Index rows for the work item API, written around each group commit (docs/data-model.md,
"Indexes for the work item API": "Consistency")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared import table_keys, workitem_index
from shared.log_text import get_logger
from shared.store.base import (
    _INDEX_ETAGS,
    _MONTHS,
    IndexOp,
    _is_table_missing,
    _parallel,
    _retrying,
    _Tables,
)
from shared.workitem_index import INDEX_TABLE, IndexView
from shared.workitem_rows import DELETE, MERGE, Props, RowOp
from shared.workitems import (
    Derived,
    GroupState,
)

log = get_logger(__name__)


def _merge_upsert(key: workitem_index.Key, props: Props) -> tuple[Any, ...]:
    """An index row's MERGE upsert, as a transaction operation, where the row is stored."""
    return ("upsert", workitem_index.stored_entity(key, props)[1], {"mode": UpdateMode.MERGE})


def _index_write_op(op: IndexOp) -> tuple[Any, ...]:
    """A "create" or "upsert" index op as a transaction operation."""
    action, key, props = op
    if action == "create":
        return ("create", workitem_index.stored_entity(key, props)[1])
    return _merge_upsert(key, props)


WRITES = ("create", "upsert")  # index ops that write the row's flags (a touch writes seq only)


def _index_ops(plan: _IndexPlan, seq: int) -> list[IndexOp]:
    """The index writes before a commit: every row the new state needs, widened (MERGE; a
    row the old state lacked is inserted), and open rows that will be narrowed after the
    commit (for their ETag).

    Rows the commit will make obsolete are only touched (their ETag is what lets the cleanup
    after the commit delete them without racing a later writer). Widening is always safe: a
    row then matches the old and the new state, so no reader misses the item whether or not
    the commit happens.
    """
    ops: list[IndexOp] = []
    for key, props in plan.new.items():
        old = plan.old.get(key)
        narrowed = workitem_index.is_open_partition(key[0]) and workitem_index.narrows(old, props)
        if old is None:
            # A row the old state did not have is created; if it is there after all (a
            # retry, an interrupted attempt), `_index_write` merges into it instead. Same
            # outcome as a MERGE upsert, which Azurite pays with two partition scans.
            ops.append(("create", key, {**props, "seq": seq}))
        elif workitem_index.widens(old, props) or narrowed:  # only open rows are narrowed
            ops.append(("upsert", key, {**props, "seq": seq}))
    ops.extend(("touch", key, {"seq": seq}) for key in plan.gone)
    return ops


def _index_views(derived: Derived, skip: Iterable[str] = ()) -> list[IndexView]:
    skipped = set(skip)
    tenant = derived.group.tenant if derived.group is not None else ""
    cis = tuple(sorted({workitem_index.ci_hash(c.key, tenant) for c in derived.cis}))
    return [
        IndexView(
            item_id=v.id,
            fired_at=v.fired_at,
            state=v.state,
            severity=v.severity,
            priority=v.priority,
            flapping=v.flapping,
            rules=v.rules,
            cis=cis,
            tenant=tenant,
        )
        for v in derived.items.values()
        if v.id not in skipped
    ]


@dataclass(frozen=True)
class _IndexPlan:
    old: dict[workitem_index.Key, Props]  # the rows the committed state needs
    new: dict[workitem_index.Key, Props]  # the rows the new state needs
    gone: frozenset[workitem_index.Key]
    changed: frozenset[str]  # items whose index view changes: they get the commit's seq

    @classmethod
    def of(cls, old_views: Iterable[IndexView], new_views: Iterable[IndexView]) -> _IndexPlan:
        before = {v.item_id: v for v in old_views}
        after = {v.item_id: v for v in new_views}
        old, new = workitem_index.all_rows(before.values()), workitem_index.all_rows(after.values())
        changed = {i for i, v in after.items() if before.get(i) != v}
        return cls(old, new, frozenset(old.keys() - new.keys()), frozenset(changed))


def _index_plan(old: Derived, new: Derived, state: GroupState) -> _IndexPlan:
    """Index rows before and after a commit; items it archives keep theirs, frozen."""
    return _IndexPlan.of(_index_views(old, skip=state.archived), _index_views(new))


class _IndexWrites:
    """The index rows one writer touched over its attempts, with the ETags it got."""

    def __init__(self) -> None:
        self.etags: dict[workitem_index.Key, str] = {}
        self.earlier: set[workitem_index.Key] = set()  # touched by an attempt that failed
        self.seq = 0

    def start_attempt(self, seq: int) -> None:
        self.earlier |= set(self.etags)
        self.seq = seq

    def seq_of(self, _key: workitem_index.Key) -> int:
        return self.seq


def _with_index_seq(ops: list[RowOp], changed: Iterable[str], seq: int) -> list[RowOp]:
    """Stamp `indexSeq` on the items whose index rows this commit changes."""
    rows = {table_keys.item_row(i) for i in changed}
    out = []
    for op in ops:
        if op.row_key in rows and op.action != DELETE:
            op = RowOp(op.action, op.row_key, {**op.props, "indexSeq": seq})
            rows.discard(op.row_key)
        out.append(op)
    out.extend(RowOp(MERGE, rk, {"indexSeq": seq}) for rk in sorted(rows))
    return out


class _Index(_Tables):
    """The store's index part (shared.store.WorkItemStore combines them)."""

    def _index_before(self, plan: _IndexPlan, ops: list[IndexOp], writes: _IndexWrites) -> None:
        """Before a group commit: the index writes of `_index_ops` (those a CI's transaction
        did not carry already), in parallel, keeping the ETag of each. Raises AzureError:
        nothing is committed then."""
        by_partition: dict[tuple[str, str], list[IndexOp]] = {}
        for op in ops:  # rows sharing a partition go in one transaction (an item's open
            table, pk, _ = workitem_index.location(op[1])  # and month rows, for one)
            by_partition.setdefault((table, pk), []).append(op)
        for written in _parallel(self._index_write_together, list(by_partition.values())):
            for key, etag in written:
                if etag is not None:
                    writes.etags[key] = etag
        self._register_months(workitem_index.month_rows_of(plan.new))

    def _index_write_together(self, ops: list[IndexOp]) -> list[tuple[Any, str | None]]:
        """Creates and upserts to one partition in one transaction; anything else, or
        anything that fails there, one by one (`_index_write`: retries, a missing table, a
        gone row; a failed create is merged into the row that is there)."""
        writes = [op for op in ops if op[0] in WRITES]
        if len(writes) < 2:
            return [self._index_write(op) for op in ops]
        table, _, _ = workitem_index.location(writes[0][1])
        batch = [_index_write_op(op) for op in writes]
        outcomes = self._coalescers[table].submit_many(batch)
        written = []
        for op, outcome in zip(writes, outcomes, strict=True):
            if isinstance(outcome, Exception):
                written.append(self._index_write(("upsert", op[1], op[2])))
            else:
                written.append((op[1], str(outcome.get("etag"))))
        return written + [self._index_write(op) for op in ops if op[0] not in WRITES]

    def _known_etags(self, ops: list[IndexOp], writes: _IndexWrites) -> list[IndexOp]:
        """Touches (for an ETag) of rows whose current ETag this process already knows,
        from its own last write of them, are skipped. As safe as a fresh touch: the cleanup
        deletes the row only if nobody has written it since our write, earlier or not."""
        rest = []
        for op in ops:
            known = _INDEX_ETAGS.get(self._etag_key(op[1]))
            if op[0] == "touch" and known is not None:
                writes.etags[op[1]] = known
            else:
                rest.append(op)
        return rest

    def _remember_etag(self, key: workitem_index.Key, etag: str | None) -> None:
        _INDEX_ETAGS.put(self._etag_key(key), etag)

    def _etag_key(self, key: workitem_index.Key) -> tuple[str, str]:
        return (self._account, "\n".join(key))

    def _index_write(self, op: IndexOp) -> tuple[Any, str | None]:
        action, key, props = op
        table, entity = workitem_index.stored_entity(key, props)
        merge = {"mode": UpdateMode.MERGE}

        def write(_t: TableClient) -> Mapping[str, Any] | None:
            if action == "create":
                try:
                    return self._coalesced(table, ("create", entity))
                except ResourceExistsError:
                    pass  # there after all: widen it as an upsert would
            if action in WRITES:
                return self._coalesced(table, ("upsert", entity, merge))
            try:
                return self._coalesced(table, ("update", entity, merge))
            except ResourceNotFoundError as exc:
                if _is_table_missing(exc):
                    raise
                return None  # already gone: nothing to clean up

        result = _retrying(lambda: self._call(table, write))
        return key, None if result is None else str(result.get("etag"))

    def _coalesced(self, table: str, operation: tuple[Any, ...]) -> Mapping[str, Any]:
        return self._coalescers[table].submit(operation)

    def _index_after(self, plan: _IndexPlan, writes: _IndexWrites) -> None:
        """After a group commit: delete the rows it made obsolete, narrow the open rows.

        Each is conditional on the ETag from our own write before the commit: if anyone
        wrote the row since (a later commit widening it again), ours fails and the row stays
        as they left it. Failures are logged, not raised: the event is durable, and readers
        skip (and repair) a stale row.
        """
        ops: list[tuple[str, workitem_index.Key, Props, str]] = []
        for key, etag in writes.etags.items():
            props = plan.new.get(key)
            if props is None:
                ops.append(("delete", key, {}, etag))
            elif workitem_index.is_open_partition(key[0]) and (
                workitem_index.narrows(plan.old.get(key), props) or key in writes.earlier
            ):
                ops.append(("replace", key, {**props, "seq": writes.seq}, etag))
            else:
                self._remember_etag(key, etag)  # ours, and still the row's current version
        for failure in _parallel(self._index_cleanup, ops):
            if failure:
                log.info("index cleanup skipped: %s", failure)

    def _index_cleanup(self, op: tuple[str, workitem_index.Key, Props, str]) -> str:
        action, key, props, etag = op
        self._remember_etag(key, None)
        try:
            if action == "delete":
                self._delete_if(key, etag)
            else:
                self._remember_etag(key, self._replace_if(key, props, etag))
        except HttpResponseError as exc:  # 412: someone wrote it since; 404: gone already
            return f"{action} {key[0]}/{key[1]}: {exc.status_code}"
        except AzureError as exc:
            return f"{action} {key[0]}/{key[1]}: {exc}"
        return ""

    def _delete_if(self, key: workitem_index.Key, etag: str) -> None:
        table, entity = workitem_index.stored_entity(key)
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        self._call(table, lambda _t: self._coalesced(table, ("delete", entity, condition)))

    def _replace_if(self, key: workitem_index.Key, props: Props, etag: str) -> str | None:
        table, entity = workitem_index.stored_entity(key, props)
        options = {
            "mode": UpdateMode.REPLACE,
            "etag": etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        result = self._call(table, lambda _t: self._coalesced(table, ("update", entity, options)))
        return result.get("etag")

    def _register_months(self, months: Iterable[str]) -> None:
        """The (tenant, month) partitions that hold items (`months` rows `<T>|<yyyy-mm>`):
        a listing walks only its tenant's."""
        for month in sorted(months):
            key = (self._account, month)
            if key in _MONTHS:
                continue
            entity = {"PartitionKey": workitem_index.MONTHS_PARTITION, "RowKey": month}
            self._call(
                INDEX_TABLE,
                lambda t, e=entity: t.upsert_entity(e, mode=UpdateMode.REPLACE),  # type: ignore[misc]
            )
            _MONTHS.add(key)

    def _months(self, scope: str | None = None) -> list[tuple[str, str]]:
        """(scope, month) of every month with items: of one tenant (a range of its rows
        only), or of every tenant (None)."""
        flt = f"PartitionKey eq '{workitem_index.MONTHS_PARTITION}'"
        if scope is not None:
            flt += f" and RowKey gt '{scope}|' and RowKey lt '{scope}}}'"
        rows = self._query(INDEX_TABLE, flt)
        found = (workitem_index.parse_months_row(str(r["RowKey"])) for r in rows)
        return [m for m in found if m is not None and (scope is None or m[0] == scope)]
