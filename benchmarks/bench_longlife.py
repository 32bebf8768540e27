"""Cost per event of work items that live for months (issue 13), at growing group sizes.

    .venv/bin/python benchmarks/bench_longlife.py [--sizes 10,100,1000,10000] [--batch 20]

    .venv/bin/python benchmarks/bench_longlife.py --shapes stateless --sizes 10,1000,26000

For each shape, events go through the real processor (people's changes through the store's
update_item, as the API does) against a fresh Azurite. At each group size in --sizes, the
next --batch events are measured: CPU of this process (time.process_time, all threads), table
requests, bytes sent in table requests, bytes read from table responses, and the size of the
group's root entity after each of them (what every event rewrites). The ratio of the largest
size's figure to the smallest size's must be <= 1.2 for requests and root bytes and <= 1.5
for CPU; exits 1 otherwise.

CPU is judged against a floor measured in the same seconds: before each measured event, a
fixed unit of the app's own pure work (normalizing a metric alert, its event and queue
message; `floor ms`) is timed the same way. On a shared machine the load of the moment moves
both alike (a 10,000-event group is reached minutes after a 10-event one), so the CPU ratio
is of `cpu / floor`; the raw one is printed beside it.

Shapes: a stateless log alert every 5 minutes that never resolves (rule mode); a Service
Health incident with many updates; a metric alert flapping (fire 2 min, every 4 min); an item
with many notes and changes from people; alert mode with many distinct alerts (each its own
group: the tables grow, the cost per event must not).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared import alert_queue, processor, storage, store, table_keys
from shared.alert_events import event_from_alert
from shared.alerts.normalize import normalize
from shared.config import get_settings
from tests import alert_factory as af
from tests.azurite import Azurite

FLOOR_ROUNDS = 16  # normalizations per floor unit: about an event's worth of pure work


class Meter:
    """Table requests, bytes sent and bytes received, from the SDK's hooks."""

    def __init__(self) -> None:
        self.requests = 0
        self.sent = 0
        self.read = 0
        self._lock = threading.Lock()

    def on_request(self, request: Any) -> None:
        body = request.http_request.body
        with self._lock:
            self.requests += 1
            self.sent += len(body) if isinstance(body, (bytes, str)) else 0

    def on_response(self, response: Any) -> None:
        try:
            size = len(response.http_response.body())
        except Exception:
            size = 0
        with self._lock:
            self.read += size

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.requests, self.sent, self.read


def root_bytes(tables: TableServiceClient, group_hash: str) -> int:
    """The size of the group's root entity as stored (its properties as JSON)."""
    client = tables.get_table_client(table_keys.WORKITEMS_TABLE)
    entity = client.get_entity(
        table_keys.group_partition(group_hash), table_keys.root_row(group_hash)
    )
    return len(json.dumps({k: str(v) for k, v in entity.items()}))


Step = Callable[[int], str]  # runs event n, returns its group hash


def stateless(n: int) -> dict[str, Any]:
    return af.fired(f"log-{n}", n * 5, rule="errors in logs", rule_id="/rules/logs")


def service_health(n: int) -> dict[str, Any]:
    return af.service_health("TRK-BENCH", "Active", n * 3)


def flapping(n: int) -> dict[str, Any]:
    k = n // 2
    return (
        af.fired(f"flap-{k}", k * 4) if n % 2 == 0 else af.resolved(f"flap-{k}", k * 4, k * 4 + 2)
    )


def alert_mode(n: int) -> dict[str, Any]:
    k = n // 2
    return (
        af.fired(f"many-{k}", k / 10)
        if n % 2 == 0
        else af.resolved(f"many-{k}", k / 10, k / 10 + 3)
    )


def alert_step(make: Callable[[int], dict[str, Any]], mode: str) -> Step:
    def step(n: int) -> str:
        alert = make(n)
        processor.handle(alert_queue.encode(alert, {"bench": n}), 1, f"bench-{n}")
        return event_from_alert(alert, mode).group.hash

    return step


