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
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import storage, table_batch, table_keys, workitem_index, workitem_rows
from shared.alert_events import ALERT, FIRED, Ci, Event, GroupKey, iso, to_micros
from shared.config import Settings, StorageSettings
from shared.entity_props import SHORT_LIMIT, join_chunks, split_chunks, truncated
from shared.log_text import get_logger
from shared.workitem_index import INDEX_TABLE, IndexView, ItemFilter
from shared.workitem_rows import CREATE, DELETE, MERGE, Props, RowOp
from shared.workitems import (
    NEW,
    STATES,
    TRANSITIONS,
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
from shared.write_coalescing import PartitionCoalescer

log = get_logger(__name__)

MAX_TRANSACTION_OPS = 100  # Table Storage's limit (Azurite breaks on 101)
# Events of one group processed by this process wait for each other instead of racing:
# the host runs up to 24 messages at once, and a storm on one rule would otherwise spend
# most requests on ETag conflicts. Other instances still race, and the ETags settle that.
SERIALIZE_GROUPS_IN_PROCESS = True
MAX_ATTEMPTS = 40  # conflicts on one group before the message goes back to the queue
CI_ATTEMPTS = 20
CI_CACHE_SIZE = 10_000
ROOT_CACHE_SIZE = 16_384  # group roots this process committed last: their reads are skipped
INDEX_ETAG_CACHE_SIZE = 16_384
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

    def __init__(self, item_id: str, etag: str = "") -> None:
        super().__init__(item_id)
        self.etag = etag  # the item's current ETag


class InvalidTransition(Exception):
    """A person asked for a state the item cannot go to from where it is."""

    def __init__(self, item_id: str, current: str, requested: str, allowed: Sequence[str]):
        super().__init__(f"{item_id}: {current} -> {requested}")
        self.current = current
        self.requested = requested
        self.allowed = tuple(allowed)

    def describe(self) -> str:
        if not self.allowed:
            return "be changed: it is archived (its group outgrew the root; see docs/data-model.md)"
        if self.requested == NEW:
            return "be reopened: only Resolved and Closed items can"
        if self.requested == self.current:
            return f"go to {self.requested}: it is {self.current} already"
        return f"go to {self.requested}"


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
    seq: int = 0  # commits of this group so far: index rows carry the one that wrote them


@dataclass
class Page:
    """One page of a listing: the entities, where the next page starts, what it cost."""

    items: list[Any]
    after: str | None  # position for the next page; None: this was the last
    stats: Counter[str] = field(default_factory=Counter)


def _now() -> str:
    return iso(int(time.time() * 1_000_000)) or ""


def _is_table_missing(exc: HttpResponseError) -> bool:
    code = getattr(exc, "error_code", None)  # a str, or a TableErrorCode (a str enum)
    if code is None:  # create_entity raises it undecoded: the header still says
        code = getattr(exc.response, "headers", {}).get("x-ms-error-code")
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
_INDEX_ETAGS: _LruCache[str] = _LruCache(INDEX_ETAG_CACHE_SIZE)  # rows this process wrote


def clear_caches() -> None:
    """Forget remembered entities (after deleting tables or rows behind the app's back)."""
    _CI_CACHE.clear()
    _ROOT_CACHE.clear()
    _INDEX_ETAGS.clear()
    _MONTHS.clear()


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
            names = (*table_keys.TABLES, INDEX_TABLE)
            known = (service, {name: service.get_table_client(name) for name in names})
            _CLIENTS[id(service)] = known
        return known[1]


class WorkItemStore:
    """Reads and conditional writes of work items, history, bindings and CIs."""

    def __init__(self, service: TableServiceClient, policy: Policy) -> None:
        self.policy = policy
        self._account = service.url
        self._tables = _table_clients(service)
        # Index rows of concurrent events share a few partitions: sent together.
        self._coalescers = {
            name: _coalescer(self._tables[name]) for name in (INDEX_TABLE, table_keys.CMDB_TABLE)
        }

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

    def _root_entity(self, state: GroupState, dirty: bool, seq: int) -> Props:
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
        index = _IndexWrites()
        guessed = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            # The root this process committed last saves a read, unless the event is in it
            # already: a duplicate is confirmed by the table, never by a cache.
            cached = _ROOT_CACHE.get(self._root_key(group)) if attempt == 1 else None
            if cached is not None and cached.policy == self.policy.fingerprint():
                root = cached if merge(cached.state, event) is not None else self._read_root(group)
            elif attempt == 1 and _probably_opens_its_group(event):
                # Skip the read: the commit creates the root only if it is absent, and a
                # wrong guess costs one failed request, then the usual read and retry.
                root = _Root(GroupState(group), None, False, self.policy.fingerprint())
                guessed = True
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
                if index.etags:  # a guess widened index rows for a state that is not there
                    index.start_attempt(index.seq)
                    self._index_after(_IndexPlan.of((), _index_views(new)), index)
                return ApplyResult("duplicate", group, items, attempt)
            if event_facts is None:
                event_facts = facts()
            old = derive(root.state, self.policy)
            ops = self._plan(group, old, new, event, event_facts)
            seq = root.seq + 1
            plan = _index_plan(old, new, merged)
            ops = _with_index_seq(ops, plan.changed, seq)
            index.start_attempt(seq)
            index_ops = self._known_etags(_index_ops(plan, seq), index)
            rest = self._touch_cis(group, root.state, event, index_ops, index)
            self._index_before(plan, rest, index)
            try:
                etag = self._write_group(merged, root.etag, ops, seq)
            except _Conflict:
                self._forget_root(group)
                if not (guessed and attempt == 1):  # a wrong guess is no contention
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
            self._remember_root(_Root(merged, etag, False, self.policy.fingerprint(), seq))
            self._index_after(plan, index)
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

    def _write_group(
        self, state: GroupState, etag: str | None, ops: list[RowOp], seq: int = 0
    ) -> str | None:
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
                root = self._root_entity(state, dirty, seq)
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
            self._write_group(root.state, root.etag, ops, seq)
        except (_Conflict, _Broken) as exc:
            log.warning(
                "repair of group %s interrupted (%s); the next attempt retries",
                group.key[:200],
                exc,
            )
            return
        self._index_after(plan, index)

    # -- indexes for the work item API (docs/data-model.md, "Indexes") ------------------

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
            elif key[0] == workitem_index.OPEN_PARTITION and (
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
        """The months partitions hold items of (listing by month walks only those)."""
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

    def _months(self) -> list[str]:
        rows = self._query(INDEX_TABLE, f"PartitionKey eq '{workitem_index.MONTHS_PARTITION}'")
        return [str(r["RowKey"]) for r in rows if workitem_index.is_month(str(r["RowKey"]))]

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

    # -- the CMDB for the API ------------------------------------------------------------

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

    def _write_ci_name(self, ci: Ci, pk: str) -> None:
        """The CI's row in the name index (immutable: blind upserts agree)."""
        name = str(ci.data.get("name") or ci.display)
        entity = {
            "PartitionKey": workitem_index.CI_NAMES_PARTITION,
            "RowKey": workitem_index.ci_name_row(name, pk),
            **workitem_index.ci_name_props(ci.data, ci.key, ci.display),
        }
        operation = ("upsert", entity, {"mode": UpdateMode.REPLACE})
        self._call(INDEX_TABLE, lambda _t: self._coalesced(INDEX_TABLE, operation))

    # -- CMDB ---------------------------------------------------------------------------

    def _touch_cis(
        self,
        group: GroupKey,
        before: GroupState,
        event: Event,
        index_ops: list[IndexOp],
        writes: _IndexWrites,
    ) -> list[IndexOp]:
        """Write what the event adds to its CIs: first/last seen, spelling, the group
        binding, and the CI's new index rows (see workitem_index.location), one transaction
        per CI. Returns the index writes left for `_index_before`."""
        carried: dict[str, list[IndexOp]] = {}
        rest: list[IndexOp] = []
        for op in index_ops:
            table, pk, _ = workitem_index.location(op[1])
            if op[0] in WRITES and table == table_keys.CMDB_TABLE:  # merged there
                carried.setdefault(pk, []).append(op)
            else:
                rest.append(op)
        for ci in event.cis:
            rows = carried.pop(table_keys.ci_partition(ci.key), [])
            known = before.ci(ci.key)
            if not rows and ci_covered(known, ci, event.seen_time):
                continue  # written before the group committed what it knows about this CI
            bind = group if known is None else None
            writes.etags.update(self._write_ci(ci, event.seen_time, bind, rows))
        for rows in carried.values():  # CIs of the group that this event does not name
            rest.extend(rows)
        return rest

    def _cached_ci(self, pk: str) -> tuple[str, CiSeen] | None:
        return _CI_CACHE.get((self._account, pk))

    def _remember_ci(self, pk: str, etag: str, seen: CiSeen | None) -> None:
        _CI_CACHE.put((self._account, pk), None if seen is None else (etag, seen))

    def _write_ci(
        self, ci: Ci, at: int | None, bind: GroupKey | None, index_rows: Sequence[IndexOp] = ()
    ) -> dict[workitem_index.Key, str]:
        """One transaction in the CI's partition: the CI (conditionally), a group binding,
        index rows of its items (MERGE); returns the index rows' ETags.

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
            ops.extend(_merge_upsert(key, props) for _, key, props in index_rows)
            if not ops:
                return {}
            if cached is None and write_row and _attempt == 0:
                # A CI this process does not know: make sure the name index has it
                # (immutable, idempotent; before the CI exists, so a search never misses it).
                self._write_ci_name(ci, pk)
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
            answers = result[len(ops) - len(index_rows) :]
            return {op[1]: str(a.get("etag")) for op, a in zip(index_rows, answers, strict=True)}
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

        No transition rules (update_item applies them). Raises ItemNotFound,
        PreconditionFailed, ValueError (unknown state).
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        return self.update_item(
            item_id,
            Change(state=state, note=note),
            Actor(by),
            if_match=None if if_match is None else (if_match,),
            at=at,
            check_transition=False,
        )

    def update_item(
        self,
        item_id: str,
        change: Change,
        actor: Actor,
        *,
        if_match: Sequence[str] | None = None,
        at: int | None = None,
        check_transition: bool = True,
    ) -> Any:
        """A person's change to a work item: all of it, in one conditional write, or nothing.

        `if_match`: the item ETags the caller accepts (None: any). The check is airtight:
        the item is read again after its group root, and the write is conditional on that
        root, so nothing can change the item between the check and the write. Raises
        ItemNotFound, PreconditionFailed (with the current ETag), InvalidTransition.
        """
        item_id = table_keys.normalize_item_id(item_id)
        when = at if at is not None else int(time.time() * 1_000_000)
        index = _IndexWrites()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            item = self.get_item(item_id)
            if item is None:
                raise ItemNotFound(item_id)
            root = self._root_for(item)
            group = root.state.group
            if root.dirty or root.policy != self.policy.fingerprint():
                self._repair(root)
                continue
            if if_match is not None:
                item = self.get_item(item_id)  # as of the root we will write conditionally
                if item is None:
                    raise ItemNotFound(item_id)
                if item.metadata["etag"] not in if_match:
                    raise PreconditionFailed(item_id, str(item.metadata["etag"]))
            old = derive(root.state, self.policy)
            view = old.items.get(item_id)
            if view is None:  # archived (compaction): its rows are frozen for good
                current = str(item.get("state"))
                raise InvalidTransition(item_id, current, change.state or current, ())
            if check_transition and change.state and change.state not in TRANSITIONS[view.state]:
                raise InvalidTransition(item_id, view.state, change.state, TRANSITIONS[view.state])
            overlay = _overlay(item_id, view.anchor, change, actor, when)
            updated = with_overlay(root.state, overlay)
            new = derive(updated, self.policy)
            ops = workitem_rows.diff(
                workitem_rows.group_rows(old, group), workitem_rows.group_rows(new, group)
            )
            seq = root.seq + 1
            plan = _index_plan(old, new, updated)
            ops = _with_index_seq(ops, plan.changed, seq)
            index.start_attempt(seq)
            self._index_before(plan, _index_ops(plan, seq), index)
            try:
                self._write_group(updated, root.etag, ops, seq)
            except _Conflict:
                _backoff(attempt)
                continue
            except _Broken as exc:
                log.warning("work item %s: rows disagree with the root (%s)", item_id, exc)
                self._repair(self._root_for(item))
                continue
            finally:
                self._forget_root(group)
            self._index_after(plan, index)
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


# -- manual changes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a person changes (the work item API's PATCH), applied together or not at all."""

    state: str = ""  # "" keeps the state; "New" reopens
    note: str = ""
    assignee: str | None = None  # None keeps it, "" clears it
    assignment_group: str | None = None  # None keeps it, "" goes back to the alert's
    priority: int | None = None  # None keeps it, 0 goes back to the alert's


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the history records it (from the verified token)."""

    name: str  # shown in sentences: the user's upn, or "app <app id>"
    type: str = ""  # "user" or "application"
    oid: str = ""  # object id of the user or service principal
    app_id: str = ""  # the client app the request came through


MAX_NOTE = 4096


def _overlay(item_id: str, anchor: str, change: Change, actor: Actor, when: int) -> Overlay:
    fields = [
        item_id,
        change.state,
        when,
        actor.name,
        actor.oid,
        change.note,
        change.assignee,
        change.assignment_group,
        change.priority,
    ]
    return Overlay(
        id="M" + table_keys.digest(repr(fields), table_keys.EVENT_CHARS - 1),
        anchor=anchor,
        item_id=item_id,
        state=change.state,
        at=when,
        by=truncated(actor.name, SHORT_LIMIT) or "",
        note=truncated(change.note, MAX_NOTE) or "",
        by_type=actor.type,
        by_oid=actor.oid[:64],
        by_app=actor.app_id[:64],
        assignee=None if change.assignee is None else truncated(change.assignee, SHORT_LIMIT),
        assignment_group=(
            None
            if change.assignment_group is None
            else truncated(change.assignment_group, SHORT_LIMIT)
        ),
        priority=change.priority,
    )


# -- index bookkeeping (pure) ---------------------------------------------------------------

STALE_INDEX_GRACE_SECONDS = 600  # a row of a missing item younger than this may be in flight
INDEX_THREADS = 16

_MONTHS: set[tuple[str, str]] = set()  # (account, month) registered in the months partition
_POOL = ThreadPoolExecutor(max_workers=INDEX_THREADS, thread_name_prefix="store")

A = TypeVar("A")


def _month_stream(flt: ItemFilter, month: str) -> str:
    """The logical index partition a listing reads in `month`: open rows, or all items."""
    return workitem_index.OPEN_PARTITION if flt.open_only else workitem_index.month_partition(month)


def _merge_upsert(key: workitem_index.Key, props: Props) -> tuple[Any, ...]:
    """An index row's MERGE upsert, as a transaction operation, where the row is stored."""
    return ("upsert", workitem_index.stored_entity(key, props)[1], {"mode": UpdateMode.MERGE})


def _index_write_op(op: IndexOp) -> tuple[Any, ...]:
    """A "create" or "upsert" index op as a transaction operation."""
    action, key, props = op
    if action == "create":
        return ("create", workitem_index.stored_entity(key, props)[1])
    return _merge_upsert(key, props)


def _coalescer(table: TableClient) -> PartitionCoalescer:
    return PartitionCoalescer(
        lambda ops: table_batch.submit_transaction(table, ops), lambda op: _single(table, op)
    )


IndexOp = tuple[str, workitem_index.Key, Props]  # ("create" | "upsert" | "touch", key, props)
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
        narrowed = key[0] == workitem_index.OPEN_PARTITION and workitem_index.narrows(old, props)
        if old is None:
            # A row the old state did not have is created; if it is there after all (a
            # retry, an interrupted attempt), `_index_write` merges into it instead. Same
            # outcome as a MERGE upsert, which Azurite pays with two partition scans.
            ops.append(("create", key, {**props, "seq": seq}))
        elif workitem_index.widens(old, props) or narrowed:  # only open rows are narrowed
            ops.append(("upsert", key, {**props, "seq": seq}))
    ops.extend(("touch", key, {"seq": seq}) for key in plan.gone)
    return ops


def _probably_opens_its_group(event: Event) -> bool:
    """In alert mode a group is one alert instance, and its Fired nearly always comes first
    (a retry, a copy or an early Resolved are the exceptions, and cost one request)."""
    return event.group.kind == ALERT and event.condition == FIRED


def _parallel(fn: Callable[[A], T], items: Sequence[A]) -> list[T]:
    """fn over items, a few at a time, results in order; the first exception is raised."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    return list(_POOL.map(fn, items))


INDEX_WRITE_ATTEMPTS = 4


def _retrying(fn: Callable[[], T]) -> T:
    """`fn` again after a transient failure. For idempotent index writes sent as MERGE
    (HTTP PATCH), which the SDK's retry policy does not repeat after a read timeout."""
    for attempt in range(1, INDEX_WRITE_ATTEMPTS + 1):
        try:
            return fn()
        except (ServiceRequestError, ServiceResponseError):
            if attempt == INDEX_WRITE_ATTEMPTS:
                raise
        except HttpResponseError as exc:
            if attempt == INDEX_WRITE_ATTEMPTS or exc.status_code not in _TRANSIENT_STATUS:
                raise
        _backoff(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


_TRANSIENT_STATUS = frozenset((408, 429, 500, 502, 503, 504))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _index_views(derived: Derived, skip: Iterable[str] = ()) -> list[IndexView]:
    skipped = set(skip)
    cis = tuple(sorted({workitem_index.ci_hash(c.key) for c in derived.cis}))
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


def _root_of(entity: Any) -> _Root:
    state = state_from_json(join_chunks(entity, STATE_PREFIX))
    seq = entity.get("seq")
    return _Root(
        state,
        entity.metadata["etag"],
        bool(entity.get("dirty")),
        str(entity.get("policy")),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
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
