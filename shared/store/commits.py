"""A group's commit and its repair: the root entity with the state, the row operations in one
transaction or chained ones, and rewriting the rows an interrupted commit left behind
(docs/data-model.md, "Correctness under concurrency and failure").

Repair reads only the rows that can differ from what the root implies (the rows the root
derives, under the current and the stored policy; the rows a chained commit had yet to
write; the rows of a commit that broke), by key: bounded by the group's state, however many
rows (history, archived items) its partition has gathered over the years.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import UpdateMode

from shared import table_keys, workitem_index, workitem_rows
from shared.alert_events import GroupKey, to_micros
from shared.entity_props import SHORT_LIMIT, join_chunks, split_chunks, truncated
from shared.log_text import get_logger
from shared.store.base import (
    _ROOT_CACHE,
    MAX_TRANSACTION_OPS,
    ROOT_CACHE_MAX_EVENTS,
    STATE_PREFIX,
    StoreInconsistent,
    _Broken,
    _Conflict,
    _now,
    _operation,
    _parallel,
    _Root,
)
from shared.store.index import _index_ops, _index_views, _IndexPlan, _IndexWrites, _with_index_seq
from shared.store.reads import _Reads
from shared.workitem_rows import CREATE, DELETE, ITEM_FACTS, Props, RowOp
from shared.workitems import Derived, GroupState, Policy, derive

log = get_logger(__name__)

PENDING_PREFIX = "pending"  # root properties: row keys a chained commit has yet to write
# What repair compares in a history entry: what derive sets, never the raw payload.
HISTORY_COLUMNS = (
    "PartitionKey",
    "RowKey",
    "entryId",
    "group",
    "itemId",
    "effect",
    "changes",
    "eventTime",
    "ignored",
    "actorType",
    "actorOid",
    "actorName",
    "actorAppId",
    "note",
    "requestedState",
)
_FINGERPRINT = re.compile(r"reopen=(\d+);flap=(\d+)/(\d+)")


def _root_of(entity: Any, rows: Mapping[str, Any]) -> _Root:
    state = workitem_rows.state_of(join_chunks(entity, STATE_PREFIX), rows)
    seq = entity.get("seq")
    return _Root(
        state,
        entity.metadata["etag"],
        bool(entity.get("dirty")),
        str(entity.get("policy")),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
        frozenset(rows),
        _pending(entity),
    )


def _pending(entity: Mapping[str, Any]) -> frozenset[str]:
    """The row keys a dirty root's chained commit had yet to write (see _write_group)."""
    text = join_chunks(entity, PENDING_PREFIX) if entity.get("dirty") else ""
    try:
        keys = json.loads(text) if text else []
    except ValueError:
        return frozenset()
    return (
        frozenset(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else frozenset()
    )


def _policy_of(fingerprint: str, mode: str) -> Policy | None:
    """The policy a root's rows were derived with (Policy.fingerprint), if it says."""
    found = _FINGERPRINT.fullmatch(fingerprint)
    if found is None:
        return None
    reopen, threshold, window = (int(g) for g in found.groups())
    return Policy(mode, reopen, threshold, window)


def _folded(item: Mapping[str, Any], horizon: int | None) -> bool:
    """An item whose last event is at or before the horizon: folded, its rows frozen."""
    last = to_micros(item.get("lastEventAt"))
    return horizon is not None and last is not None and last <= horizon


def _manual_rows(derived: Derived, group: GroupKey) -> set[str]:
    """History row keys of people's changes (written once, when they are made)."""
    return {
        table_keys.history_row(group.hash, h.entry_id)
        for h in derived.history.values()
        if h.actor is not None
    }


def _kept_history(
    manual: set[str], ops: list[RowOp], entries: set[str] | None = None
) -> list[RowOp]:
    """History rows are never deleted (a folded event's entry stays as it was, and so does
    its place in its item's timeline), and a person's change is written once, when it is
    made (its note in full: the state keeps only the start of it)."""
    out = []
    for op in ops:
        history = op.row_key.startswith(table_keys.HISTORY_PREFIX)
        if history and op.action == DELETE:
            continue
        if history and op.action != CREATE and op.row_key in manual:
            continue
        if (
            op.row_key.startswith(table_keys.TIMELINE_PREFIX)
            and op.action == DELETE
            and entries is not None
            and op.row_key.rsplit("|", 1)[-1] not in entries
        ):
            continue
        out.append(op)
    return out


class _Commits(_Reads):
    """The store's commit part (shared.store.WorkItemStore combines them)."""

    def _read_root(self, group: GroupKey) -> _Root:
        root = self._read_state(group.hash)
        if root is None:
            return _Root(GroupState(group), None, False, self.policy.fingerprint())
        if root.state.group != group:
            raise RuntimeError(f"group root of {group.hash[:16]} belongs to another group")
        self._remember_root(root)
        return root

    def _read_state(self, group_hash: str) -> _Root | None:
        """The root and its rows (window, people's changes, carry): one range query."""
        found = self._query(table_keys.WORKITEMS_TABLE, table_keys.root_range(group_hash))
        low = table_keys.root_row(group_hash)
        entity = next((e for e in found if e["RowKey"] == low), None)
        if entity is None:
            return None
        return _root_of(entity, {e["RowKey"]: e for e in found if e["RowKey"] != low})

    def _root_key(self, group: GroupKey) -> tuple[str, str]:
        return (self._account, f"{group.partition}/{table_keys.root_row(group.hash)}")

    def _remember_root(self, root: _Root) -> None:
        clean = root.etag is not None and not root.dirty
        clean = clean and root.policy == self.policy.fingerprint()
        clean = clean and len(root.state.events) <= ROOT_CACHE_MAX_EVENTS
        _ROOT_CACHE.put(self._root_key(root.state.group), root if clean else None)

    def _forget_root(self, group: GroupKey) -> None:
        _ROOT_CACHE.put(self._root_key(group), None)

    def _root_entity(self, state: GroupState, dirty: bool, seq: int, text: str) -> Props:
        group = state.group
        return {
            "seq": seq,
            "PartitionKey": group.partition,
            "RowKey": table_keys.root_row(group.hash),
            "groupHash": group.hash,
            "groupKind": group.kind,
            "correlationKey": truncated(group.key, SHORT_LIMIT * 2),
            "policy": self.policy.fingerprint(),
            "dirty": dirty,
            "eventCount": state.seen,
            "updatedAt": _now(),
            **split_chunks(text, STATE_PREFIX),
        }

    def _history_facts(self, group: GroupKey, event_id: str) -> Mapping[str, Any]:
        entity = self._get(
            table_keys.WORKITEMS_TABLE,
            group.partition,
            table_keys.history_row(group.hash, event_id),
            select=list(ITEM_FACTS),  # not the raw payload
        )
        if entity is None:
            log.warning(
                "history entry %s of group %s is missing: item facts left empty",
                event_id,
                group.key[:200],
            )
            return {}
        return dict(entity)

    def _write_group(
        self,
        state: GroupState,
        etag: str | None,
        ops: list[RowOp],
        seq: int = 0,
        old: GroupState | None = None,
        stored: frozenset[str] | None = None,
    ) -> str | None:
        """Commit the root and `ops` atomically; past 100 operations, in chained transactions.

        Each later transaction also updates the root conditionally, and the root says
        `dirty` (and which rows are still to come, `pending…`) until the last one: a crash
        or a competing writer in between leaves a dirty root, which the next reader repairs.
        """
        group = state.group
        pk, root_rk = group.partition, table_keys.root_row(group.hash)
        text, rows = workitem_rows.state_entities(state)
        before = workitem_rows.state_entities(old)[1] if old is not None else rows
        if stored is not None:  # rows the root's JSON still holds are not rows yet
            before = {k: v for k, v in before.items() if k in stored}
        # The state's own rows go with the root, in its transaction: always consistent.
        own = workitem_rows.diff(before, rows)
        if len(own) >= MAX_TRANSACTION_OPS:
            raise StoreInconsistent(f"group {group.key[:200]}: {len(own)} state row changes")
        ops = own + ops
        room = MAX_TRANSACTION_OPS - 1
        chunks = [ops[i : i + room] for i in range(0, len(ops), room)] or [[]]
        now = _now()
        root = self._root_entity(state, len(chunks) > 1, seq, text)
        for n, chunk in enumerate(chunks):
            dirty = n < len(chunks) - 1
            if n == 0:
                if dirty:  # the rows a repair must look at if the chain breaks
                    later = {op.row_key for c in chunks[1:] for op in c}
                    later = {k for k in later if not k.startswith(table_keys.ROOT_PREFIX)}
                    root.update(split_chunks(json.dumps(sorted(later)), PENDING_PREFIX))
                if etag is None:
                    root_op: tuple[Any, ...] = ("create", root)
                else:
                    root_op = (
                        "update",
                        root,
                        {
                            "mode": UpdateMode.REPLACE,
                            "etag": etag,
                            "match_condition": MatchConditions.IfNotModified,
                        },
                    )
            else:
                flag = {"PartitionKey": pk, "RowKey": root_rk, "dirty": dirty, "updatedAt": now}
                if not dirty:  # the last: the whole root again, without the pending rows
                    flag = {
                        **{k: v for k, v in root.items() if not k.startswith(PENDING_PREFIX)},
                        **flag,
                    }
                root_op = (
                    "update",
                    flag,
                    {
                        "mode": UpdateMode.MERGE if dirty else UpdateMode.REPLACE,
                        "etag": etag,
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            batch = [root_op, *(_operation(pk, op, now) for op in chunk)]
            try:
                result = self._submit(table_keys.WORKITEMS_TABLE, batch)
            except HttpResponseError as exc:
                index = int(getattr(exc, "index", 0))
                if index == 0 and exc.status_code in (404, 409, 412):  # the root moved
                    if n == 0:
                        raise _Conflict() from exc
                    return None  # a repairer took over the rows; the event itself is durable
                if index == 0 or exc.status_code not in (404, 409):
                    raise  # throttling, timeouts, 5xx, bad requests: the storage error itself
                failed = batch[index] if 0 <= index < len(batch) else ("?", {"RowKey": "?"})
                raise _Broken(
                    f"{exc.status_code} {getattr(exc, 'error_code', '')} at operation "
                    f"{index} ({failed[0]} {failed[1]['RowKey']})"
                ) from exc
            etag = result[0]["etag"]
        return etag

    def _repair(self, root: _Root, suspects: Iterable[str] = ()) -> None:
        """Rewrite a group's rows from its root (rare: see _write_group), reading only the
        rows that can differ from what the root implies (the module docstring)."""
        group = root.state.group
        self._forget_root(group)
        short = group.hash[: table_keys.GROUP_CHARS]
        archived = set(root.state.archived)
        horizon = root.state.horizon
        derived = derive(root.state, self.policy)
        desired = workitem_rows.group_rows(derived, group)
        keys = set(desired) | root.pending | set(suspects)
        if root.policy != self.policy.fingerprint():  # rows derived under the old policy
            old = _policy_of(root.policy, self.policy.correlation_mode)
            if old is not None:
                keys |= set(workitem_rows.group_rows(derive(root.state, old), group))
        actual: dict[str, Props] = {}
        for entity in self._rows(group.partition, keys):
            rk = entity["RowKey"]
            if entity.get("group") != short or rk.startswith(table_keys.ROOT_PREFIX):
                continue
            if entity.get("itemId") in archived or entity.get("id") in archived:
                continue  # archived items' rows are frozen
            if rk.startswith(table_keys.ITEM_PREFIX) and _folded(entity, horizon):
                continue  # items that ended before the horizon: archived long ago
            actual[rk] = dict(entity)
        ops: list[RowOp] = []
        kept = {rk for rk in actual if rk.startswith(table_keys.ITEM_PREFIX)}
        items = {str(actual[rk].get("id")) for rk in kept}
        diffs = workitem_rows.diff(actual, desired)
        for op in _kept_history(_manual_rows(derived, group), diffs, set(derived.history)):
            if (
                op.action == DELETE
                and op.row_key.startswith(table_keys.BINDING_PREFIX)
                and str(actual[op.row_key].get("itemId")) not in items
                and op.row_key not in root.pending
            ):
                continue  # a binding of an archived item
            if op.row_key.startswith(table_keys.ITEM_PREFIX) and op.action != DELETE:
                view = derived.items[op.row_key[len(table_keys.ITEM_PREFIX) :]]
                before = actual.get(op.row_key, {})
                if before.get("factsEvent") != view.facts_event:
                    facts = workitem_rows.item_facts(self._history_facts(group, view.facts_event))
                    op = RowOp(op.action, op.row_key, {**op.props, **facts})
            ops.append(op)
        log.warning("repairing group %s: %d row operations", group.key[:200], len(ops))
        old_views = [
            v
            for rk, entity in actual.items()
            if rk.startswith(table_keys.ITEM_PREFIX)
            for v in [workitem_index.view_of_entity(entity)]
            if v is not None
        ]
        plan = _IndexPlan.of(old_views, _index_views(derived))
        seq = root.seq + 1
        ops = _with_index_seq(ops, plan.changed, seq)
        index = _IndexWrites()
        index.start_attempt(seq)
        self._index_before(plan, _index_ops(plan, seq), index)
        try:
            self._write_group(root.state, root.etag, ops, seq, root.state, root.stored)
        except (_Conflict, _Broken) as exc:
            log.warning(
                "repair of group %s interrupted (%s); the next attempt retries",
                group.key[:200],
                exc,
            )
            return
        self._index_after(plan, index)

    def _rows(self, partition: str, keys: Iterable[str]) -> list[Any]:
        """The rows of `partition` with these keys that exist: point reads, a few at a time
        (a filter of `or`ed row keys would scan the partition); history entries without
        their raw payload."""

        def read(key: str) -> Any | None:
            history = key.startswith(table_keys.HISTORY_PREFIX)
            columns = HISTORY_COLUMNS if history else None
            return self._get(table_keys.WORKITEMS_TABLE, partition, key, select=columns)

        return [e for e in _parallel(read, sorted(keys)) if e is not None]
