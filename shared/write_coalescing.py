"""Independent single-entity writes to one partition, sent together as one transaction.

A storm sends most index writes to a few partitions at once (its fired month's):
dozens of threads each writing one small row. Here the first writer to arrive for a
partition sends what is pending as one entity group transaction while later arrivals
wait; whatever arrived meanwhile goes in the next one ("group commit"). There is no timer,
so a lone writer is sent at once, alone, exactly as before.

Every caller still gets the answer its own operation would have had: a transaction is all
or nothing, so when one fails, each caller sends its operation again alone, from its own
thread, and gets its own result or exception. Operations must be independent (any order,
any grouping is the same as sending them one by one), which holds for the index rows:
each is a MERGE, an insert (whose failure its caller handles), or a write conditional on
an ETag its caller holds; a transaction never holds two operations on one row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

Operation = tuple[Any, ...]  # ("upsert" | "update" | "delete", entity, options): TableClient form
Result = Mapping[str, Any]

MAX_OPERATIONS = 100  # Table Storage's limit per transaction
_ALONE: Result = {}  # a waiter's answer that says: send your operation yourself


class _Partition:
    def __init__(self) -> None:
        self.pending: list[tuple[Operation, Future[Result]]] = []
        self.sending = False


class PartitionCoalescer:
    """Send operations through `send_batch` (a transaction) or `send_one` (a plain request)."""

    def __init__(
        self,
        send_batch: Callable[[list[Operation]], list[Result]],
        send_one: Callable[[Operation], Result],
    ) -> None:
        self._send_batch = send_batch
        self._send_one = send_one
        self._lock = threading.Lock()
        self._partitions: dict[str, _Partition] = {}

    def submit(self, operation: Operation) -> Result:
        """Send `operation` (alone or with others to its partition); its result or error."""
        outcome = self.submit_many([operation])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def submit_many(self, operations: list[Operation]) -> list[Result | Exception]:
        """Send operations on one partition, together when they fit one transaction (and
        with others' when they arrive meanwhile); each one's result or exception."""
        pk = str(operations[0][1]["PartitionKey"])
        mine: list[Future[Result]] = [Future() for _ in operations]
        with self._lock:
            partition = self._partitions.setdefault(pk, _Partition())
            partition.pending.extend(zip(operations, mine, strict=True))
            lead = not partition.sending
            partition.sending = True
        if lead:
            self._drain(pk, partition, mine[0] if len(mine) == 1 else None)
        outcomes: list[Result | Exception] = []
        for operation, future in zip(operations, mine, strict=True):
            try:
                outcome = future.result()
                outcomes.append(self._send_one(operation) if outcome is _ALONE else outcome)
            except Exception as exc:  # the caller's to raise or handle
                outcomes.append(exc)
        return outcomes

    def _drain(self, pk: str, partition: _Partition, mine: Future[Result] | None) -> None:
        """Send batches until nothing is pending, then hand the partition back. Requests
        go out from their owner's thread wherever they can (a lone operation, a retry
        after a failed transaction): only a transaction is sent on others' behalf."""
        while True:
            with self._lock:
                batch = _take(partition.pending)
                if not batch:
                    partition.sending = False
                    if self._partitions.get(pk) is partition and not partition.pending:
                        del self._partitions[pk]
                    return
            if mine is not None and len(batch) == 1 and batch[0][1] is mine:
                _settle(mine, self._send_one, batch[0][0])
            else:
                self._send(batch)

    def _send(self, batch: list[tuple[Operation, Future[Result]]]) -> None:
        results = self._try_batch([op for op, _ in batch]) if len(batch) > 1 else None
        if results is None:  # another's lone operation, or a failed transaction
            for _, future in batch:
                future.set_result(_ALONE)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

    def _try_batch(self, operations: list[Operation]) -> list[Result] | None:
        """The transaction's results, or None when it failed."""
        try:
            return self._send_batch(operations)
        except Exception:
            return None


def _settle(future: Future[Result], send: Callable[[Operation], Result], op: Operation) -> None:
    try:
        future.set_result(send(op))
    except Exception as exc:  # it belongs to the future's owner
        future.set_exception(exc)


def _take(
    pending: list[tuple[Operation, Future[Result]]],
) -> list[tuple[Operation, Future[Result]]]:
    """Up to MAX_OPERATIONS pending operations on distinct rows (a transaction may not
    touch a row twice); the rest stay pending for the next transaction."""
    taken: list[tuple[Operation, Future[Result]]] = []
    rows: set[str] = set()
    rest: list[tuple[Operation, Future[Result]]] = []
    for entry in pending:
        row = str(entry[0][1]["RowKey"])
        if len(taken) < MAX_OPERATIONS and row not in rows:
            taken.append(entry)
            rows.add(row)
        else:
            rest.append(entry)
    pending[:] = rest
    return taken
