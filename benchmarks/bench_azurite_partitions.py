"""What an entity operation costs Azurite by the size of its partition (not of its table).

    .venv/bin/python benchmarks/bench_azurite_partitions.py [--rows 8000] [--ops 200]

Explains the storm benchmark at 5,000 alerts: Azurite (LokiJS) finds an entity by scanning
its partition, so the index's month partition, which holds every item of a storm, costs it
more per operation as it grows; Azure Table Storage has no such cost. Measured as Azurite's
own CPU (its node process) per transaction of two upserts, and per point read, in:
an empty table; a table of `rows` x 5 entities in small partitions; one partition of `rows`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # type: ignore[import-untyped]
from azure.data.tables import TableClient, UpdateMode

from shared import table_batch
from tests.azurite import Azurite


def _node(server: Azurite) -> psutil.Process:
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    return next(p for p in [root, *root.children(recursive=True)] if "node" in p.name())


def _fill(table: TableClient, partition: Callable[[int], str], rows: int) -> None:
    ops = [
        ("upsert", {"PartitionKey": partition(i), "RowKey": f"{i:07d}"}, {"mode": UpdateMode.MERGE})
        for i in range(rows)
    ]
    for start in range(0, rows, 100):  # a transaction holds one partition
        chunk = ops[start : start + 100]
        groups: dict[str, list[tuple[object, ...]]] = {}
        for op in chunk:
            groups.setdefault(str(op[1]["PartitionKey"]), []).append(op)
        for group in groups.values():
            table_batch.submit_transaction(table, group)


def _measure(node: psutil.Process, table: TableClient, pk: Callable[[int], str], ops: int) -> str:
    def cpu() -> float:
        return float(sum(node.cpu_times()[:2]))

    start = cpu()
    for i in range(ops):
        pair = [
            (
                "upsert",
                {"PartitionKey": pk(i), "RowKey": f"x{i}", "v": 1},
                {"mode": UpdateMode.MERGE},
            ),
            (
                "upsert",
                {"PartitionKey": pk(i), "RowKey": f"y{i}", "v": 1},
                {"mode": UpdateMode.MERGE},
            ),
        ]
        table_batch.submit_transaction(table, pair)
    middle = cpu()
    for i in range(ops):
        table.get_entity(pk(i), f"x{i}")
    end = cpu()
    return (
        f"{(middle - start) / ops * 1000:6.2f} ms per 2-upsert transaction, "
        f"{(end - middle) / ops * 1000:5.2f} ms per point read"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # plain-HTTP Azurite, as in Azure
        os.environ.pop(name, None)
    server = Azurite()
    server.start()
    try:
        node = _node(server)
        table = TableClient.from_connection_string(server.connection_string, "partitions")
        table.create_table()
        _measure(node, table, lambda i: f"warm{i}", 50)  # JIT and connection warm-up
        print(f"Azurite CPU, {args.ops} operations each:")
        cases: list[tuple[str, Callable[[int], str], Callable[[int], str] | None, int]] = [
            ("empty table, small partitions", lambda i: f"a{i}", None, 0),
            (
                f"{args.rows * 5:,} rows in partitions of 5",
                lambda i: f"b{i}",
                lambda i: f"p{i // 5}",
                args.rows * 5,
            ),
            (f"one partition of {args.rows:,} rows", lambda _i: "big", lambda _i: "big", args.rows),
        ]
        for label, partition, fill, rows in cases:
            if fill is not None:
                _fill(table, fill, rows)
            print(f"  {label:36} {_measure(node, table, partition, args.ops)}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
