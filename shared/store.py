"""Table Storage for work items, history, bindings and CMDB: the only module that uses tables.

Writes follow one invariant: every write to a group's rows (its work items, item -> CI
bindings and history, all in the group's partition of `workitems`) is an entity group
transaction that also writes the group root conditionally (ETag, or create-if-absent).
Concurrent writers therefore serialize on the root: the loser gets 412/409, re-reads and
retries, and no update is ever lost. The rows are a function of the root's state
(shared.workitems.derive), so a writer knows what they hold without reading them.

Per event: read the root (1 request); a duplicate stops here. Otherwise write what is new
for each CI in the CI's `cmdb` partition (at most 1 request per CI, skipped when nothing
changed), then commit the root and every changed row in one transaction (1 request; more
only past 100 operations). CI writes come first, so once the root holds an event,
everything it implies is durable; a crash in between is repaired by the retry.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import storage, table_batch, table_keys, workitem_rows
from shared.alert_events import Ci, Event, GroupKey, iso, to_micros
from shared.config import Settings, StorageSettings
from shared.entity_props import SHORT_LIMIT, join_chunks, split_chunks, truncated
from shared.workitem_rows import CREATE, DELETE, MERGE, Props, RowOp
from shared.workitems import (
    STATES,
    CiSeen,
    Derived,
    GroupState,
    Overlay,
    Policy,
    before_horizon,
    ci_covered,
    compact,
    derive,
    merge,
    merge_ci,
    state_from_json,
    state_to_json,
    with_overlay,
)

log = logging.getLogger(__name__)

MAX_TRANSACTION_OPS = 100  # Table Storage's limit (Azurite breaks on 101)
# Events of one group processed by this process wait for each other instead of racing:
# the host runs up to 24 messages at once, and a storm on one rule would otherwise spend
# most requests on ETag conflicts. Other instances still race, and the ETags settle that.
SERIALIZE_GROUPS_IN_PROCESS = True
MAX_ATTEMPTS = 40  # conflicts on one group before the message goes back to the queue
CI_ATTEMPTS = 20
CI_CACHE_SIZE = 10_000
ROOT_CACHE_SIZE = 16_384  # group roots this process committed last: their reads are skipped
ROOT_CACHE_MAX_EVENTS = 50  # big (rule-mode) states are not worth the memory
STATE_PREFIX = "state"

T = TypeVar("T")
V = TypeVar("V")


class ContentionError(Exception):
    """Too many concurrent writers on one group or CI: transient, the host retries."""


class StoreInconsistent(Exception):
    """A group's rows cannot be brought in line with its root (a bug, or a key collision)."""


class ItemNotFound(Exception):
    pass


class PreconditionFailed(Exception):
    """The caller's ETag no longer matches the work item (someone changed it)."""


class _Conflict(Exception):
    """The root changed under us (412) or was created meanwhile (409): re-read, retry."""


class _Broken(Exception):
    """A row operation failed although the root matched: rows and root disagree."""


@dataclass(frozen=True)
class ApplyResult:
    outcome: str  # "applied" or "duplicate"
    group: GroupKey
    item_ids: tuple[str, ...]  # the work items the event belongs to
    attempts: int


@dataclass(frozen=True)
class _Root:
    state: GroupState
    etag: str | None  # None: the root does not exist yet
    dirty: bool  # a multi-transaction commit has not finished writing its rows
    policy: str


def _now() -> str:
    return iso(int(time.time() * 1_000_000)) or ""


def _is_table_missing(exc: HttpResponseError) -> bool:
    code = getattr(exc, "error_code", None)  # a str, or a TableErrorCode (a str enum)
    return str(getattr(code, "value", code)) == "TableNotFound"


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2 ** min(attempt, 8))))  # noqa: S311


