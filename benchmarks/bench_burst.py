"""A burst of alerts end to end: HTTP POST with real tokens -> queue -> work item tables.

    .venv/bin/python benchmarks/bench_burst.py                  # 10,000 alerts
    .venv/bin/python benchmarks/bench_burst.py --alerts 300     # a quick run

N POSTs to /api/alerts (metric alerts on a pool of VMs, most Fired then Resolved, 5 % sent
twice, shuffled), each with a valid v1 token (verified against a local key server), sent by
as many concurrent callers as the host runs queue messages (batchSize + newBatchThreshold
of host.json). The queue function drains `alerts` through the host harness *while* the
burst arrives, with the host's concurrency. Azurite is started here.

Checked at the end (exit 1 on any miss): every POST answered 202 at the first attempt (no
error response); no message poisoned, none left; one work item per alert (nothing lost, no
duplicate), Resolved exactly when its Resolved was sent; one history entry per distinct
event. Reported: throughput (ingest, end to end), peak RSS of this process (sampled and
`ru_maxrss`) and of Azurite. `tests/test_faults.py` runs `run_burst` with 300 alerts in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from azure.data.tables import TableServiceClient

from shared import table_keys
from tests.fault_injection import Storm, deliver_all, event_key, poison_length, queue_length, storm
from tests.harness import REPO, FunctionsHost, QueueRunStats, QueueSettings


def host_concurrency() -> int:
    settings = QueueSettings.from_host_json(json.loads((REPO / "host.json").read_text()))
    return settings.batch_size + settings.new_batch_threshold


class PeakRss:
    """Samples a process's resident set size every `interval` seconds; keeps the peak."""

    def __init__(self, process: psutil.Process, interval: float = 0.05) -> None:
        self.process = process
        self.interval = interval
        self.start_mib = self._rss()
        self.peak_mib = self.start_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        try:
            return float(self.process.memory_info().rss) / 2**20
        except psutil.Error:
            return 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mib = max(self.peak_mib, self._rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *args: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak_mib = max(self.peak_mib, self._rss())


@dataclass
class BurstResult:
    deliveries: int
    alerts: int
    events: int
    statuses: Counter[int]
    ingest_seconds: float
    total_seconds: float
    queue: QueueRunStats
    items: int
    history: int
    start_rss_mib: float
    peak_rss_mib: float
    problems: list[str] = field(default_factory=list)

    def copies(self) -> str:
        extra = self.queue.succeeded - self.deliveries
        if extra <= 0:
            return ""
        return f" ({extra} copies: a send retried after its answer was lost queues twice)"

    def failure_kinds(self) -> dict[str, int]:
        return dict(Counter(e.split(":", 1)[0] for e in self.queue.errors))

    @property
    def ingest_rate(self) -> float:
        return self.deliveries / self.ingest_seconds

    @property
    def end_to_end_rate(self) -> float:
        return self.deliveries / self.total_seconds

    def report(self) -> str:
        return "\n".join(
            [
                f"{self.deliveries} POSTs ({self.alerts} alerts, {self.events} distinct events)",
                f"answers: {dict(sorted(self.statuses.items()))}",
                f"ingest: {self.ingest_seconds:.1f} s, {self.ingest_rate:,.0f} POSTs/s",
                f"end to end (last event in the tables): {self.total_seconds:.1f} s, "
                f"{self.end_to_end_rate:,.0f} POSTs/s",
                f"queue: {self.queue.succeeded} messages processed, {self.queue.failed_attempts} "
                f"failed attempts {self.failure_kinds()}, {self.queue.poisoned} poisoned"
                + self.copies(),
                f"tables: {self.items} work items, {self.history} history entries",
                f"memory (this process): {self.start_rss_mib:,.0f} MiB before, peak "
                f"{self.peak_rss_mib:,.0f} MiB (+{self.peak_rss_mib - self.start_rss_mib:,.0f})",
                "result: "
                + ("nothing lost, no duplicate" if not self.problems else "; ".join(self.problems)),
            ]
        )


def _drain_while(host: FunctionsHost, posting: threading.Event, stats: QueueRunStats) -> None:
    """Run the queue function until the burst is over and the queue is empty."""
    while True:
        done = posting.is_set()
        run = host.run_queue("alerts", timeout=3600)
        stats.succeeded += run.succeeded
        stats.failed_attempts += run.failed_attempts
        stats.poisoned += run.poisoned
        stats.errors += run.errors
        if done:
            return
        time.sleep(0.05)


def check_tables(connection_string: str, burst: Storm) -> tuple[int, int, list[str]]:
    """(work items, history entries, problems) against what the burst carried."""
    expected: dict[str, bool] = {}  # alert id -> resolved
    for alert_id, condition in map(event_key, burst.events):
        expected[alert_id.lower()] = (
            expected.get(alert_id.lower(), False) or condition == "Resolved"
        )
    table = TableServiceClient.from_connection_string(connection_string).get_table_client(
        table_keys.WORKITEMS_TABLE
    )
    items = list(
        table.query_entities(
            f"RowKey ge '{table_keys.ITEM_PREFIX}' and RowKey lt 'i}}'",
            select=["id", "state", "alertIds", "occurrences"],
        )
    )
    history = list(
        table.query_entities(
            f"RowKey ge '{table_keys.HISTORY_PREFIX}' and RowKey lt 'h}}'",
            select=["alertId", "condition"],
        )
    )
    problems: list[str] = []
    per_alert = Counter(a.lower() for item in items for a in json.loads(item["alertIds"]))
    lost = set(expected) - set(per_alert)
    duplicated = [a for a, n in per_alert.items() if n > 1]
    unexpected = set(per_alert) - set(expected)
    if lost:
        problems.append(f"{len(lost)} alerts have no work item")
    if duplicated:
        problems.append(f"{len(duplicated)} alerts have several work items")
    if unexpected:
        problems.append(f"{len(unexpected)} work items for alerts never sent")
    if len(items) != len(expected):
        problems.append(f"{len(items)} work items for {len(expected)} alerts")
    for item in items:
        [alert_id] = json.loads(item["alertIds"])
        want = "Resolved" if expected.get(alert_id.lower()) else "New"
        if item["state"] != want or item["occurrences"] != 1:
            problems.append(f"{item['id']}: {item['state']}, {item['occurrences']} occurrences")
            break
    events = Counter((str(h["alertId"]).lower(), h["condition"]) for h in history)
    if len(history) != len(burst.events) or any(n > 1 for n in events.values()):
        problems.append(f"{len(history)} history entries for {len(burst.events)} events")
    return len(items), len(history), problems


def run_burst(
    host: FunctionsHost,
    connection_string: str,
    authorization: str,
    deliveries: int,
    *,
    seed: int = 1,
    workers: int | None = None,
) -> BurstResult:
    """POST `deliveries` alerts at once while the queue function drains them; check the tables."""
    burst = storm(deliveries, seed=seed)
    callers = workers or host_concurrency()
    posting = threading.Event()
    stats = QueueRunStats()
    with PeakRss(psutil.Process()) as rss:
        start = time.perf_counter()
        drain = threading.Thread(target=_drain_while, args=(host, posting, stats))
        drain.start()
        try:
            # No retries: in a burst on healthy storage, any answer but 202 is an error.
            answers = deliver_all(host, authorization, burst.deliveries, workers=callers, delays=())
        finally:
            posting.set()
        ingest = time.perf_counter() - start
        drain.join()
        total = time.perf_counter() - start
    statuses = Counter(s for d in answers for s in d.statuses)
    items, history, problems = check_tables(connection_string, burst)
    if set(statuses) != {202}:
        problems.append(f"answers {dict(statuses)}: expected only 202")
    # A failed attempt is retried by the queue (a storage timeout under load, say); only a
    # message that exhausted its attempts is a problem.
    if stats.poisoned:
        problems.append(f"{stats.poisoned} messages poisoned")
    left = queue_length(connection_string) + poison_length(connection_string)
    if left:
        problems.append(f"{left} messages left in the queues")
    return BurstResult(
        deliveries=len(burst.deliveries),
        alerts=burst.alerts,
        events=len(burst.events),
        statuses=statuses,
        ingest_seconds=ingest,
        total_seconds=total,
        queue=stats,
        items=items,
        history=history,
        start_rss_mib=rss.start_mib,
        peak_rss_mib=rss.peak_mib,
        problems=problems,
    )


def _azurite_node(pid: int) -> psutil.Process:
    root = psutil.Process(pid)
    nodes = [p for p in [root, *root.children(recursive=True)] if "node" in p.name()]
    return nodes[0] if nodes else root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000, help="POSTs in the burst")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=None, help="concurrent callers (default: the host's)"
    )
    args = parser.parse_args()
    os.chdir(REPO)

    from tests.azurite import Azurite
    from tests.jwks_server import JwksServer
    from tests.tokens import SigningKey, bearer, v1_claims, webhook_settings

    key = SigningKey.generate(kid="burst")
    server = Azurite()
    server.start()
    jwks = JwksServer(key).start()
    try:
        os.environ.update(
            {"AzureWebJobsStorage": server.connection_string, **webhook_settings(jwks.url)}
        )
        import function_app

        host = FunctionsHost(function_app.app, server.connection_string)
        assert server.process is not None
        node = _azurite_node(server.process.pid)
        with PeakRss(node, interval=0.5) as azurite_rss:
            result = run_burst(
                host,
                server.connection_string,
                bearer(key.sign(v1_claims())),
                args.alerts,
                seed=args.seed,
                workers=args.workers,
            )
        print(result.report())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ru_maxrss (this process): {peak:,.0f} MiB")
        print(f"Azurite: peak RSS {azurite_rss.peak_mib:,.0f} MiB")
        print("PASS" if not result.problems else "FAIL")
        return 0 if not result.problems else 1
    finally:
        jwks.stop()
        server.close()


if __name__ == "__main__":
    sys.exit(main())
