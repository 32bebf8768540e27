"""Peer benchmark: this app and Alerta 9.1.0 under the same three workloads and CPU meter.

    .venv/bin/python benchmarks/bench_peer.py                       # 3 rounds, 2,000/2,000/1,000
    .venv/bin/python benchmarks/bench_peer.py --rounds 3 --new 1000 --dedup 1000 --close 500
    .venv/bin/python benchmarks/bench_peer.py --summarize /tmp/bench-peer   # table only

Interleaved rounds (Alerta, ours, Alerta, ours, ...), each system from a fresh setup and
stopped before the other starts, all on 127.0.0.1 (benchmarks/peer/):
- Alerta: `alerta-server==9.1.0` under gunicorn (2 sync workers) on PostgreSQL 15 from the
  Debian package, a fresh database per round (`alerta_setup.sh`, pip and apt only);
- ours: `receive_alert` under the same gunicorn through a small WSGI adapter, `process_alert`
  driven by the project's host harness (tests/harness.py) in a process of its own, Azurite on
  disk, a local Entra stand-in for the token (`ours_setup.sh`);
- the same driver and meter for both (`alerta_load.py`; `ours_load.py` adds the token, our
  payloads and the table checks): N new alerts, N duplicates over 100 alerts, N open+close
  pairs, 4 connections, server CPU per process tree from /proc.

Two figures per workload, each ours/Alerta in alerts per server CPU-second (above 1: ours is
ahead), and their median over the rounds:
- storage engines included: (our Python + Azurite) against (Alerta's gunicorn + PostgreSQL);
- application code only: our Python against Alerta's gunicorn.
"Our Python" leaves out the queue listener's own receive/delete/poll CPU, which
`peer/processor.py` meters per call apart: in Azure the Functions host does it, not our
Python. Both sides include their HTTP front (gunicorn). Targets (issue 20): application code
>= 1.0x on every workload, >= 1.5x with the storage engines.

Needs: PostgreSQL's server binaries (alerta_setup.sh runs `apt-get install postgresql` when
they are missing; it runs initdb/postgres as the `postgres` user when started as root), pip
for Alerta's own virtual environment, and gunicorn 27.0.1 (Alerta's) plus py-spy, which
ours_setup.sh pip-installs into this checkout's .venv when missing. About 10 minutes a
round at the default counts on a busy 2-core machine.

Results (JSON per round and system) go to --out (default /tmp/bench-peer). Exit 1 when a
setup or a run fails or a check misses; the targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER = HERE / "peer"
REPO = HERE.parent
WORKLOADS = ("new", "dedup", "close")
TARGET_APP = 1.0
TARGET_ENGINES = 1.5


def _run(cmd: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}  ({time.strftime('%H:%M:%S')} UTC)\n")
        out.flush()
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def run_round(number: int, args: argparse.Namespace, out: Path) -> bool:
    """One Alerta run, then one of ours; True when both ran and every check passed."""
    counts = [
        f"--new={args.new}",
        f"--dedup={args.dedup}",
        f"--close={args.close}",
        f"--concurrency={args.concurrency}",
    ]
    log = out / "bench_peer.log"
    alerta_env = {
        **os.environ,
        "ALERTA_PEER_DIR": str(out / "alerta"),
        "PG_PORT": str(args.pg_port),
        "API_PORT": str(args.alerta_port),
    }
    ours_env = {
        **os.environ,
        "OURS_PEER_DIR": str(out / "ours"),
        "API_PORT": str(args.ours_port),
        "JWKS_PORT": str(args.ours_port + 1),
        "AZURITE_PORTS": ",".join(str(args.azurite_port + i) for i in range(3)),
    }
    good = True
    for system, env, setup, load, stop, url in (
        (
            "alerta",
            alerta_env,
            "alerta_setup.sh",
            "alerta_load.py",
            "alerta_stop.sh",
            args.alerta_port,
        ),
        ("ours", ours_env, "ours_setup.sh", "ours_load.py", "ours_stop.sh", args.ours_port),
    ):
        load_avg = Path("/proc/loadavg").read_text().split()[:3]
        print(f"round {number} {system}: setup (load {' '.join(load_avg)})", flush=True)
        if _run(["bash", str(PEER / setup)], env, log) != 0:
            print(f"  {system} setup failed; see {log}", flush=True)
            _run(["bash", str(PEER / stop)], env, log)
            return False
        result = out / f"{system}-round{number}.json"
        code = _run(
            [
                sys.executable,
                str(PEER / load),
                f"--url=http://127.0.0.1:{url}",
                *counts,
                f"--json-out={result}",
            ],
            env,
            log,
        )
        _run(["bash", str(PEER / stop)], env, log)
        print(f"  {system} load exit {code} -> {result.name}", flush=True)
        good = good and code == 0
    return good


def _per_alert(result: dict[str, Any]) -> tuple[float, float, int]:
    """(application CPU-s, with storage engine CPU-s, alerts) of one scenario of either system."""
    if "e2e" in result:  # ours
        cpu = result["e2e"]["cpu_s"]
        return cpu["app"], cpu["app_with_storage"], result["requests_sent"]
    cpu = result["cpu_s"]
    return cpu["alerta"], cpu["server_total"], result["requests_sent"]


def summarize(out: Path) -> dict[str, dict[str, list[float]]]:
    """Print the per-round and median ratios from the JSON results in `out`."""
    ratios: dict[str, dict[str, list[float]]] = {w: {"app": [], "engines": []} for w in WORKLOADS}
    rows = []
    for ours_file in sorted(out.glob("ours-round*.json")):
        number = ours_file.stem.removeprefix("ours-round")
        alerta_file = out / f"alerta-round{number}.json"
        if not alerta_file.exists():
            continue
        ours = {r["scenario"]: r for r in json.loads(ours_file.read_text())["results"]}
        alerta = {r["scenario"]: r for r in json.loads(alerta_file.read_text())["results"]}
        for w in WORKLOADS:
            if w not in ours or w not in alerta:
                continue
            o_app, o_all, o_n = _per_alert(ours[w])
            a_app, a_all, a_n = _per_alert(alerta[w])
            app = (o_n / o_app) / (a_n / a_app)
            engines = (o_n / o_all) / (a_n / a_all)
            ratios[w]["app"].append(app)
            ratios[w]["engines"].append(engines)
            c = ours[w]["e2e"]["cpu_s_per_1000_alerts"]
            a = alerta[w]["cpu_s_per_1000_alerts"]
            rows.append(
                f"| {number} | {w} | {a['alerta']:.2f} + pg {a['postgres']:.2f} "
                f"| {c['app']:.2f} (http {c['http']:.2f} + listener "
                f"{c['processor'] - c['host_queue']:.2f}) + azurite {c['azurite']:.2f} "
                f"| {c['host_queue']:.2f} | {engines:.2f} | {app:.2f} |"
            )
    print("\nCPU-s per 1,000 alerts and ours/Alerta alerts per server CPU-second, per round:")
    print(
        "| round | workload | Alerta: gunicorn + PostgreSQL | ours: app + Azurite "
        "| host queue (left out) | ratio, engines included | ratio, app code only |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nMedians over the rounds (target: app >= 1.0, engines >= 1.5):")
    print("| workload | rounds | storage engines included | application code only |")
    print("|---|---|---|---|")
    for w in WORKLOADS:
        r = ratios[w]
        if not r["app"]:
            continue
        engines, app = statistics.median(r["engines"]), statistics.median(r["app"])
        each_engines = ", ".join(f"{x:.2f}" for x in r["engines"])
        each_app = ", ".join(f"{x:.2f}" for x in r["app"])
        print(
            f"| {w} | {len(r['app'])} | {engines:.2f} ({each_engines})"
            f"{'' if engines >= TARGET_ENGINES else ' missed'} "
            f"| {app:.2f} ({each_app}){'' if app >= TARGET_APP else ' missed'} |"
        )
    return ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=2000)
    ap.add_argument("--dedup", type=int, default=2000)
    ap.add_argument("--close", type=int, default=1000, help="open+close pairs")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-peer"))  # noqa: S108  scratch
    ap.add_argument("--pg-port", type=int, default=54329)
    ap.add_argument("--alerta-port", type=int, default=8090)
    ap.add_argument("--ours-port", type=int, default=8091, help="and the next one for the keys")
    ap.add_argument("--azurite-port", type=int, default=10100, help="blob; queue and table follow")
    ap.add_argument("--summarize", type=Path, metavar="DIR", help="only print the table of DIR")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("*-round*.json"):
        stale.unlink()
    good = True
    for number in range(1, args.rounds + 1):
        good = run_round(number, args, args.out) and good
    summarize(args.out)
    print(f"\nlogs and JSON: {args.out}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
