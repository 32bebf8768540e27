"""shared.write_coalescing: concurrent writes to one partition share transactions, and each
caller gets exactly the answer its own operation would have had (against Azurite)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import table_batch
from shared.store.base import _single
from shared.write_coalescing import MAX_OPERATIONS, Operation, PartitionCoalescer, Result

STALE = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""


class Counted:
    """The real senders, counting what went out."""

    def __init__(self, table: TableClient, hold: threading.Event | None = None) -> None:
        self.table = table
        self.batches: list[int] = []
        self.singles = 0
        self.hold = hold
        self.entered = threading.Event()
        self.senders: dict[int, int] = {}  # operation (id) -> thread that sent it alone
        self._lock = threading.Lock()

    def batch(self, ops: list[Operation]) -> list[Result]:
        with self._lock:
            self.batches.append(len(ops))
        return table_batch.submit_transaction(self.table, ops)

    def one(self, op: Operation) -> Result:
        if self.hold is not None:
            self.entered.set()
            self.hold.wait(10)  # keep the first request in flight while others queue up
        with self._lock:
            self.singles += 1
            self.senders[id(op)] = threading.get_ident()
        return _single(self.table, op)


@pytest.fixture
def table(storage: str) -> TableClient:
    client = TableServiceClient.from_connection_string(storage).get_table_client("coalesce")
    client.create_table()
    return client


def _upsert(pk: str, rk: str, **props: Any) -> Operation:
    return ("upsert", {"PartitionKey": pk, "RowKey": rk, **props}, {"mode": UpdateMode.MERGE})


def _queue_behind_a_lone_write(
    coalescer: PartitionCoalescer, counted: Counted, hold: threading.Event, ops: list[Operation]
) -> list[Any]:
    """One write goes out alone and is held; `ops` arrive meanwhile, then it is released."""
    with ThreadPoolExecutor(len(ops) + 1) as pool:
        first = pool.submit(coalescer.submit, _upsert("p", "first"))
        assert counted.entered.wait(10)
        futures = [pool.submit(_outcome, coalescer, op) for op in ops]
        while len(coalescer._partitions["p"].pending) < len(ops):
            threading.Event().wait(0.01)
        hold.set()
        first.result()
        outcomes = [f.result() for f in futures]
    for op, (_, thread) in zip(ops, outcomes, strict=True):
        if id(op) in counted.senders:  # sent alone: by the thread that asked, never another
            assert counted.senders[id(op)] == thread
    return [result for result, _ in outcomes]


def _outcome(coalescer: PartitionCoalescer, op: Operation) -> Any:
    try:
        return coalescer.submit(op), threading.get_ident()
    except HttpResponseError as exc:
        return exc, threading.get_ident()


def test_a_lone_write_goes_out_alone_at_once(table: TableClient) -> None:
    counted = Counted(table)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    result = coalescer.submit(_upsert("p", "a", x=1))
    assert counted.singles == 1
    assert counted.batches == []
    assert result["etag"] == table.get_entity("p", "a").metadata["etag"]


def test_writes_arriving_together_share_one_transaction(table: TableClient) -> None:
    hold = threading.Event()
    counted = Counted(table, hold)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    ops = [_upsert("p", f"r{n:02d}", n=n) for n in range(20)]
    results = _queue_behind_a_lone_write(coalescer, counted, hold, ops)
    assert counted.singles == 1  # the first, alone
    assert counted.batches == [20]  # everyone who came meanwhile, together
    for n, result in enumerate(results):
        stored = table.get_entity("p", f"r{n:02d}")
        assert stored["n"] == n
        assert result["etag"] == stored.metadata["etag"]  # each caller gets its own ETag


def test_a_failing_write_fails_alone_and_the_others_land(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "kept", "v": 1})
    hold = threading.Event()
    counted = Counted(table, hold)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    stale_delete: Operation = (
        "delete",
        {"PartitionKey": "p", "RowKey": "kept"},
        {"etag": STALE, "match_condition": MatchConditions.IfNotModified},
    )
    ops = [_upsert("p", "x1", v=1), stale_delete, _upsert("p", "x2", v=2)]
    results = _queue_behind_a_lone_write(coalescer, counted, hold, ops)
    assert counted.batches == [3]  # tried together, failed as a whole...
    assert isinstance(results[1], ResourceModifiedError)  # ...so each went alone
    assert table.get_entity("p", "kept")["v"] == 1
    assert table.get_entity("p", "x1")["v"] == 1
    assert table.get_entity("p", "x2")["v"] == 2
    assert results[0]["etag"] == table.get_entity("p", "x1").metadata["etag"]


def test_the_same_row_twice_goes_in_separate_transactions(table: TableClient) -> None:
    hold = threading.Event()
    counted = Counted(table, hold)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    ops = [_upsert("p", "same", a=1), _upsert("p", "other", b=1), _upsert("p", "same", c=1)]
    results = _queue_behind_a_lone_write(coalescer, counted, hold, ops)
    assert not any(isinstance(r, Exception) for r in results)
    assert counted.singles == 2
    assert counted.batches == [2]
    stored = table.get_entity("p", "same")
    assert (stored["a"], stored["c"]) == (1, 1)


def test_a_transaction_holds_at_most_the_service_limit(table: TableClient) -> None:
    hold = threading.Event()
    counted = Counted(table, hold)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    ops = [_upsert("p", f"r{n:03d}") for n in range(MAX_OPERATIONS + 5)]
    results = _queue_behind_a_lone_write(coalescer, counted, hold, ops)
    assert not any(isinstance(r, Exception) for r in results)
    assert sorted(counted.batches) == [5, MAX_OPERATIONS]
    assert len(list(table.query_entities("PartitionKey eq 'p'"))) == MAX_OPERATIONS + 6


def test_many_writers_on_many_partitions_all_land(table: TableClient) -> None:
    counted = Counted(table)
    coalescer = PartitionCoalescer(counted.batch, counted.one)
    ops = [_upsert(f"p{n % 3}", f"r{n:03d}", n=n) for n in range(150)]
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(coalescer.submit, ops))
    assert all("etag" in r for r in results)
    assert len(list(table.query_entities(""))) == 150
    assert counted.singles + sum(counted.batches) == 150
    assert not coalescer._partitions  # nothing left behind
