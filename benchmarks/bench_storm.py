"""Alert storm: HTTP POSTs through the queue into the tables, against a storage floor.

    .venv/bin/python benchmarks/bench_storm.py                  # 5,000 alerts
    .venv/bin/python benchmarks/bench_storm.py --alerts 500     # a quick run

N alerts, each Fired and later Resolved (metric alerts on a pool of VMs and rules), 10%
of the 2N events sent twice, all shuffled. Each event is POSTed to /api/alerts with a
valid token (verified against a local JWKS server), queued by ingest, then drained by the
host harness with host.json's concurrency (batchSize + newBatchThreshold in flight) into
the work item tables. Azurite is started here, on disk as `azurite --location` runs by
default, and shared by both runs. Not `--inMemoryPersistence`: in memory, every queue
message is an extent of its own, and a sweep every 60 s deletes them one at a time,
rebuilding an index over all of them each time. A profile of Azurite (`node --cpu-prof`,
2,000 alerts) put 39 s of its 115 busy seconds there, landing in whichever phase the timer
fired in (the long stalls earlier versions of this benchmark saw). On disk, messages share
extent files and the sweep is cheap.

Floor, measured in the same run with the same SDK, HTTP settings and concurrency: the same
number of raw queue sends (24 at once), then a drain through the same harness by a function
that does one table upsert per message (receive, upsert, delete). Target: our throughput
(events per second, both phases) at least 0.5x the floor's, judged on the median of the
waves' ratios: Azurite's own timers (it saves its database every 5 s) land in whichever
phase is running, which moves a whole-run ratio more than a wave's; both are printed.
Verified at the end: the tables hold exactly N work items, all Resolved, each with one
occurrence. Exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azure.functions as func
import psutil  # type: ignore[import-untyped]
from azure.core.exceptions import AzureError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient

from shared import storage, table_keys
from tests.alert_factory import metric_alert_payload
from tests.azurite import Azurite
from tests.harness import FunctionsHost, QueueRunStats, QueueSettings
from tests.jwks_server import JwksServer
from tests.tokens import SigningKey, bearer, v1_claims, webhook_settings

SUBSCRIPTION = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
FLOOR_QUEUE = "floor"
RETRIED_STATUSES = (408, 429, 503, 504)  # what Azure Monitor retries
RETRIES = 5
FLOOR_TABLE = "floor"


def payload(
    n: int, condition: str, vm: int, rule: int, fired: str, resolved: str | None
) -> dict[str, Any]:
    """A common-schema metric alert (the shape of Microsoft's published sample)."""
    return metric_alert_payload(
        n,
        condition,
        vm=vm,
        rule=rule,
        fired=fired,
        resolved=resolved,
        subscription=SUBSCRIPTION,
        id_prefix="storm",
    )


def storm(alerts: int, duplicates: float, vms: int, rules: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for n in range(alerts):
        start = rng.randrange(0, 3600)
        fired = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_709_280_000 + start)) + ".000Z"
        end = (
            time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(1_709_280_000 + start + rng.randrange(60, 1800))
            )
            + ".000Z"
        )
        vm, rule = rng.randrange(vms), rng.randrange(rules)
        events.append(payload(n, "Fired", vm, rule, fired, None))
        events.append(payload(n, "Resolved", vm, rule, fired, end))
    events += [copy.deepcopy(e) for e in rng.sample(events, int(len(events) * duplicates))]
    rng.shuffle(events)
    return events


def concurrency() -> int:
    settings = QueueSettings.from_host_json(json.loads(Path("host.json").read_text()))
    return settings.batch_size + settings.new_batch_threshold


