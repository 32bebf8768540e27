#!/usr/bin/env python3
"""Our receiver under the peer's three workloads and the peer's meter, end to end.

Same scenarios, counts, concurrency, phase runner and CPU accounting as alerta_load.py
(imported from there): N new alerts, N duplicate deliveries cycling over K
alerts created beforehand (untimed), N Fired+Resolved pairs of the same alert id sent in
order on one connection. Payloads are common-alert-schema metric alerts (the published
sample samples/metric-alert-static-fired.json with alertId and firedDateTime
varied; Resolved adds resolvedDateTime), each POSTed with the one valid bearer token that
ours_setup.sh minted (Azure Monitor reuses a token for about an hour).

Our answer (202) only means "durably queued"; the work item is written by process_alert
behind the queue. So each scenario is measured twice:
  http   accepted requests per second and latency, over the HTTP phase (the peer's figure);
  e2e    until everything sent is processed: the queue listener (processor.py) has
         completed as many messages as were accepted; CPU of every component is read then.
After each scenario the tables are checked (outside the timed window): one work item per
alert id, in the right state (New after Fired, Resolved after the pair), one occurrence,
one history entry per distinct event, nothing poisoned, queues empty.

CPU per component, each a process tree read from /proc as the peer does: http (gunicorn
master + 2 workers), processor (the queue listener), azurite (node). Totals with and
without Azurite (a development emulator, not the production storage engine). The queue
listener's own receive/delete CPU (processor.py meters it per call: in Azure the Functions
host does that work, not our Python) is reported as host_queue and left out of "app":
app = http + processor - host_queue.

    $OURS_PEER_DIR/venv/bin/python ours_load.py --new 2000 --dedup 2000 --close 1000 \
        --json-out result.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("OURS_PEER_DIR", "/tmp/ours-peer"))  # noqa: S108  scratch folder
_spec = importlib.util.spec_from_file_location("peer_load", HERE / "alerta_load.py")
assert _spec is not None
assert _spec.loader is not None
peer = importlib.util.module_from_spec(_spec)
sys.modules["peer_load"] = peer  # dataclasses look their module up there
_spec.loader.exec_module(peer)

DEFAULT_SAMPLE = HERE.parent.parent / "samples" / "metric-alert-static-fired.json"
NS = uuid.UUID("6f0b1c9e-2d3a-4b5c-8d7e-9f0a1b2c3d4e")


class AuthClient(peer.Client):
    """The peer's client plus the Authorization header on every request."""

    authorization = ""

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = peer.http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Authorization": self.authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
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


peer.Client = AuthClient  # run_phase builds its per-thread clients from this name


