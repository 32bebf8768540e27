"""Storage requests per processed alert event, against the budget, on a fresh Azurite.

    .venv/bin/python benchmarks/bench_store_requests.py

Each event goes through the real processor (shared.processor.handle) with the storage
clients instrumented by a `raw_request_hook` (counted here, not in product code). Every
table request counts: work items, history, bindings, the CMDB and the work item API's
indexes. Budgets (issue 5): a Fired that creates an item with k CIs <= 2 + k; a duplicate
<= 1; a Resolved of an existing item with k CIs <= 2 + k. A CI the process has never seen
may cost one more request the first time (its CMDB name row). Blob requests are reported
beside them. Exits 1 when a budget is missed.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared import alert_queue, processor, storage, store
from tests import alert_factory as af
from tests.azurite import Azurite


class Requests:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def hook(self, kind: str) -> Callable[[Any], None]:
        def record(request: Any) -> None:
            with self._lock:
                self.counts[kind] += 1
                path = request.http_request.url.split("/devstoreaccount1", 1)[-1]
                self.lines.append(f"{kind} {request.http_request.method} {path[:70]}")

        return record

    def take(self) -> tuple[int, int, list[str]]:
        with self._lock:
            out = (self.counts["table"], self.counts["blob"], self.lines)
            self.counts = Counter()
            self.lines = []
            return out


def vm(n: int) -> str:
    return af.VM.replace("vm-web-01", f"vm-bench-{n:03d}")


def main() -> int:
    server = Azurite()
    server.start()
    requests = Requests()
    try:
        os.environ.update({"AzureWebJobsStorage": server.connection_string})
        os.environ.setdefault("AAD_TENANT_IDS", af.TENANT)
        os.environ.setdefault("AAD_AUDIENCES", "api://bench")
        tables = TableServiceClient.from_connection_string(
            server.connection_string, raw_request_hook=requests.hook("table")
        )
        blobs = BlobServiceClient.from_connection_string(
            server.connection_string, raw_request_hook=requests.hook("blob")
        )
        storage.table_service = lambda _settings: tables  # type: ignore[assignment]
        storage.blob_service = lambda _settings: blobs  # type: ignore[assignment]

        def handle(alert: dict[str, Any]) -> tuple[int, int, list[str]]:
            requests.take()
            processor.handle(alert_queue.encode(alert, {"bench": True}), 1, "bench")
            return requests.take()

        # Warm up: tables, container and queue exist, as they do in a deployed app.
        # (Twice: creating a table clears the process's caches, the months it registered too.)
        handle(af.fired("warmup", 0, cis=["warmup"]))
        handle(af.fired("warmup-2", 0, cis=["warmup"]))
        failures = 0
        rows: list[tuple[str, int, int, int | None, list[str]]] = []
        serial = 0
        for k in (1, 3, 10):
            cis = [vm(serial + i) for i in range(k)]
            serial += k
            name = f"k{k}"
            first = af.fired(name, 0, cis=cis)
            # a CI this process has never seen: + its CMDB name row
            table, blob, sent = handle(first)
            rows.append((f"Fired, new item, {k} new CI(s)", table, blob, 2 + k + k, sent))
            rows.append(("duplicate of it", *handle(af.redelivered(first))[:2], 1, []))
            resolved = af.resolved(name, 0, 7, cis=cis)  # a later minute: lastSeen moves
            rows.append((f"Resolved, existing item, {k} CI(s)", *handle(resolved)[:2], 2 + k, []))
            other = af.fired(f"{name}-again", 8, cis=cis)
            table, blob, sent = handle(other)
            rows.append((f"Fired, new item, {k} known CI(s), warm cache", table, blob, 2 + k, sent))
            store.clear_caches()
            cold = af.fired(f"{name}-cold", 9, cis=cis)
            rows.append(
                (
                    f"Fired, new item, {k} known CI(s), cold cache (info)",
                    *handle(cold)[:2],
                    None,
                    [],
                )
            )

        os.environ["CORRELATION_MODE"] = "rule"
        cis = [vm(900), vm(901)]
        handle(af.fired("r1", 0, cis=cis))
        rows.append(
            (
                "rule mode: 2nd alert joins the open item, 2 CIs",
                *handle(af.fired("r2", 0.5, cis=cis))[:2],
                2 + 2,
                [],
            )
        )
        rows.append(  # the item stays open (r2 still fires): no index row changes
            (
                "rule mode: Resolved of one of its alerts",
                *handle(af.resolved("r1", 0, 0.7, cis=cis))[:2],
                2 + 2,
                [],
            )
        )

        print(f"{'event':58} {'table':>5} {'blob':>5} {'budget':>6}  result")
        for label, table, blob, budget, _ in rows:
            ok = budget is None or table <= budget
            failures += 0 if ok else 1
            verdict = "info" if budget is None else "PASS" if ok else "FAIL"
            shown = "-" if budget is None else str(budget)
            print(f"{label:58} {table:5d} {blob:5d} {shown:>6}  {verdict}")
        label, _, _, _, sent = rows[int(os.environ.get("BENCH_SHOW", "3"))]
        print(f"\n{label}, request by request:")
        for request in sent:
            print(f"  {request}")
        print("FAIL" if failures else "PASS")
        return 1 if failures else 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
