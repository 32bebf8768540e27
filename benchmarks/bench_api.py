"""The work item API's listings on a realistic table: requests, entities read, latency.

    .venv/bin/python benchmarks/bench_api.py                 # 10,000 items, 200 open
    .venv/bin/python benchmarks/bench_api.py --items 2000    # quicker

Starts its own Azurite, seeds work items through the store's own apply path (the
processor's storage work without the queue: `WorkItemStore.apply`, 16 threads; the
processor itself would only add a queue read and a blob upload per event), 200 of them
open, spread over 100 CIs and three months. Then, for each listing, through the real HTTP
function (tests/harness.py, a minted token) and through the store alone:

- storage requests per call (counted by a `raw_request_hook` on the table client),
- entities read per call (index rows + work items) against entities returned,
- median latency, and its ratio to the floor: one direct point read in the same run.

Target (issue 7): listing the open items and the items of one CI reads at most 2x the
entities returned. Exits 1 when missed. The resolved-by-month listing is shown for
information: month rows are flagged Resolved while their item is open (so that resolving
writes no month row), and such a listing drops one read per open item in its range.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient

from shared import storage, store, table_keys, workitem_index, workitem_rows
from shared.alert_events import event_from_alert
from shared.config import get_settings
from shared.workitem_index import OPEN_STATES, STATES, ItemFilter
from tests import alert_factory as af
from tests.azurite import Azurite
from tests.harness import FunctionsHost
from tests.jwks_server import JwksServer
from tests.tokens import CLIENT_ID, OTHER_APP_ID, TENANT_A, SigningKey, bearer, v2_claims

REPEAT = 15


class Requests:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def hook(self, _request: Any) -> None:
        with self._lock:
            self.count += 1

    def take(self) -> int:
        with self._lock:
            n, self.count = self.count, 0
            return n


def vm(n: int) -> str:
    return af.VM.replace("vm-web-01", f"vm-bench-{n:03d}")


def seed(s: store.WorkItemStore, items: int, open_items: int, cis: int) -> float:
    """`items` work items, the first `open_items` open, over `cis` CIs and ~90 days."""
    rng = random.Random(7)
    minutes = sorted(rng.uniform(0, 90 * 24 * 60) for _ in range(items))
    open_at = set(rng.sample(range(items), open_items))

    def one(n: int) -> None:
        name = f"bench-{n}"
        ci = (vm(n % cis),)
        sev = f"Sev{n % 5}"
        if n in open_at:
            alert = af.fired(name, minutes[n], cis=ci, severity=sev)
        else:  # a Resolved that arrives first creates its item already resolved
            alert = af.resolved(name, minutes[n], minutes[n] + 7, cis=ci, severity=sev)
        event = event_from_alert(alert, "alert")
        s.apply(event, lambda a=alert, e=event: workitem_rows.event_facts(a, e, None, None, None))

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(items)))
    return time.perf_counter() - started


def median_ms(fn: Callable[[], Any], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=200)
    parser.add_argument("--cis", type=int, default=100)
    args = parser.parse_args()

    server = Azurite()
    server.start()
    key = SigningKey.generate("bench")
    requests = Requests()
    failures = []
    try:
        with JwksServer(key) as jwks:
            os.environ.update(
                {
                    "AzureWebJobsStorage": server.connection_string,
                    "AAD_TENANT_IDS": TENANT_A,
                    "AAD_AUDIENCES": CLIENT_ID,
                    "AAD_JWKS_URI": jwks.url,
                }
            )
            tables = TableServiceClient.from_connection_string(
                server.connection_string, raw_request_hook=requests.hook
            )
            storage.table_service = lambda _settings: tables  # type: ignore[assignment]
            s = store.store_for(get_settings())

            seconds = seed(s, args.items, args.open, args.cis)
            seeded = requests.take()
            print(
                f"seeded {args.items} work items ({args.open} open, {args.cis} CIs) in "
                f"{seconds:.1f} s: {args.items / seconds:.0f} items/s, "
                f"{seeded / args.items:.1f} table requests per item"
            )

            import function_app

            host = FunctionsHost(function_app.app, server.connection_string)
            token = bearer(key.sign(v2_claims(app_id=OTHER_APP_ID, roles=["WorkItems.Read"])))

            # The floor: one point read of a work item, the cheapest request there is.
            some = s.list_items(ItemFilter(), 1, None).items[0]
            pk, rk = some["PartitionKey"], some["RowKey"]
            client = tables.get_table_client(table_keys.WORKITEMS_TABLE)
            client.get_entity(pk, rk)
            floor = median_ms(lambda: client.get_entity(pk, rk), 50)
            requests.take()
            print(f"floor: one point read {floor:.2f} ms (median of 50)\n")

            ci = workitem_index.ci_id(workitem_index.ci_hash(vm(3).lower(), af.TENANT))
            cases = [
                ("open items, first page (top 50)", ItemFilter(), 50, {}),
                ("open items, all in one page (top 500)", ItemFilter(), 500, {"top": 500}),
                (
                    "open Sev0/Sev1 items (server-side flags)",
                    ItemFilter(severities=(0, 1)),
                    50,
                    {"severity": "Sev0,Sev1"},
                ),
                (
                    "items of one CI, any state (top 50)",
                    ItemFilter(states=STATES, ci=workitem_index.ci_hash(vm(3).lower(), af.TENANT)),
                    50,
                    {"state": "all", "ci": ci},
                ),
                (
                    "open items of one CI",
                    ItemFilter(
                        states=OPEN_STATES, ci=workitem_index.ci_hash(vm(3).lower(), af.TENANT)
                    ),
                    50,
                    {"ci": ci},
                ),
                (
                    "resolved items, newest month first (info)",
                    ItemFilter(states=("Resolved",)),
                    50,
                    {"state": "Resolved"},
                ),
            ]
            informational = {cases[-1][0]}
            header = (
                f"{'listing':46} {'returned':>8} {'entities':>8} {'ratio':>6} "
                f"{'requests':>8} {'store ms':>9} {'http ms':>8} {'x floor':>8}"
            )
            print(header)
            print("-" * len(header))
            for label, flt, top, query in cases:
                page = s.list_items(flt, top, None)
                counted = requests.take()
                returned = len(page.items)
                read = page.stats["index_rows"] + page.stats["items_read"]
                ratio = read / returned if returned else float("nan")
                store_ms = median_ms(lambda f=flt, t=top: s.list_items(f, t, None))
                url = "/api/workitems?" + "&".join(f"{k}={v}" for k, v in query.items())

                def http(u: str = url, returned: int = returned) -> None:
                    answer = host.request("GET", u, headers={"Authorization": token})
                    assert answer.status_code == 200, answer.get_body()[:300]
                    assert len(json.loads(answer.get_body())["items"]) == returned

                http_ms = median_ms(http)
                requests.take()
                print(
                    f"{label:46} {returned:8d} {read:8d} {ratio:6.2f} {counted:8d} "
                    f"{store_ms:9.1f} {http_ms:8.1f} {http_ms / floor:8.1f}"
                )
                if returned and read > 2 * returned and label not in informational:
                    failures.append(f"{label}: {read} entities read for {returned} returned")

            # Paging through all open items: per page, the same ratio.
            pages, entities, returned_total, after = 0, 0, 0, None
            while True:
                page = s.list_items(ItemFilter(), 50, after)
                pages += 1
                entities += page.stats["index_rows"] + page.stats["items_read"]
                returned_total += len(page.items)
                after = page.after
                if after is None:
                    break
            paged_requests = requests.take()
            print(
                f"\nall {returned_total} open items in {pages} pages of 50: {entities} entities "
                f"read ({entities / max(returned_total, 1):.2f}x), {paged_requests} requests"
            )
            if returned_total != args.open:
                failures.append(f"paging returned {returned_total} open items, not {args.open}")
            counts = Counter(i["state"] for i in s.list_items(ItemFilter(), 500, None).items)
            print(f"open items by state: {dict(counts)}")
    finally:
        server.close()
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