class Alerts:
    """Common-schema payloads from the sample: alertId and firedDateTime varied per key."""

    def __init__(self, sample: Path, run: str) -> None:
        self.sample = json.loads(sample.read_text())
        self.run = run
        self.sub = self.sample["data"]["essentials"]["alertId"].split("/")[2]
        self.t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        self.n = 0

    def alert_id(self, key: str) -> str:
        instance = uuid.uuid5(NS, self.run + key)
        return f"/subscriptions/{self.sub}/providers/Microsoft.AlertsManagement/alerts/{instance}"

    def body(self, key: str, index: int, condition: str = "Fired") -> bytes:
        p = copy.deepcopy(self.sample)
        e = p["data"]["essentials"]
        fired = self.t0 + dt.timedelta(milliseconds=index)
        e["alertId"] = self.alert_id(key)
        e["firedDateTime"] = fired.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        e["monitorCondition"] = condition
        if condition == "Resolved":
            e["resolvedDateTime"] = (
                (fired + dt.timedelta(minutes=5))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        return json.dumps(p, separators=(",", ":")).encode()


def expect(condition: str):
    def check(status: int, body: bytes) -> bool:
        if status != 202:
            return False
        a = json.loads(body)
        return a.get("status") == "accepted" and a.get("monitorCondition") == condition

    return check


def processor_status() -> dict:
    for _ in range(50):
        try:
            return json.loads((WORK / "processor.status").read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise SystemExit("cannot read processor.status (is processor.py running?)")


def wait_processed(target: int, timeout: float) -> tuple[bool, dict]:
    deadline = time.monotonic() + timeout
    while True:
        st = processor_status()
        if st["succeeded"] >= target:
            return True, st
        if time.monotonic() > deadline:
            return False, st
        time.sleep(0.05)


def run_e2e(name, tasks, common, done_timeout):
    servers = common["servers"]
    st0 = processor_status()
    cpu0, mach0, self0 = (
        peer.tree_cpu_seconds(servers),
        peer.machine_busy_seconds(),
        peer.self_cpu_seconds(),
    )
    t0 = time.perf_counter()
    res = peer.run_phase(name, tasks, **common)
    backlog = st0["succeeded"] + res.ok - processor_status()["succeeded"]
    done, st1 = wait_processed(st0["succeeded"] + res.ok, done_timeout)
    done_s = time.perf_counter() - t0
    cpu1, mach1, self1 = (
        peer.tree_cpu_seconds(servers),
        peer.machine_busy_seconds(),
        peer.self_cpu_seconds(),
    )
    s = peer.summarize(res)
    n = s["requests_sent"]
    cpu = {k: cpu1[k] - cpu0[k] for k in servers}
    cpu["server_total"] = sum(cpu.values())
    cpu["server_without_azurite"] = cpu["server_total"] - cpu.get("azurite", 0.0)
    cpu["host_queue"] = st1.get("host_queue_cpu_s", 0.0) - st0.get("host_queue_cpu_s", 0.0)
    cpu["app"] = cpu["server_without_azurite"] - cpu["host_queue"]
    cpu["app_with_storage"] = cpu["app"] + cpu.get("azurite", 0.0)
    cpu["client"] = self1 - self0
    cpu["machine_busy"] = mach1 - mach0
    per_k = {k: round(v / n * 1000, 3) for k, v in cpu.items()} if n else {}
    return {
        "scenario": name,
        "requests_planned": s["requests_planned"],
        "requests_sent": n,
        "accepted_ok": s["ok"],
        "unexpected": s["unexpected"],
        "errors": s["errors"],
        "time_bound_hit": s["time_bound_hit"],
        "http": {
            "wall_s": s["wall_s"],
            "alerts_per_s": s["alerts_per_s"],
            "latency_ms": s["latency_ms"],
            "cpu_s": s["cpu_s"],
            "cpu_s_per_1000_alerts": s["cpu_s_per_1000_alerts"],
            # Upper bound only: the listener's status file is rewritten when its queue runs
            # empty, so under continuous load this reads "everything"; see processing_lag_s.
            "backlog_at_http_end": backlog,
        },
        "e2e": {
            "processed": done,
            "done_s": round(done_s, 3),
            "processing_lag_s": round(done_s - s["wall_s"], 3),  # done after the last HTTP answer
            "alerts_per_s": round(s["ok"] / done_s, 1) if done_s else None,
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_s_per_1000_alerts": per_k,
            "alerts_per_server_cpu_s": round(n / cpu["server_total"], 1)
            if cpu["server_total"]
            else None,
            "alerts_per_server_cpu_s_without_azurite": round(n / cpu["server_without_azurite"], 1)
            if cpu["server_without_azurite"]
            else None,
            "alerts_per_app_cpu_s": round(n / cpu["app"], 1) if cpu["app"] > 0 else None,
            "alerts_per_app_with_storage_cpu_s": round(n / cpu["app_with_storage"], 1)
            if cpu["app_with_storage"] > 0
            else None,
            "queue_listener": {
                k: st1[k] - st0[k] for k in ("succeeded", "failed_attempts", "poisoned")
            },
        },
        "samples": s["samples"],
    }


def check_tables(conn: str, expected: dict[str, tuple[str, Counter]]) -> list[str]:
    """expected: alert id (lower) -> (state, Counter of conditions in history)."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient

    table = TableServiceClient.from_connection_string(conn).get_table_client("workitems")
    items: dict[str, list] = {}
    for e in table.query_entities(
        "RowKey ge 'i|' and RowKey lt 'i}'", select=["alertIds", "state", "occurrences"]
    ):
        for a in json.loads(e["alertIds"]):
            items.setdefault(a.lower(), []).append(e)
    history: dict[str, Counter] = {}
    for h in table.query_entities(
        "RowKey ge 'h|' and RowKey lt 'h}'", select=["alertId", "condition"]
    ):
        history.setdefault(str(h["alertId"]).lower(), Counter())[h["condition"]] += 1
    problems: Counter = Counter()
    for alert_id, (state, conditions) in expected.items():
        got = items.get(alert_id, [])
        if len(got) != 1:
            problems[f"{len(got)} work items (want 1)"] += 1
        elif got[0]["state"] != state:
            problems[f"state {got[0]['state']} (want {state})"] += 1
        elif got[0]["occurrences"] != 1:
            problems[f"occurrences {got[0]['occurrences']}"] += 1
        if history.get(alert_id, Counter()) != conditions:
            problems[f"history {dict(history.get(alert_id, {}))} (want {dict(conditions)})"] += 1
    for q in ("alerts", "alerts-poison"):
        try:
            left = (
                QueueClient.from_connection_string(conn, q)
                .get_queue_properties()
                .approximate_message_count
            )
        except Exception:
            left = 0
        if left:
            problems[f"{left} messages left in {q}"] += 1
    return [f"{k}: {v} alerts" for k, v in problems.items()]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('API_PORT', '8091')}")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--scenarios", default="new,dedup,close")
    ap.add_argument("--new", type=int, default=2000)
    ap.add_argument("--dedup", type=int, default=2000)
    ap.add_argument("--dedup-keys", type=int, default=100)
    ap.add_argument(
        "--close", type=int, default=1000, help="Fired+Resolved pairs (2 requests each)"
    )
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument(
        "--done-timeout",
        type=float,
        default=600,
        help="seconds to wait for processing after the HTTP phase",
    )
    ap.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    ap.add_argument("--server", action="append", metavar="LABEL=PIDFILE|PID")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    env = {}
    for line in (WORK / "env.sh").read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            for part in line[7:].split(" "):
                k, _, v = part.partition("=")
                env[k] = v.strip("'")
    conn = env["AzureWebJobsStorage"]
    AuthClient.authorization = "Bearer " + (WORK / "token.txt").read_text().strip()
    url = peer.urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port
    if not peer.ipaddress.ip_address(peer.socket.gethostbyname(host)).is_loopback:
        raise SystemExit("loopback only")
    servers = peer.read_server_pids(
        args.server
        or [
            f"http={WORK}/gunicorn.pid",
            f"processor={WORK}/processor.pid",
            f"azurite={WORK}/azurite.pid",
        ]
    )
    run = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S") + f"-{os.getpid()}"
    common = {
        "host": host,
        "port": port,
        "path": url.path.rstrip("/") + "/api/alerts",
        "concurrency": args.concurrency,
        "max_seconds": args.max_seconds,
        "timeout": args.timeout,
        "servers": servers,
    }
    gen = Alerts(args.sample, run)
    freeze = (
        (WORK / "pip-freeze.txt").read_text().splitlines()
        if (WORK / "pip-freeze.txt").exists()
        else []
    )
    meta = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "url": args.url,
        "concurrency": args.concurrency,
        "servers": servers,
        "run_tag": run,
        "checkout_commit": (WORK / "checkout-commit.txt").read_text().strip()
        if (WORK / "checkout-commit.txt").exists()
        else None,
        "sample": args.sample.name,
        "payload_bytes": len(gen.body("probe", 0)),
        "packages": [
            p
            for p in freeze
            if p.split("==")[0].lower()
            in {
                "azure-functions",
                "azure-storage-queue",
                "azure-data-tables",
                "azure-core",
                "gunicorn",
                "pyjwt",
                "cryptography",
            }
        ],
        "counts": {
            "new": args.new,
            "dedup": args.dedup,
            "dedup_keys": args.dedup_keys,
            "close_pairs": args.close,
            "warmup": args.warmup,
        },
    }
    print(
        f"# {meta['date_utc']}  {args.url}  concurrency={args.concurrency}  "
        f"load={meta['loadavg_at_start']}  run={run}"
    )

    def untimed(label, bodies, condition="Fired"):
        base = processor_status()["succeeded"]
        w = peer.run_phase(label, [[(b, expect(condition))] for b in bodies], **common)
        ok, _ = wait_processed(base + w.ok, args.done_timeout)
        print(f"# {label}: {w.ok}/{w.planned} accepted in {w.wall_s:.1f}s, processed: {ok}")
        if w.ok != w.planned or not ok:
            raise SystemExit(f"{label} failed: {w.samples}")

    if args.warmup:
        untimed("warm-up", [gen.body(f"warm{i}", i) for i in range(args.warmup)])

    results = []
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        if name == "new":
            tasks = [[(gen.body(f"new{i}", i), expect("Fired"))] for i in range(args.new)]
            mine = {
                gen.alert_id(f"new{i}").lower(): ("New", Counter({"Fired": 1}))
                for i in range(args.new)
            }
        elif name == "dedup":
            seeds = [gen.body(f"dup{k}", k) for k in range(args.dedup_keys)]
            untimed("dedup seed", seeds)
            tasks = [[(seeds[i % args.dedup_keys], expect("Fired"))] for i in range(args.dedup)]
            mine = {
                gen.alert_id(f"dup{k}").lower(): ("New", Counter({"Fired": 1}))
                for k in range(args.dedup_keys)
            }
        elif name == "close":
            tasks = [
                [
                    (gen.body(f"cls{i}", i), expect("Fired")),
                    (gen.body(f"cls{i}", i, "Resolved"), expect("Resolved")),
                ]
                for i in range(args.close)
            ]
            mine = {
                gen.alert_id(f"cls{i}").lower(): ("Resolved", Counter({"Fired": 1, "Resolved": 1}))
                for i in range(args.close)
            }
        else:
            raise SystemExit(f"unknown scenario {name}")
        r = run_e2e(name, tasks, common, args.done_timeout)
        if not args.no_verify:
            t = time.perf_counter()
            r["verify"] = {
                "problems": check_tables(conn, mine),
                "alert_ids_checked": len(mine),
                "seconds": round(time.perf_counter() - t, 1),
            }
        results.append(r)
        h, e = r["http"], r["e2e"]
        c = e["cpu_s_per_1000_alerts"]
        print(
            f"{name:<6} sent {r['requests_sent']:>5} ok {r['accepted_ok']:>5} "
            f"bad {r['unexpected'] + r['errors']:>3} | http {h['wall_s']:6.1f}s "
            f"{h['alerts_per_s']:6.1f}/s p50 {h['latency_ms']['p50']:6.1f} "
            f"p99 {h['latency_ms']['p99']:6.1f} ms | done {e['done_s']:6.1f}s "
            f"({e['alerts_per_s']:.1f}/s, +{e['processing_lag_s']:.1f}s) | CPU-s/1000: "
            f"http {c['http']:.2f} proc {c['processor']:.2f} azurite {c['azurite']:.2f} "
            f"total {c['server_total']:.2f} "
            f"w/o azurite {c['server_without_azurite']:.2f} host queue {c['host_queue']:.2f} "
            f"app {c['app']:.2f} client {c['client']:.2f} machine {c['machine_busy']:.2f} | "
            f"alerts/srv-CPU-s {e['alerts_per_server_cpu_s']} "
            f"({e['alerts_per_server_cpu_s_without_azurite']} w/o azurite) | "
            f"verify: {r.get('verify', {}).get('problems', 'skipped') or 'ok'}"
        )
        for line in r["samples"]:
            print(f"        sample: {line}")

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"# wrote {args.json_out}")
    good = all(
        r["unexpected"] == 0
        and r["errors"] == 0
        and not r["time_bound_hit"]
        and r["e2e"]["processed"]
        and not r.get("verify", {}).get("problems")
        and r["e2e"]["queue_listener"]["poisoned"] == 0
        for r in results
    )
    return 0 if good else 2


if __name__ == "__main__":
    sys.exit(main())
