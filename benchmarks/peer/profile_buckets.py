#!/usr/bin/env python3
"""Sort py-spy raw (collapsed) stacks into buckets of our per-alert CPU.

    python profile_buckets.py --load load-new.json http.txt processor.txt [--json-out f]

A stack goes to the first bucket whose marker appears anywhere in it (most specific first),
so the SDK's HTTP transport below a table call counts as a table call. Each file's shares are
scaled by that process's CPU-seconds per 1,000 alerts from load.py's meter (http, processor),
giving milliseconds of CPU per alert per bucket; Azurite's node CPU comes from the meter.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def classify(stack: str, process: str) -> str:
    """The bucket of one sampled stack (first match wins, most specific first)."""
    # py-spy shortens file names to the part below sys.path's folders: "(tables/...",
    # "(queue/...", "(core/..." are azure.data.tables, azure.storage.queue, azure.core.
    has = lambda *marks: any(m in stack for m in marks)  # noqa: E731
    if has("shared/auth.py", "shared/caller.py", "(jwt/"):
        return "token check (shared/caller.py, shared/auth.py, PyJWT)"
    if has("shared/alerts/"):
        return "normalization (shared/alerts/)"
    if process == "processor" and has("_metered", "FunctionsHost._receive", "delete_message"):
        return "host: listener receive/delete/poll (metered apart; the Functions host's in Azure)"
    if has("TableBatchOperations"):
        return "table transactions: the SDK builds the inner requests (TableBatchOperations)"
    if has("shared/table_batch.py"):
        return "table transactions: envelope, pipeline, transport, http.client"
    if has("(tables/"):
        return "table point reads and queries (azure-data-tables, pipeline, transport)"
    if has("(queue/", "(core/", "(requests/", "(urllib3/", "shared/storage_transport.py"):
        return (
            "queue send in ingest (azure-storage-queue, pipeline, transport)"
            if process == "http"
            else "storage SDK, other (processor)"
        )
    if has("shared/"):
        return (
            "ingest glue (shared/ingest.py, alert_queue encode, responses)"
            if process == "http"
            else "work item logic (shared/processor.py, store.py, rows, index)"
        )
    if process == "processor" and has(
        "tests/harness.py", "concurrent/futures", "threading.py", "processor.py"
    ):
        return "worker and harness (invocation, protobuf, thread pool, polling loop)"
    if process == "http" and has("(gunicorn/", "adapter.py", "(functions/"):
        return "HTTP front (gunicorn, adapter.py, azure.functions HttpRequest/Response)"
    return f"other ({process}: interpreter, logging, GC)"


def read(path: Path, process: str) -> Counter:
    c: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            c[classify(stack, process)] += int(n)
    return c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", required=True)
    ap.add_argument("http")
    ap.add_argument("processor")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    result = json.loads(Path(a.load).read_text())["results"][0]
    per_k = result["e2e"]["cpu_s_per_1000_alerts"]  # CPU-s per 1,000 alerts = ms per alert
    ms = Counter()
    files = {"http": read(Path(a.http), "http"), "processor": read(Path(a.processor), "processor")}
    for label, counts in files.items():
        total = sum(counts.values()) or 1
        for bucket, n in counts.items():
            ms[bucket] += per_k[label] * n / total
    ms["Azurite (node; from the meter, not profiled)"] = per_k["azurite"]
    python_total = per_k["http"] + per_k["processor"]
    all_total = python_total + per_k["azurite"]
    rows = [
        {
            "bucket": b,
            "ms_per_alert": round(v, 3),
            "pct_of_python": round(100 * v / python_total, 1) if "Azurite" not in b else None,
            "pct_of_all": round(100 * v / all_total, 1),
        }
        for b, v in ms.most_common()
    ]
    print(f"{'bucket':<72} {'ms/alert':>8} {'% Python':>8} {'% all':>6}")
    for r in rows:
        pp = f"{r['pct_of_python']:.1f}" if r["pct_of_python"] is not None else "-"
        print(f"{r['bucket']:<72} {r['ms_per_alert']:>8.2f} {pp:>8} {r['pct_of_all']:>6.1f}")
    print(
        f"meter: host queue calls {per_k.get('host_queue', 0):.2f} ms/alert, "
        f"app (http + processor - host queue) {per_k.get('app', 0):.2f} ms/alert"
    )
    print(
        f"samples: http {sum(files['http'].values())}, "
        f"processor {sum(files['processor'].values())}; meter: http {per_k['http']}, "
        f"processor {per_k['processor']}, azurite {per_k['azurite']} CPU-s/1000"
    )
    if a.json_out:
        Path(a.json_out).write_text(
            json.dumps(
                {
                    "load": {k: result[k] for k in ("http", "e2e")},
                    "samples": {k: dict(v) for k, v in files.items()},
                    "buckets": rows,
                },
                indent=2,
            )
        )
        print(f"# wrote {a.json_out}")


if __name__ == "__main__":
    main()