class _LruCache(Generic[V]):
    """A bounded, thread-safe map of what this process last read or wrote, per account.

    Entries are hints: everything cached is monotone (group states and CMDB entities only
    grow), so a stale entry can only under-cover an event -- a wasted write, then a 412 and
    a re-read -- never hide a needed write. Deleting rows behind the app's back breaks that:
    creating a table clears the caches, and so must anything that deletes our entities.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple[str, str], value: V | None) -> None:
        with self._lock:
            if value is None:
                self._items.pop(key, None)
                return
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CI_CACHE: _LruCache[tuple[str, CiSeen]] = _LruCache(CI_CACHE_SIZE)
_ROOT_CACHE: _LruCache[_Root] = _LruCache(ROOT_CACHE_SIZE)


def clear_caches() -> None:
    """Forget remembered entities (after deleting tables or rows behind the app's back)."""
    _CI_CACHE.clear()
    _ROOT_CACHE.clear()


class _KeyedLocks:
    """One lock per key in use (a group being written), dropped when nobody holds it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]


_GROUP_LOCKS = _KeyedLocks()


_CLIENTS: dict[int, tuple[TableServiceClient, dict[str, TableClient]]] = {}
_CLIENTS_LOCK = threading.Lock()


def _table_clients(service: TableServiceClient) -> dict[str, TableClient]:
    """The service's table clients, built once per service client.

    get_table_client() re-links the service's shared pipeline policies (azure-core
    Pipeline.__init__ sets `policy.next`), which breaks requests in flight on other threads.
    """
    with _CLIENTS_LOCK:
        known = _CLIENTS.get(id(service))
        if known is None or known[0] is not service:
            known = (service, {name: service.get_table_client(name) for name in table_keys.TABLES})
            _CLIENTS[id(service)] = known
        return known[1]


class WorkItemStore:
    """Reads and conditional writes of work items, history, bindings and CIs."""

    def __init__(self, service: TableServiceClient, policy: Policy) -> None:
        self.policy = policy
        self._account = service.url
        self._tables = _table_clients(service)

    # -- plumbing -----------------------------------------------------------------------

    def _table(self, name: str) -> TableClient:
        return self._tables[name]

    def _call(self, name: str, fn: Callable[[TableClient], T]) -> T:
        """Run `fn`, creating the table first if it is missing (fresh account, Azurite)."""
        try:
            return fn(self._table(name))
        except HttpResponseError as exc:
            if not _is_table_missing(exc):
                raise
        with contextlib.suppress(ResourceExistsError):
            self._table(name).create_table()
        clear_caches()  # a new table holds none of the rows the caches remember
        return fn(self._table(name))

    def _get(self, name: str, pk: str, rk: str) -> Any | None:
        def get(t: TableClient) -> Any | None:
            try:
                return t.get_entity(pk, rk)
            except ResourceNotFoundError as exc:
                if _is_table_missing(exc):
                    raise
                return None

        return self._call(name, get)

    def _submit(self, name: str, ops: list[tuple[Any, ...]]) -> list[Mapping[str, Any]]:
        """Run `ops` atomically: a transaction, or a plain request when there is one.

        One operation needs no multipart batch, which costs more on both ends. Errors are
        HttpResponseError either way (TableTransactionError adds the failing `index`).
        """
        if len(ops) == 1:
            return [self._call(name, lambda t: _single(t, ops[0]))]
        return self._call(name, lambda t: table_batch.submit_transaction(t, ops))

    def _query(self, name: str, flt: str) -> list[Any]:
        return self._call(name, lambda t: list(t.query_entities(flt)))

    # -- the group root -----------------------------------------------------------------

    def _read_root(self, group: GroupKey) -> _Root:
        entity = self._get(
            table_keys.WORKITEMS_TABLE, group.partition, table_keys.root_row(group.hash)
        )
        if entity is None:
            return _Root(GroupState(group), None, False, self.policy.fingerprint())
        root = _root_of(entity)
        if root.state.group != group:
            raise RuntimeError(f"group root {entity['RowKey']} belongs to another group")
        self._remember_root(root)
        return root

    def _root_key(self, group: GroupKey) -> tuple[str, str]:
        return (self._account, f"{group.partition}/{table_keys.root_row(group.hash)}")

    def _remember_root(self, root: _Root) -> None:
        clean = root.etag is not None and not root.dirty
        clean = clean and root.policy == self.policy.fingerprint()
        clean = clean and len(root.state.events) <= ROOT_CACHE_MAX_EVENTS
        _ROOT_CACHE.put(self._root_key(root.state.group), root if clean else None)

    def _forget_root(self, group: GroupKey) -> None:
        _ROOT_CACHE.put(self._root_key(group), None)

    def _root_entity(self, state: GroupState, dirty: bool) -> Props:
        group = state.group
        return {
            "PartitionKey": group.partition,
            "RowKey": table_keys.root_row(group.hash),
            "groupHash": group.hash,
            "groupKind": group.kind,
            "correlationKey": truncated(group.key, SHORT_LIMIT * 2),
            "policy": self.policy.fingerprint(),
            "dirty": dirty,
            "eventCount": len(state.events),
            "updatedAt": _now(),
            **split_chunks(state_to_json(state), STATE_PREFIX),
        }

    # -- applying an event (the queue processor) ----------------------------------------

    def apply(
        self,
        event: Event,
        facts: Callable[[], Props],
    ) -> ApplyResult:
        """Merge `event` into its group and write every consequence, conditionally.

        `facts` builds the history entry's facts (it stores the raw payload, so it is
        called only when the event is new). Returns once everything is durable; raises
        AzureError for storage faults and ContentionError when conflicts persist.
        """
        if not SERIALIZE_GROUPS_IN_PROCESS:
            return self._apply(event, facts)
        with _GROUP_LOCKS.hold(event.group.hash):
            return self._apply(event, facts)

    def _apply(self, event: Event, facts: Callable[[], Props]) -> ApplyResult:
        group = event.group
        event_facts: Props | None = None
        repair = False
        broken = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            # The root this process committed last saves a read, unless the event is in it
            # already: a duplicate is confirmed by the table, never by a cache.
            cached = _ROOT_CACHE.get(self._root_key(group)) if attempt == 1 else None
            if cached is not None and cached.policy == self.policy.fingerprint():
                root = cached if merge(cached.state, event) is not None else self._read_root(group)
            else:
                root = self._read_root(group)
            if root.etag is not None and (
                repair or root.dirty or root.policy != self.policy.fingerprint()
            ):
                self._repair(root)
                repair = False
                continue
            merged = merge(root.state, event)
            if merged is None and before_horizon(root.state, event):
                log.warning(
                    "event %s of alert %s is older than the archived items of group %s: ignored",
                    event.id,
                    event.alert_id,
                    group.key[:200],
                )
            if merged is not None:
                merged = compact(merged, self.policy)
            new = derive(merged or root.state, self.policy)
            items = tuple(sorted(i.id for i in new.items.values() if event.id in i.events))
            if merged is None:
                return ApplyResult("duplicate", group, items, attempt)
            if event_facts is None:
                event_facts = facts()
            old = derive(root.state, self.policy)
            ops = self._plan(group, old, new, event, event_facts)
            self._touch_cis(group, root.state, event)
            try:
                etag = self._write_group(merged, root.etag, ops)
            except _Conflict:
                self._forget_root(group)
                _backoff(attempt)
                continue
            except _Broken as exc:
                self._forget_root(group)
                broken += 1
                if broken > 2:  # a repair did not help: not something a retry fixes
                    raise StoreInconsistent(f"group {group.key[:200]}: {exc}") from exc
                log.warning(
                    "work item rows of group %s disagree with its root (%s): repairing",
                    group.key[:200],
                    exc,
                )
                repair = True
                continue
            self._remember_root(_Root(merged, etag, False, self.policy.fingerprint()))
            return ApplyResult("applied", group, items, attempt)
        raise ContentionError(f"group {group.key[:200]}: {MAX_ATTEMPTS} conflicting attempts")

    def _plan(
        self, group: GroupKey, old: Derived, new: Derived, event: Event, facts: Props
    ) -> list[RowOp]:
        """Row operations from the old view to the new one, the event's own entry first."""
        ops = workitem_rows.diff(
            workitem_rows.group_rows(old, group), workitem_rows.group_rows(new, group)
        )
        own = table_keys.history_row(group.hash, event.id)
        copied = {
            table_keys.item_row(item_id): workitem_rows.item_facts(
                facts if event_id == event.id else self._history_facts(group, event_id)
            )
            for item_id, event_id in workitem_rows.facts_needed(old, new).items()
        }
        # Rows of items archived by this commit stay as they are (shared.workitems.compact).
        frozen = _rows_of(
            workitem_rows.group_rows(old, group), set(new.archived) - set(old.archived)
        )
        ops = [op for op in ops if not (op.action == DELETE and op.row_key in frozen)]
        first = [
            RowOp(CREATE, own, {**facts, **op.props}) if op.action == CREATE else op
            for op in ops
            if op.row_key == own
        ]
        rest = [
            RowOp(op.action, op.row_key, {**op.props, **copied[op.row_key]})
            if op.row_key in copied and op.action != DELETE
            else op
            for op in ops
            if op.row_key != own
        ]
        return first + rest

    def _history_facts(self, group: GroupKey, event_id: str) -> Mapping[str, Any]:
        entity = self._get(
            table_keys.WORKITEMS_TABLE,
            group.partition,
            table_keys.history_row(group.hash, event_id),
        )
        if entity is None:
            log.warning(
                "history entry %s of group %s is missing: item facts left empty",
                event_id,
                group.key[:200],
            )
            return {}
        return dict(entity)

    def _write_group(self, state: GroupState, etag: str | None, ops: list[RowOp]) -> str | None:
        """Commit the root and `ops` atomically; past 100 operations, in chained transactions.

        Each later transaction also updates the root conditionally, and the root says
        `dirty` until the last one: a crash or a competing writer in between leaves a
        dirty root, which the next reader repairs from the rows it finds.
        """
        group = state.group
        pk, root_rk = group.partition, table_keys.root_row(group.hash)
        room = MAX_TRANSACTION_OPS - 1
        chunks = [ops[i : i + room] for i in range(0, len(ops), room)] or [[]]
        now = _now()
        for n, chunk in enumerate(chunks):
            dirty = n < len(chunks) - 1
            if n == 0:
                root = self._root_entity(state, dirty)
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
                root_op = (
                    "update",
                    flag,
                    {
                        "mode": UpdateMode.MERGE,
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

    # -- repair -------------------------------------------------------------------------

    def _repair(self, root: _Root) -> None:
        """Rewrite a group's rows from its root, reading what they hold (rare: see _write_group)."""
        group = root.state.group
        self._forget_root(group)
        short = group.hash[: table_keys.GROUP_CHARS]
        archived = set(root.state.archived)
        found = self._query(table_keys.WORKITEMS_TABLE, f"PartitionKey eq '{group.partition}'")
        actual: dict[str, Props] = {}
        history: dict[str, Mapping[str, Any]] = {}
        for entity in found:
            rk = entity["RowKey"]
            if entity.get("group") != short or rk.startswith(table_keys.ROOT_PREFIX):
                continue
            if entity.get("itemId") in archived or entity.get("id") in archived:
                continue  # archived items' rows are frozen
            actual[rk] = dict(entity)
            if rk.startswith(table_keys.HISTORY_PREFIX):
                history[str(entity.get("entryId"))] = entity
        derived = derive(root.state, self.policy)
        desired = workitem_rows.group_rows(derived, group)
        ops: list[RowOp] = []
        for op in workitem_rows.diff(actual, desired):
            if op.row_key.startswith(table_keys.ITEM_PREFIX) and op.action != DELETE:
                view = derived.items[op.row_key[len(table_keys.ITEM_PREFIX) :]]
                before = actual.get(op.row_key, {})
                if before.get("factsEvent") != view.facts_event:
                    facts = workitem_rows.item_facts(history.get(view.facts_event, {}))
                    op = RowOp(op.action, op.row_key, {**op.props, **facts})
            ops.append(op)
        log.warning("repairing group %s: %d row operations", group.key[:200], len(ops))
        try:
            self._write_group(root.state, root.etag, ops)
        except (_Conflict, _Broken) as exc:
            log.warning(
                "repair of group %s interrupted (%s); the next attempt retries",
                group.key[:200],
                exc,
            )

    # -- CMDB ---------------------------------------------------------------------------

    def _touch_cis(self, group: GroupKey, before: GroupState, event: Event) -> None:
        """Write what the event adds to its CIs: first/last seen, spelling, the group binding."""
        for ci in event.cis:
            known = before.ci(ci.key)
            covered = ci_covered(known, ci, event.seen_time)
            if covered:
                continue  # written before the group committed what it knows about this CI
            self._write_ci(ci, event.seen_time, group if known is None else None)

    def _cached_ci(self, pk: str) -> tuple[str, CiSeen] | None:
        return _CI_CACHE.get((self._account, pk))

    def _remember_ci(self, pk: str, etag: str, seen: CiSeen | None) -> None:
        _CI_CACHE.put((self._account, pk), None if seen is None else (etag, seen))

    def _write_ci(self, ci: Ci, at: int | None, bind: GroupKey | None) -> None:
        """One transaction in the CI's partition: the CI (conditionally) and/or a group binding.

        The CI entity is merged like the group's record (min/max/min), with its ETag; the
        process remembers the last version it saw, and skips the write when that version
        already covers the event (monotone: an old version that covers it proves the new
        one does). A hot CI is therefore written about once per minute, not per alert.
        """
        pk = table_keys.ci_partition(ci.key)
        for _attempt in range(CI_ATTEMPTS):
            cached = self._cached_ci(pk)
            write_row = not (cached is not None and ci_covered(cached[1], ci, at))
            ops: list[tuple[Any, ...]] = []
            target: CiSeen | None = None
            now = _now()
            if write_row:
                target = merge_ci(cached[1] if cached else None, ci, at)
                entity = {
                    "PartitionKey": pk,
                    "RowKey": table_keys.CI_ROW,
                    **workitem_rows.cmdb_props(target),
                    "updatedAt": now,
                }
                if cached is None:
                    ops.append(("create", {**entity, "createdAt": now}))
                else:
                    ops.append(
                        (
                            "update",
                            entity,
                            {
                                "mode": UpdateMode.MERGE,
                                "etag": cached[0],
                                "match_condition": MatchConditions.IfNotModified,
                            },
                        )
                    )
            if bind is not None:
                row = {
                    "PartitionKey": pk,
                    "RowKey": table_keys.CI_ITEM_PREFIX + bind.hash[: table_keys.GROUP_CHARS],
                    **workitem_rows.ci_group_props(bind),
                }
                ops.append(("upsert", row, {"mode": UpdateMode.REPLACE}))
            if not ops:
                return
            try:
                result = self._submit(table_keys.CMDB_TABLE, ops)
            except HttpResponseError as exc:
                index = getattr(exc, "index", 0)
                if write_row and index == 0 and exc.status_code in (404, 409, 412):
                    self._refresh_ci(pk)
                    continue
                raise
            if target is not None:
                self._remember_ci(pk, result[0]["etag"], target)
            return
        raise ContentionError(f"CI {ci.key[:200]}: {CI_ATTEMPTS} conflicting attempts")

    def _refresh_ci(self, pk: str) -> None:
        entity = self._get(table_keys.CMDB_TABLE, pk, table_keys.CI_ROW)
        if entity is None:
            self._remember_ci(pk, "", None)
            return
        data = {name: entity.get(name) or None for name in workitem_rows.CI_FIELDS}
        seen = CiSeen(
            key=str(entity["key"]),
            display=str(entity["display"]),
            data={**data, "key": entity["key"], "display": entity["display"]},
            first=to_micros(entity.get("firstSeen")),
            last=to_micros(entity.get("lastSeen")),
        )
        self._remember_ci(pk, entity.metadata["etag"], seen)

    # -- reads (the work item API builds on these) --------------------------------------

    def get_item(self, item_id: str) -> Any | None:
        """The work item entity (with `.metadata["etag"]`), or None."""
        item_id = table_keys.normalize_item_id(item_id)
        return self._get(
            table_keys.WORKITEMS_TABLE,
            table_keys.item_partition(item_id),
            table_keys.item_row(item_id),
        )

    def item_history(self, item_id: str) -> list[Any]:
        """The item's timeline, in event-time order (one single-partition query)."""
        item = self.get_item(item_id)
        if item is None:
            return []
        rows = self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{table_keys.item_partition(item_id)}' and "
            + table_keys.prefix_filter(table_keys.history_prefix(str(item["group"]))),
        )
        mine = [r for r in rows if r.get("itemId") == item["id"]]
        return sorted(
            mine, key=lambda r: (str(r.get("eventTime")), str(r.get("condition")), r["RowKey"])
        )

    def item_cis(self, item_id: str) -> list[Any]:
        """The item -> CI bindings (one single-partition query)."""
        item_id = table_keys.normalize_item_id(item_id)
        return self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{table_keys.item_partition(item_id)}' and "
            + table_keys.prefix_filter(table_keys.binding_prefix(item_id)),
        )

    def group_items(self, partition: str, group: str) -> list[Any]:
        """The work items of one group (rule mode: every episode of a rule and CI set)."""
        rows = self._query(
            table_keys.WORKITEMS_TABLE,
            f"PartitionKey eq '{partition}' and "
            + table_keys.prefix_filter(table_keys.ITEM_PREFIX),
        )
        return [r for r in rows if r.get("group") == group]

    def get_ci(self, ci_key: str) -> Any | None:
        return self._get(table_keys.CMDB_TABLE, table_keys.ci_partition(ci_key), table_keys.CI_ROW)

    def ci_groups(self, ci_key: str) -> list[Any]:
        """The CI -> group bindings: alert-mode rows name their item directly."""
        return self._query(
            table_keys.CMDB_TABLE,
            f"PartitionKey eq '{table_keys.ci_partition(ci_key)}' and "
            + table_keys.prefix_filter(table_keys.CI_ITEM_PREFIX),
        )

    def ci_items(self, ci_key: str) -> list[Any]:
        """Work items touching the CI: one query of the CI, plus one per non-alert group."""
        items = []
        for binding in self.ci_groups(ci_key):
            if binding.get("itemId"):
                item = self.get_item(str(binding["itemId"]))
                items.extend([item] if item is not None else [])
            else:
                items.extend(
                    self.group_items(str(binding["groupPartition"]), str(binding["group"]))
                )
        return items

    # -- manual changes (the work item API) ---------------------------------------------

    def set_state(
        self,
        item_id: str,
        state: str,
        *,
        by: str,
        note: str = "",
        at: int | None = None,
        if_match: str | None = None,
    ) -> Any:
        """A person's state change, conditional on the item's ETag when `if_match` is given.

        Raises ItemNotFound, PreconditionFailed, ValueError (unknown state).
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        item_id = table_keys.normalize_item_id(item_id)
        when = at if at is not None else int(time.time() * 1_000_000)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            item = self.get_item(item_id)
            if item is None:
                raise ItemNotFound(item_id)
            if if_match is not None and item.metadata["etag"] != if_match:
                raise PreconditionFailed(item_id)
            root = self._root_for(item)
            group = root.state.group
            if root.dirty or root.policy != self.policy.fingerprint():
                self._repair(root)
                continue
            overlay = Overlay(
                id="M"
                + table_keys.digest(
                    f"{item_id}|{state}|{when}|{by}|{note}", table_keys.EVENT_CHARS - 1
                ),
                anchor=str(item["anchor"]),
                item_id=item_id,
                state=state,
                at=when,
                by=truncated(by, SHORT_LIMIT) or "",
                note=truncated(note, SHORT_LIMIT * 4) or "",
            )
            updated = with_overlay(root.state, overlay)
            old, new = derive(root.state, self.policy), derive(updated, self.policy)
            ops = workitem_rows.diff(
                workitem_rows.group_rows(old, group), workitem_rows.group_rows(new, group)
            )
            try:
                self._write_group(updated, root.etag, ops)
            except _Conflict:
                _backoff(attempt)
                continue
            finally:
                self._forget_root(group)
            found = self.get_item(item_id)
            if found is None:
                raise ItemNotFound(item_id)
            return found
        raise ContentionError(f"work item {item_id}: {MAX_ATTEMPTS} conflicting attempts")

    def _root_for(self, item: Mapping[str, Any]) -> _Root:
        pk = str(item["PartitionKey"])
        entity = self._get(
            table_keys.WORKITEMS_TABLE, pk, table_keys.ROOT_PREFIX + str(item["group"])
        )
        if entity is None:
            raise ItemNotFound(str(item.get("id")))
        return _root_of(entity)


def _root_of(entity: Any) -> _Root:
    state = state_from_json(join_chunks(entity, STATE_PREFIX))
    return _Root(
        state, entity.metadata["etag"], bool(entity.get("dirty")), str(entity.get("policy"))
    )


def _single(table: TableClient, op: tuple[Any, ...]) -> Mapping[str, Any]:
    """One transaction operation as a plain request (same semantics, same errors)."""
    action, entity = op[0], op[1]
    options: dict[str, Any] = dict(op[2]) if len(op) > 2 else {}
    if action == "create":
        return table.create_entity(entity)
    if action == "update":
        return table.update_entity(entity, **options)
    if action == "upsert":
        return table.upsert_entity(entity, **options)
    table.delete_entity(entity["PartitionKey"], entity["RowKey"], **options)
    return {}


def _rows_of(rows: Mapping[str, Props], item_ids: set[str]) -> set[str]:
    """Row keys of the given items' rows: the items, their bindings, their history."""
    if not item_ids:
        return set()
    return {rk for rk, props in rows.items() if props.get("id", props.get("itemId")) in item_ids}


def _operation(pk: str, op: RowOp, now: str) -> tuple[Any, ...]:
    entity = {"PartitionKey": pk, "RowKey": op.row_key, **op.props}
    if op.action == CREATE:
        return ("create", {**entity, "createdAt": now, "updatedAt": now})
    if op.action == MERGE:
        return ("update", {**entity, "updatedAt": now}, {"mode": UpdateMode.MERGE})
    return ("delete", {"PartitionKey": pk, "RowKey": op.row_key})


@cache
def _store(storage_settings: StorageSettings, policy: Policy) -> WorkItemStore:
    return WorkItemStore(storage.table_service(storage_settings), policy)


def store_for(settings: Settings) -> WorkItemStore:
    """The store for the app's settings (one per distinct storage account and policy)."""
    policy = Policy.of_minutes(
        settings.correlation_mode,
        settings.reopen_window_minutes,
        settings.flap_threshold,
        settings.flap_window_minutes,
    )
    return _store(settings.storage, policy)