def people_step() -> Step:
    state: dict[str, str] = {}
    cycle = ["Acknowledged", "InProgress", "Resolved", "New"]

    def step(n: int) -> str:
        s = store.store_for(get_settings())
        if not state:
            alert = af.fired("busy", 1)
            processor.handle(alert_queue.encode(alert, {}), 1, "busy")
            event = event_from_alert(alert, "alert")
            state["item"] = table_keys.base_item_id(event.group.hash)
            state["group"] = event.group.hash
        note = f"note {n} " + "\N{GRINNING FACE}" * 300
        change = store.Change(note=note)
        if n % 4 == 0:
            change = store.Change(state=cycle[(n // 4) % 4], note=note)
        elif n % 7 == 0:
            change = store.Change(assignee=f"person-{n}@contoso.com", note=note)
        s.update_item(state["item"], change, store.Actor("bench@contoso.com", "user", "oid"))
        return state["group"]

    return step


def floor_unit() -> Callable[[], None]:
    """A fixed unit of the app's pure work (no I/O), timed beside every measured event."""
    payload = af.metric_alert_payload(
        1,
        "Fired",
        vm=1,
        rule=1,
        fired=af.at(0),
        resolved=None,
        subscription=af.SUBSCRIPTION,
        id_prefix="floor",
    )
    received = datetime(2026, 1, 1, tzinfo=UTC)
    settings = get_settings().storage

    def unit() -> None:
        for n in range(FLOOR_ROUNDS):
            alert = normalize(
                payload, tenant_id=af.TENANT, correlation_id=f"c{n}", received_at=received
            )
            event_from_alert(alert, "rule")
            alert_queue.deflated(alert_queue.decode(settings, alert_queue.encode(alert, payload)))

    return unit


Row = tuple[int, float, float, float, float, float, float]


def measure(
    name: str, step: Step, sizes: list[int], batch: int, tables: TableServiceClient, meter: Meter
) -> list[Row]:
    rows = []
    done = 0
    unit = floor_unit()
    for size in sizes:
        while done < size:  # grow the group (not measured)
            step(done)
            done += 1
        cpu = floor = 0.0
        roots = []
        before = meter.snapshot()
        for _ in range(batch):
            t0 = time.process_time()
            unit()
            t1 = time.process_time()
            group = step(done)
            t2 = time.process_time()
            floor += t1 - t0
            cpu += t2 - t1
            done += 1
            roots.append(root_bytes(tables, group))  # a client without the meter's hooks
        after = meter.snapshot()
        reqs = (after[0] - before[0]) / batch
        rows.append(
            (
                size,
                cpu / batch * 1000,
                reqs,
                sum(roots) / len(roots),
                (after[1] - before[1]) / batch,
                (after[2] - before[2]) / batch,
                floor / batch * 1000,
            )
        )
        print(
            f"{name:<24} {size:>7} {rows[-1][1]:>8.2f} {rows[-1][6]:>8.2f} "
            f"{rows[-1][1] / rows[-1][6]:>9.2f} {rows[-1][2]:>7.2f} "
            f"{rows[-1][3]:>9.0f} {rows[-1][4]:>9.0f} {rows[-1][5]:>9.0f}",
            flush=True,
        )
    return rows


SHAPES = ("stateless", "health", "flapping", "notes", "alerts")


def shapes(chosen: Iterable[str] = SHAPES) -> Iterator[tuple[str, str, Step]]:
    """(name, correlation mode, step) of each chosen shape (keys: SHAPES)."""
    chosen = set(chosen)
    if "stateless" in chosen:
        yield "stateless log alert", "rule", alert_step(stateless, "rule")
    if "health" in chosen:
        yield "service health updates", "alert", alert_step(service_health, "alert")
    if "flapping" in chosen:
        yield "flapping metric alert", "rule", alert_step(flapping, "rule")
    if "notes" in chosen:
        yield "notes and changes", "alert", people_step()
    if "alerts" in chosen:
        yield "alert mode, many alerts", "alert", alert_step(alert_mode, "alert")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"some of {SHAPES}")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chosen = [s.strip() for s in args.shapes.split(",")]
    if not set(chosen) <= set(SHAPES):
        parser.error(f"--shapes: choose from {', '.join(SHAPES)}")
    logging.basicConfig(level=logging.ERROR)
    server = Azurite()
    server.start()
    meter = Meter()
    failed = False
    try:
        os.environ.update({"AzureWebJobsStorage": server.connection_string})
        os.environ.setdefault("AAD_TENANT_IDS", af.TENANT)
        os.environ.setdefault("AAD_AUDIENCES", "api://bench")
        os.environ.update({"REOPEN_WINDOW_MINUTES": "60", "FLAP_WINDOW_MINUTES": "60"})
        tables = TableServiceClient.from_connection_string(
            server.connection_string,
            raw_request_hook=meter.on_request,
            raw_response_hook=meter.on_response,
        )
        blobs = BlobServiceClient.from_connection_string(server.connection_string)
        storage.table_service = lambda _settings: tables  # type: ignore[assignment]
        storage.blob_service = lambda _settings: blobs  # type: ignore[assignment]
        plain = TableServiceClient.from_connection_string(server.connection_string)
        print(
            f"{'shape':<24} {'events':>7} {'cpu ms':>8} {'floor ms':>8} {'cpu/floor':>9} "
            f"{'reqs':>7} {'root B':>9} {'sent B':>9} {'read B':>9}"
        )
        for name, mode, step in shapes(chosen):
            os.environ["CORRELATION_MODE"] = mode
            store.clear_caches()
            rows = measure(name, step, sizes, args.batch, plain, meter)
            first, last = rows[0], rows[-1]
            cpu = (last[1] / last[6]) / (first[1] / first[6])
            ratios = (cpu, last[2] / first[2], last[3] / first[3])
            ok = ratios[0] <= 1.5 and ratios[1] <= 1.2 and ratios[2] <= 1.2
            failed |= not ok
            print(
                f"{name:<24} ratio {last[0]}/{first[0]}: cpu {ratios[0]:.2f} (<= 1.5; "
                f"raw {last[1] / first[1]:.2f}), requests {ratios[1]:.2f} (<= 1.2), "
                f"root bytes {ratios[2]:.2f} (<= 1.2) {'PASS' if ok else 'FAIL'}",
                flush=True,
            )
    finally:
        server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