class RequestCounter:
    """Storage requests sent by every SDK client in this process (azure-core's transport)."""

    def __init__(self) -> None:
        self.sent = 0
        self._lock = threading.Lock()
        original = RequestsTransport.send

        def send(transport: RequestsTransport, request: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.sent += 1
            return original(transport, request, **kwargs)

        RequestsTransport.send = send  # type: ignore[method-assign]


class Phases:
    """Wall time, CPU here and in Azurite, and storage requests, summed per phase."""

    def __init__(self, azurite: psutil.Process | None) -> None:
        self.azurite = azurite
        self.requests = RequestCounter()
        self.totals: dict[str, list[float]] = {}

    def _node_cpu(self) -> float:
        return sum(self.azurite.cpu_times()[:2]) if self.azurite else 0.0

    def run(self, label: str, fn: Callable[[], Any]) -> None:
        cpu, node, start = time.process_time(), self._node_cpu(), time.perf_counter()
        sent = self.requests.sent
        fn()
        spent = [
            time.perf_counter() - start,
            time.process_time() - cpu,
            self._node_cpu() - node,
            self.requests.sent - sent,
        ]
        self.totals[label] = [
            a + b for a, b in zip(self.totals.get(label, [0.0] * 4), spent, strict=True)
        ]

    def wall(self, prefix: str) -> float:
        return sum(v[0] for k, v in self.totals.items() if k.startswith(prefix))

    def report(self, events: int) -> None:
        print(
            f"  {'phase':34} {'wall s':>8} {'Python CPU s':>13} {'Azurite CPU s':>14} "
            f"{'requests/event':>15}"
        )
        for label, (wall, cpu, node, sent) in self.totals.items():
            print(f"  {label:34} {wall:8.2f} {cpu:13.2f} {node:14.2f} {sent / events:15.2f}")


def parallel(workers: int, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def fresh_app() -> func.FunctionApp:
    import function_app

    function_app.app.functions_bindings = {}  # get_functions() may run once per app otherwise
    return function_app.app


def floor_app(connection_string: str) -> func.FunctionApp:
    """One table upsert per message: the least a queue-to-table processor can do."""
    app = func.FunctionApp()
    table = TableServiceClient.from_connection_string(
        connection_string, **storage._table_options()
    ).get_table_client(FLOOR_TABLE)

    @app.function_name("floor")
    @app.queue_trigger(arg_name="msg", queue_name=FLOOR_QUEUE, connection="AzureWebJobsStorage")
    def floor(msg: func.QueueMessage) -> None:
        body = msg.get_body()
        table.upsert_entity(
            {"PartitionKey": str(msg.id)[:6], "RowKey": str(msg.id), "size": len(body)},
            mode=UpdateMode.REPLACE,
        )

    return app


def run_wave(
    phases: Phases,
    workers: int,
    wave: list[bytes],
    texts: list[str],
    post: Callable[[bytes], int],
    host: FunctionsHost,
    queue: QueueClient,
    floor_host: FunctionsHost,
) -> QueueRunStats:
    """One wave: ours (POST, then drain into the tables), then the floor (send, then drain)."""
    stats: list[QueueRunStats] = []

    def send(text: str) -> None:
        # As for our POSTs: a send that storage did not answer in time is sent again.
        for attempt in range(RETRIES + 1):
            try:
                queue.send_message(text)
                return
            except AzureError:
                if attempt == RETRIES:
                    raise
                time.sleep(1)

    def posts() -> None:
        statuses = parallel(workers, post, wave)
        if set(statuses) != {202}:
            raise SystemExit(f"FAIL: ingest answered {sorted(set(statuses))}")

    phases.run("ours: HTTP POST -> queue", posts)
    phases.run(
        "ours: queue -> work item tables",
        lambda: stats.append(host.run_queue("alerts", timeout=3600)),
    )
    phases.run("floor: raw queue send", lambda: parallel(workers, send, texts))
    phases.run(
        "floor: receive + 1 upsert + delete",
        lambda: floor_host.run_queue(FLOOR_QUEUE, timeout=3600),
    )
    return stats[0]


def _node(server: Azurite) -> psutil.Process | None:
    """Azurite's node process (the launcher may be a shell wrapper around it)."""
    if server.process is None:
        return None
    root = psutil.Process(server.process.pid)
    nodes = [p for p in [root, *root.children(recursive=True)] if "node" in p.name()]
    return nodes[0] if nodes else root


def check_tables(connection_string: str, alerts: int) -> list[str]:
    service = TableServiceClient.from_connection_string(connection_string)
    items = list(
        service.get_table_client(table_keys.WORKITEMS_TABLE).query_entities(
            "RowKey ge 'i|' and RowKey lt 'i}'"
        )
    )
    problems = []
    if len(items) != alerts:
        problems.append(f"{len(items)} work items, expected {alerts}")
    states = {e["state"] for e in items}
    if states != {"Resolved"}:
        problems.append(f"states {sorted(states)}, expected only Resolved")
    if any(e["occurrences"] != 1 or e["reopenCount"] != 0 for e in items):
        problems.append("some items have more than one occurrence or a reopen")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--wave",
        type=int,
        default=1000,
        help="events per wave, POSTed then drained (Azurite's queue slows down with depth)",
    )
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    # Azure's Python workers set neither; where they are set (this machine: for its TLS
    # proxy), requests stats the bundle on every call, on both sides, for plain-HTTP Azurite.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    # The harness's own clients pool 10 connections for 24 threads: urllib3 says so per request.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

    events = storm(args.alerts, args.duplicates, args.vms, args.rules, args.seed)
    bodies = [json.dumps(e).encode() for e in events]
    workers = concurrency()
    key = SigningKey.generate(kid="bench")
    server = Azurite(persistent=True)  # on disk: see the docstring
    server.start()
    phases = Phases(_node(server))
    jwks = JwksServer(key).start()
    try:
        os.environ.update(
            {"AzureWebJobsStorage": server.connection_string, **webhook_settings(jwks.url)}
        )
        token = bearer(key.sign(v1_claims()))
        print(
            f"{len(events)} events ({args.alerts} alerts, Fired + Resolved, "
            f"{args.duplicates:.0%} sent twice), {workers} in flight"
        )

        # Ours: POST every event, then drain the queue into the work item tables.
        host = FunctionsHost(fresh_app(), server.connection_string)
        host.request(
            "POST", "/api/alerts", headers={"Authorization": token}, body=bodies[0]
        )  # warm-up
        QueueClient.from_connection_string(server.connection_string, "alerts").clear_messages()

        retried: list[int] = []

        def post(body: bytes) -> int:
            # As Azure Monitor does: a 503 (storage did not answer in time) is sent again.
            for attempt in range(RETRIES + 1):
                response = host.request(
                    "POST",
                    "/api/alerts",
                    headers={"Authorization": token, "Content-Type": "application/json"},
                    body=body,
                )
                if response.status_code not in RETRIED_STATUSES or attempt == RETRIES:
                    return int(response.status_code)
                retried.append(response.status_code)
                time.sleep(1)
            raise AssertionError("unreachable")

        floor_host = FunctionsHost(floor_app(server.connection_string), server.connection_string)
        TableServiceClient.from_connection_string(server.connection_string).create_table(
            FLOOR_TABLE
        )
        # The floor's clients use the app's HTTP settings (pool size, retries, timeouts).
        queue = QueueClient.from_connection_string(
            server.connection_string, FLOOR_QUEUE, **storage._queue_options()
        )
        queue.create_queue()
        failed: list[str] = []
        waves = [bodies[i : i + args.wave] for i in range(0, len(bodies), args.wave)]
        print(f"{len(waves)} waves of up to {args.wave} events: ", end="", flush=True)
        wave_ratios: list[float] = []
        for wave in waves:
            texts = [b.decode() for b in wave]
            before = phases.wall("ours"), phases.wall("floor")
            stats = run_wave(phases, workers, wave, texts, post, host, queue, floor_host)
            failed += stats.errors
            spent = phases.wall("ours") - before[0], phases.wall("floor") - before[1]
            wave_ratios.append(spent[1] / spent[0])  # same events: time ratio = rate ratio
            print(".", end="", flush=True)
        print()
        phases.report(len(events))
        if failed:
            print(f"  failed attempts (the host retried them): {len(failed)}, e.g. {failed[:2]}")
        if retried:
            print(f"  POSTs answered {sorted(set(retried))} and sent again: {len(retried)}")
        ours, floor = phases.wall("ours"), phases.wall("floor")

        problems = check_tables(server.connection_string, args.alerts)
        ours_rate, floor_rate = len(events) / ours, len(events) / floor
        ratio = ours_rate / floor_rate
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss = psutil.Process().memory_info().rss / 2**20
        print(
            f"throughput: ours {ours_rate:,.0f} events/s ({args.alerts / ours:,.0f} alerts/s), "
            f"floor {floor_rate:,.0f} events/s"
        )
        median = statistics.median(wave_ratios)
        print(f"ratio ours/floor, whole run: {ratio:.2f}")
        print(f"ratio ours/floor per wave: {' '.join(f'{r:.2f}' for r in wave_ratios)}")
        print(f"ratio ours/floor, median wave: {median:.2f} (target >= 0.50)")
        print(
            f"memory: peak RSS {peak:,.0f} MiB, now {rss:,.0f} MiB (this process; Azurite excluded)"
        )
        print(
            "tables: "
            + ("exactly the expected work items" if not problems else "; ".join(problems))
        )
        ok = median >= 0.5 and not problems
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        jwks.stop()
        server.close()


if __name__ == "__main__":
    sys.exit(main())
