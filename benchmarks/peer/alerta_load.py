#!/usr/bin/env python3
"""Ingest benchmark for Alerta's ``POST /alert``: a peer figure for our Azure Monitor receiver.

Three bounded scenarios, each after an untimed warm-up:

  new    N distinct alerts (default 5,000): the create path.
  dedup  N posts cycling over K alerts (default 5,000 over 100) that were created
         beforehand (untimed): the duplicate path (same resource/event/severity).
  close  N alerts (default 1,000), each followed on the same connection by its
         ``normal`` severity: the create + auto-close path (2 x N requests).

For each scenario it reports requests (alerts) per second, latency percentiles, and the CPU
seconds that the server processes used, read from /proc before and after: each ``--server``
PID is taken with its whole process tree, including children that already exited (their
time is in the parent's cutime/cstime), so a PostgreSQL backend forked per connection is
counted. It also reports its own CPU and the whole machine's busy CPU, since client and
server share the 2 cores.

Every response is checked (status 201 and the expected ``repeat`` / ``status`` fields), so a
fast but wrong run shows up as "unexpected". Standard library only; traffic goes to a
loopback address only.

    python3 load.py                      # defaults: http://127.0.0.1:8090, 4 connections
    python3 load.py --json-out run.json  # also write every figure as JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import ipaddress
import json
import math
import os
import platform
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORK = os.environ.get("ALERTA_PEER_DIR", "/tmp/alerta-peer")  # noqa: S108  scratch folder
DEFAULT_SERVERS = [f"alerta={WORK}/gunicorn.pid", f"postgres={WORK}/pgdata/postmaster.pid"]


# ---------------------------------------------------------------- CPU accounting (/proc)


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime+stime+cutime+cstime in ticks) for every live process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue  # exited while we looked
        rest = raw[raw.rindex(")") + 2 :].split()
        # rest[0]=state, [1]=ppid, [11]=utime, [12]=stime, [13]=cutime, [14]=cstime
        table[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def tree_cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each root's process tree: live members' own time plus the time of
    children they have already reaped (cutime/cstime). Deltas of this are exact up to the
    10 ms tick, as long as the tree's root stays alive."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for label, root in roots.items():
        total, stack = 0, [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
                stack.extend(children.get(pid, []))
        out[label] = total / CLK_TCK
    return out


def machine_busy_seconds() -> float:
    """All CPUs' non-idle time (user+nice+system+irq+softirq+steal) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def read_server_pids(specs: list[str]) -> dict[str, int]:
    pids = {}
    for spec in specs:
        label, _, target = spec.partition("=")
        if not target:
            raise SystemExit(f"--server wants LABEL=PIDFILE or LABEL=PID, got {spec!r}")
        if target.isdigit():
            pid = int(target)
        else:
            try:
                with open(target) as f:
                    pid = int(f.readline().strip())
            except (OSError, ValueError) as e:
                raise SystemExit(  # noqa: B904  the message says it all
                    f"cannot read PID for {label} from {target}: {e} (is the server running?)"
                )
        if not os.path.exists(f"/proc/{pid}"):
            raise SystemExit(f"{label}: process {pid} is not running")
        pids[label] = pid
    return pids


# ---------------------------------------------------------------- HTTP client


class Client:
    """One HTTP/1.1 connection per worker thread; reconnects whenever the server closes
    (gunicorn's sync workers close after every response)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except Exception:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------- payloads and checks

ATTRIBUTES = {
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "resourceGroup": "rg-bench",
    "alertRule": "cpu-high",
    "region": "westeurope",
}


def alert(run: str, key: str, severity: str = "major") -> dict:
    """An alert in Alerta's JSON format; (environment, resource, event) is its dedup key."""
    return {
        "resource": f"vm-{run}-{key}",
        "event": "HighCpuLoad",
        "environment": "Production",
        "severity": severity,
        "service": ["peer-bench"],
        "group": "Performance",
        "value": "97%" if severity != "normal" else "12%",
        "text": "Percentage CPU above 90% for 5 minutes",
        "tags": ["bench"],
        "attributes": ATTRIBUTES,
        "origin": "load.py",
        "type": "peerBenchmark",
        "timeout": 86400,
    }


def expect(kind: str) -> Callable[[int, bytes], bool]:
    """The response that each kind of request must get."""

    def check(status: int, body: bytes) -> bool:
        if status != 201:
            return False
        a = json.loads(body).get("alert") or {}
        if kind == "new":
            return (
                a.get("repeat") is False
                and a.get("duplicateCount") == 0
                and a.get("status") == "open"
            )
        if kind == "dup":
            return a.get("repeat") is True and a.get("duplicateCount", 0) >= 1
        if kind == "fire":
            return a.get("status") == "open"
        if kind == "clear":
            return a.get("status") == "closed" and a.get("severity") == "normal"
        return True

    return check


Request = tuple[bytes, Callable[[int, bytes], bool]]


