"""Table plumbing, caches and locks shared by the store's parts.

docs/data-model.md, "Correctness under concurrency and failure": the lock, the caches.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import table_batch, table_keys, workitem_index
from shared.alert_events import GroupKey, iso
from shared.log_text import get_logger
from shared.workitem_index import INDEX_TABLE
from shared.workitem_rows import CREATE, MERGE, Props, RowOp
from shared.workitems import (
    NEW,
    CiSeen,
    GroupState,
    Policy,
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


# Storage answers that a retry cannot change (entity or property too large, bad request).
PERMANENT_STATUSES = (400, 413)


class WriteRefused(Exception):
    """An event's writes can never be stored: Table Storage refused them for good (400,
    413), or a value fits no entity. Every attempt fails the same way (the message belongs
    in the poison queue); `item_ids` names the work items the event belongs to, if known."""

    def __init__(self, item_ids: Sequence[str], reason: str) -> None:
        super().__init__(reason)
        self.item_ids = tuple(item_ids)
        self.reason = reason


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
            return (
                "be changed: it is archived (it ended before its group's horizon; "
                "see docs/data-model.md)"
            )
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
    # The state's own rows as read (None: all of them exist). A root written before the
    # state had rows keeps its events in its JSON: the next commit creates their rows.
    stored: frozenset[str] | None = None
    pending: frozenset[str] = frozenset()  # a dirty root: rows its commit had yet to write


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


_MONTHS: set[tuple[str, str]] = set()  # (account, month) registered in the months partition


INDEX_THREADS = 16


_POOL = ThreadPoolExecutor(max_workers=INDEX_THREADS, thread_name_prefix="store")


A = TypeVar("A")


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


def _operation(pk: str, op: RowOp, now: str) -> tuple[Any, ...]:
    entity = {"PartitionKey": pk, "RowKey": op.row_key, **op.props}
    if op.action == CREATE:
        return ("create", {**entity, "createdAt": now, "updatedAt": now})
    if op.action == MERGE:
        return ("update", {**entity, "updatedAt": now}, {"mode": UpdateMode.MERGE})
    return ("delete", {"PartitionKey": pk, "RowKey": op.row_key})


def _coalescer(table: TableClient) -> PartitionCoalescer:
    return PartitionCoalescer(
        lambda ops: table_batch.submit_transaction(table, ops), lambda op: _single(table, op)
    )


IndexOp = tuple[str, workitem_index.Key, Props]  # ("create" | "upsert" | "touch", key, props)


class _Tables:
    """The store's base part (shared.store.WorkItemStore combines them)."""

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

    def _get(self, name: str, pk: str, rk: str, select: Sequence[str] | None = None) -> Any | None:
        def get(t: TableClient) -> Any | None:
            try:
                if select is not None:
                    return t.get_entity(pk, rk, select=list(select))
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
