"""Client CPU per storage request: the app's clients (shared/storage.py, on
shared/storage_transport.py) against the SDKs' defaults, measured in the same run.

    .venv/bin/python benchmarks/bench_storage_transport.py [--rounds 5] [--requests 400]

Method (after the SDK floor study of issue 20, copied here): one Azurite on loopback, one
process; for each round, each operation, each variant (order rotated every round): warm-up requests,
then `--requests` measured ones, timed with time.process_time() (this process's CPU: the
client's whole stack, not Azurite's). The ratio that counts is app/sdk within one round;
the median over the rounds is reported. Operations, as the app makes them:

- upsert: upsert_entity (merge) of a ~1 KB entity (9 strings, an int, a bool, a datetime);
- get: get_entity;
- send: queue send_message of ~2 KB of text;
- txn: a transaction of 3 upserts in one partition, three ways: the SDK's submit_transaction
  on default clients (sdk), the SDK's submit_transaction on the app's clients (sdk-app), and
  shared/table_batch.py on the app's clients (app: what the app sends).

Target (issue 20): app/sdk <= 0.5 for upsert, get and send. Exits 1 when missed. CA bundle
and proxy variables are cleared first, as in Azure's workers (with them the app's clients
fall back to the SDK's transport).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.core.settings import settings as sdk_settings
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from shared import storage, storage_transport, table_batch
from shared.config import load_settings
from tests.azurite import Azurite

TARGET = 0.5
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
NROWS = 50  # upserts cycle over these rows so the table does not grow
_FILL = "x" * 90
_TS = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
MESSAGES = [
    json.dumps({"alertId": f"a-{i}", "payload": "y" * 1900, "n": i}, separators=(",", ":"))
    for i in range(16)
]


def entity(i: int, pk: str = "p1") -> dict[str, Any]:
    e: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"r{i % NROWS}"}
    for k in range(9):
        e[f"Field{k}"] = f"{k}-{i}-{_FILL}"
    e.update(Count=i, Open=True, Received=_TS)
    return e


Op = Callable[[int], object]


def operations(conn: str) -> dict[str, dict[str, Op]]:
    """{op: {variant: callable(i)}}."""
    settings = load_settings(
        {"AzureWebJobsStorage": conn, "AAD_TENANT_IDS": TENANT, "AAD_AUDIENCES": "api://bench"}
    ).storage
    sdk_table = TableClient.from_connection_string(conn, "bench")
    sdk_queue = QueueClient.from_connection_string(conn, "bench")
    app_table = storage.table_service(settings).get_table_client("bench")
    app_queue = storage.queue_client(settings, "bench")
    sdk_table.create_table()
    sdk_queue.create_queue()
    kinds: list[type] = []  # what the benchmark measures: the app's clients on our transport
    app_queue.get_queue_properties(raw_response_hook=lambda r: kinds.append(type(r.http_response)))
    assert kinds == [storage_transport.StorageResponse], kinds

    def txn(i: int) -> list[tuple[str, dict[str, Any]]]:
        return [("upsert", entity(i + n, pk="t")) for n in range(3)]

    return {
        "upsert": {
            "sdk": lambda i: sdk_table.upsert_entity(entity(i), mode=UpdateMode.MERGE),
            "app": lambda i: app_table.upsert_entity(entity(i), mode=UpdateMode.MERGE),
        },
        "get": {
            "sdk": lambda i: sdk_table.get_entity("p1", f"r{i % NROWS}"),
            "app": lambda i: app_table.get_entity("p1", f"r{i % NROWS}"),
        },
        "send": {
            "sdk": lambda i: sdk_queue.send_message(MESSAGES[i % 16]),
            "app": lambda i: app_queue.send_message(MESSAGES[i % 16]),
        },
        "txn": {
            "sdk": lambda i: sdk_table.submit_transaction(txn(i)),
            "sdk-app": lambda i: app_table.submit_transaction(txn(i)),
            "app": lambda i: table_batch.submit_transaction(app_table, txn(i)),
        },
    }


def sdk_settings_as(variant: str) -> None:
    """The app settles azure-core's tracing settings and the "azure" loggers' level
    (shared/storage.py, settle_sdk); an SDK left at its defaults does not. They are
    process-wide: put them as each variant has them. (This process's root logger stays at
    WARNING, so the defaults do not pay for HttpLoggingPolicy's INFO records here, as they
    would in a Functions worker, whose root logger is at INFO.)"""
    if variant == "sdk":
        sdk_settings.tracing_enabled.unset_value()
        sdk_settings.tracing_implementation.unset_value()
        logging.getLogger("azure").setLevel(logging.NOTSET)
    else:
        logging.getLogger("azure").setLevel(logging.WARNING)
        sdk_settings.tracing_enabled = sdk_settings.tracing_enabled()
        sdk_settings.tracing_implementation = sdk_settings.tracing_implementation()


def measure(fn: Op, n: int, warmup: int) -> float:
    """Client CPU per call, in microseconds."""
    for i in range(warmup):
        fn(i)
    started = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    for name in list(os.environ):
        if name.lower() in storage_transport.FALLBACK_VARIABLES:
            del os.environ[name]
    server = Azurite()
    server.start()
    try:
        ops = operations(server.connection_string)
        results: dict[str, dict[str, list[float]]] = {
            op: {v: [] for v in variants} for op, variants in ops.items()
        }
        for r in range(args.rounds):
            for op, variants in ops.items():
                names = list(variants)
                names = names[r % len(names) :] + names[: r % len(names)]
                for name in names:
                    sdk_settings_as(name)
                    results[op][name].append(measure(variants[name], args.requests, args.warmup))
            line = "  ".join(
                f"{op} " + "/".join(f"{v}={us[-1]:.0f}" for v, us in per.items())
                for op, per in results.items()
            )
            print(f"round {r + 1}: {line} (us CPU per call)", flush=True)
    finally:
        server.close()
    print(f"\nclient CPU per call, median of {args.rounds} rounds x {args.requests} requests")
    print("| op | variant | us per call | ratio to sdk (median of per-round ratios) |")
    print("|---|---|---|---|")
    missed = []
    for op, per in results.items():
        for name, us in per.items():
            ratios = [x / s for x, s in zip(us, per["sdk"], strict=True)]
            ratio = statistics.median(ratios)
            print(f"| {op} | {name} | {statistics.median(us):.0f} | {ratio:.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) |")  # fmt: skip
            if op != "txn" and name == "app" and ratio > TARGET:
                missed.append(f"{op}: {ratio:.2f}")
    best_txn = min(results["txn"], key=lambda v: statistics.median(results["txn"][v]))
    print(f"\ncheapest transaction path: {best_txn}")
    if missed:
        print(f"target app/sdk <= {TARGET} missed: {', '.join(missed)}")
        return 1
    print(f"target app/sdk <= {TARGET}: met for upsert, get and send")
    return 0


if __name__ == "__main__":
    sys.exit(main())