def enc(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# ---------------------------------------------------------------- phases


@dataclass
class PhaseResult:
    name: str
    planned: int
    sent: int = 0
    ok: int = 0
    unexpected: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    time_bound_hit: bool = False


def run_phase(
    name: str,
    tasks: list[list[Request]],
    host: str,
    port: int,
    path: str,
    concurrency: int,
    max_seconds: float,
    timeout: float,
    servers: dict[str, int],
) -> PhaseResult:
    """Send every task (a list of requests sent in order on one connection) with
    `concurrency` threads, stop taking new tasks after `max_seconds`."""
    res = PhaseResult(name, sum(len(t) for t in tasks))
    lock = threading.Lock()
    next_task = iter(tasks)
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        client = Client(host, port, timeout)
        lat: list[float] = []
        ok = bad = err = 0
        samples: list[str] = []
        while True:
            with lock:
                task = next(next_task, None)
            if task is None:
                break
            if time.monotonic() > deadline:
                with lock:
                    res.time_bound_hit = True
                break
            for body, check in task:
                t0 = time.perf_counter()
                try:
                    status, data = client.request("POST", path, body)
                except Exception as e:
                    lat.append((time.perf_counter() - t0) * 1e3)
                    err += 1
                    if len(samples) < 3:
                        samples.append(f"error: {type(e).__name__}: {e}")
                    continue
                lat.append((time.perf_counter() - t0) * 1e3)
                try:
                    good = check(status, data)
                except ValueError:
                    good = False
                if good:
                    ok += 1
                else:
                    bad += 1
                    if len(samples) < 3:
                        samples.append(f"HTTP {status}: {data[:300]!r}")
        client.close()
        with lock:
            res.latencies_ms.extend(lat)
            res.ok += ok
            res.unexpected += bad
            res.errors += err
            res.samples.extend(samples[: max(0, 5 - len(res.samples))])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    cpu0, mach0, self0 = tree_cpu_seconds(servers), machine_busy_seconds(), self_cpu_seconds()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.wall_s = time.perf_counter() - t0
    time.sleep(0.3)  # let per-request PostgreSQL backends exit and be reaped
    cpu1, mach1, self1 = tree_cpu_seconds(servers), machine_busy_seconds(), self_cpu_seconds()
    res.sent = len(res.latencies_ms)
    res.cpu = {label: cpu1[label] - cpu0[label] for label in servers}
    res.cpu["server_total"] = sum(res.cpu[label] for label in servers)
    res.cpu["client"] = self1 - self0
    res.cpu["machine_busy"] = mach1 - mach0
    return res


def percentile(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = math.ceil(p / 100 * len(sorted_vals)) - 1
    return sorted_vals[max(0, min(len(sorted_vals) - 1, k))]


def summarize(res: PhaseResult) -> dict:
    lat = sorted(res.latencies_ms)
    n = res.sent
    rate = n / res.wall_s if res.wall_s else 0.0
    per_k = (lambda s: s / n * 1000) if n else (lambda s: float("nan"))
    return {
        "scenario": res.name,
        "requests_planned": res.planned,
        "requests_sent": n,
        "ok": res.ok,
        "unexpected": res.unexpected,
        "errors": res.errors,
        "time_bound_hit": res.time_bound_hit,
        "wall_s": round(res.wall_s, 3),
        "alerts_per_s": round(rate, 1),
        "latency_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p90": round(percentile(lat, 90), 2),
            "p99": round(percentile(lat, 99), 2),
            "max": round(lat[-1], 2) if lat else None,
            "mean": round(sum(lat) / n, 2) if n else None,
        },
        "cpu_s": {k: round(v, 2) for k, v in res.cpu.items()},
        "cpu_s_per_1000_alerts": {k: round(per_k(v), 3) for k, v in res.cpu.items()},
        "alerts_per_server_cpu_s": round(n / res.cpu["server_total"], 1)
        if res.cpu.get("server_total")
        else None,
        "samples": res.samples,
    }


def print_row(s: dict, labels: list[str]) -> None:
    lat, cpu = s["latency_ms"], s["cpu_s_per_1000_alerts"]
    flag = ("  <-- time bound hit" if s["time_bound_hit"] else "") + (
        f"  <-- {s['unexpected']} unexpected, {s['errors']} errors"
        if s["unexpected"] or s["errors"]
        else ""
    )
    print(
        f"{s['scenario']:<7} {s['requests_sent']:>6} {s['ok']:>6} "
        f"{s['unexpected'] + s['errors']:>5} "
        f"{s['wall_s']:>7.2f} {s['alerts_per_s']:>8.1f} {lat['p50']:>7.2f} {lat['p99']:>8.2f} "
        + " ".join(f"{cpu[label]:>8.3f}" for label in labels)
        + f" {cpu['server_total']:>8.3f} {cpu['client']:>8.3f} {cpu['machine_busy']:>8.3f}"
        + f" {s['alerts_per_server_cpu_s'] or 0:>9.1f}{flag}"
    )
    for line in s["samples"]:
        print(f"        sample: {line}")


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--url",
        default=os.environ.get(
            "ALERTA_URL", f"http://127.0.0.1:{os.environ.get('API_PORT', '8090')}"
        ),
        help="Alerta API base URL (loopback only; default %(default)s)",
    )
    ap.add_argument(
        "--server",
        action="append",
        metavar="LABEL=PIDFILE|PID",
        help="process tree whose CPU is counted as server CPU; repeatable "
        f"(default: {' '.join(DEFAULT_SERVERS)})",
    )
    ap.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="client connections in flight (default %(default)s)",
    )
    ap.add_argument(
        "--scenarios",
        default="new,dedup,close",
        help="comma list of new,dedup,close (default %(default)s)",
    )
    ap.add_argument("--new", type=int, default=5000, help="alerts in 'new' (default %(default)s)")
    ap.add_argument(
        "--dedup", type=int, default=5000, help="posts in 'dedup' (default %(default)s)"
    )
    ap.add_argument(
        "--dedup-keys",
        type=int,
        default=100,
        help="distinct alerts the 'dedup' posts cycle over (default %(default)s)",
    )
    ap.add_argument(
        "--close", type=int, default=1000, help="fire+clear pairs in 'close' (default %(default)s)"
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="untimed alerts before the first scenario (default %(default)s)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=300,
        help="time bound per scenario (default %(default)s)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=30,
        help="per-request timeout in seconds (default %(default)s)",
    )
    ap.add_argument("--json-out", help="write the full results as JSON to this file")
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if url.scheme != "http" or not loopback:
        raise SystemExit(
            f"refusing {args.url}: this benchmark only targets http on a loopback address"
        )
    path = url.path.rstrip("/") + "/alert"
    servers = read_server_pids(args.server or DEFAULT_SERVERS)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(scenarios) - {"new", "dedup", "close"}:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")

    meta_client = Client(host, port, args.timeout)
    try:
        st, body = meta_client.request("GET", url.path.rstrip("/") + "/management/manifest")
        manifest = json.loads(body) if st == 200 else {"status": st}
    except Exception as e:
        manifest = {"error": str(e)}
    meta_client.close()

    run = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    common = {
        "host": host,
        "port": port,
        "path": path,
        "concurrency": args.concurrency,
        "max_seconds": args.max_seconds,
        "timeout": args.timeout,
        "servers": servers,
    }
    meta = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "url": args.url,
        "concurrency": args.concurrency,
        "servers": servers,
        "server_manifest": manifest,
        "run_tag": run,
    }
    print(
        f"# {meta['date_utc']}  {args.url}  concurrency={args.concurrency}  cpus={os.cpu_count()}  "
        f"server={manifest.get('release', manifest)}  run={run}"
    )

    if args.warmup:
        w = run_phase(
            "warmup",
            [[(enc(alert(run, f"warm{i}")), expect("new"))] for i in range(args.warmup)],
            **common,
        )
        print(f"# warm-up: {w.ok}/{w.planned} ok in {w.wall_s:.1f}s")
        if w.ok == 0:
            print("warm-up got no good response; samples:", *w.samples, sep="\n  ", file=sys.stderr)
            return 1

    results = []
    for name in scenarios:
        if name == "new":
            tasks = [[(enc(alert(run, f"new{i}")), expect("new"))] for i in range(args.new)]
        elif name == "dedup":
            seed = [[(enc(alert(run, f"dup{k}")), expect("new"))] for k in range(args.dedup_keys)]
            s = run_phase("seed", seed, **common)
            print(f"# dedup seed: {s.ok}/{s.planned} alerts created (untimed)")
            tasks = [
                [(enc(alert(run, f"dup{i % args.dedup_keys}")), expect("dup"))]
                for i in range(args.dedup)
            ]
        else:
            tasks = [
                [
                    (enc(alert(run, f"cls{i}")), expect("fire")),
                    (enc(alert(run, f"cls{i}", severity="normal")), expect("clear")),
                ]
                for i in range(args.close)
            ]
        results.append(summarize(run_phase(name, tasks, **common)))

    labels = list(servers)
    print(
        f"{'':<7} {'':>6} {'':>6} {'':>5} {'':>7} {'':>8} {'latency ms':>16} "
        f"{'CPU-seconds per 1,000 alerts':^{9 * (len(labels) + 4)}} {'alerts per':>9}"
    )
    print(
        f"{'scen.':<7} {'sent':>6} {'ok':>6} {'bad':>5} {'wall s':>7} {'alerts/s':>8} "
        f"{'p50':>7} {'p99':>8} "
        + " ".join(f"{label[:8]:>8}" for label in labels)
        + f" {'server':>8} {'client':>8} {'machine':>8} {'srv CPU-s':>9}"
    )
    for s in results:
        print_row(s, labels)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"# wrote {args.json_out}")
    return (
        0
        if all(
            s["unexpected"] == 0 and s["errors"] == 0 and not s["time_bound_hit"] for s in results
        )
        else 2
    )


if __name__ == "__main__":
    sys.exit(main())
