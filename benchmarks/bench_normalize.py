"""Cost of parse_payload + normalize per sample, against json.loads of the same bytes.

    .venv/bin/python benchmarks/bench_normalize.py [--rounds N] [--target 2.0] [--split]

json.loads is the floor no parser can beat; both are measured in the same run, in
interleaved rounds (so a noisy neighbour hits both alike), and compared by median.
Exits non-zero when the average ratio over the samples exceeds the target.

--split adds, after the measurement above (which it does not change), a table of the two
halves measured the same way: parse_payload alone and normalize of a parsed payload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.alerts import normalize, parse_payload
from tests.alert_samples import all_payloads

RECEIVED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def _halves(body: bytes, loops: int) -> tuple[float, float, float]:
    """Per call: json.loads, parse_payload, and normalize of the already parsed payload."""
    clock = time.perf_counter
    parsed = parse_payload(body)
    start = clock()
    for _ in range(loops):
        json.loads(body)
    parsed_at = clock()
    for _ in range(loops):
        parse_payload(body)
    normalized_at = clock()
    for _ in range(loops):
        normalize(parsed, tenant_id="tenant", correlation_id="corr", received_at=RECEIVED_AT)
    end = clock()
    return (
        (parsed_at - start) / loops,
        (normalized_at - parsed_at) / loops,
        (end - normalized_at) / loops,
    )


def _split(payloads: dict[str, bytes], rounds: int, loops: int) -> None:
    """parse_payload and normalize apart, each against json.loads of the same bytes."""
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in payloads}
    for _ in range(rounds):
        for name, body in payloads.items():
            times[name].append(_halves(body, loops))
    header = f"{'json.loads':>11} {'parse':>9} {'ratio':>6} {'normalize':>9} {'ratio':>6}"
    print(f"\n{'sample':44} {header}")
    parse_ratios: list[float] = []
    norm_ratios: list[float] = []
    for name, runs in times.items():
        floor, parse, norm = (statistics.median(column) for column in zip(*runs, strict=True))
        parse_ratios.append(parse / floor)
        norm_ratios.append(norm / floor)
        print(
            f"{name:44} {floor * 1e6:9.2f}us {parse * 1e6:7.2f}us {parse / floor:6.2f}"
            f" {norm * 1e6:7.2f}us {norm / floor:6.2f}"
        )
    print(
        f"\naverage: parse_payload {statistics.fmean(parse_ratios):.2f}x, normalize "
        f"{statistics.fmean(norm_ratios):.2f}x json.loads of the same bytes"
    )


def _per_call(fn: object, body: bytes, loops: int) -> float:
    clock = time.perf_counter
    start = clock()
    if fn is json.loads:
        for _ in range(loops):
            json.loads(body)
    else:
        for _ in range(loops):
            normalize(
                parse_payload(body),
                tenant_id="tenant",
                correlation_id="corr",
                received_at=RECEIVED_AT,
            )
    return (clock() - start) / loops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--loops", type=int, default=200, help="calls per timing")
    parser.add_argument("--target", type=float, default=2.0)
    parser.add_argument("--split", action="store_true", help="also time the two halves apart")
    args = parser.parse_args()

    payloads = all_payloads()
    floor: dict[str, list[float]] = {name: [] for name in payloads}
    ours: dict[str, list[float]] = {name: [] for name in payloads}
    for body in payloads.values():  # warm up: compiled regexes, allocator, CPU caches
        _per_call(json.loads, body, 50)
        _per_call(normalize, body, 50)
    for _ in range(args.rounds):
        for name, body in payloads.items():
            floor[name].append(_per_call(json.loads, body, args.loops))
            ours[name].append(_per_call(normalize, body, args.loops))

    ratios: list[float] = []
    print(f"{'sample':44} {'bytes':>6} {'json.loads':>11} {'normalize':>11} {'ratio':>6}")
    for name, body in payloads.items():
        f = statistics.median(floor[name])
        o = statistics.median(ours[name])
        ratios.append(o / f)
        print(f"{name:44} {len(body):6d} {f * 1e6:9.2f}us {o * 1e6:9.2f}us {o / f:6.2f}")
    average = statistics.fmean(ratios)
    verdict = "PASS" if average <= args.target else "FAIL"
    print(
        f"\naverage ratio {average:.2f} (max {max(ratios):.2f}) over {len(ratios)} samples, "
        f"target <= {args.target:.2f}: {verdict}"
    )
    if args.split:
        _split(payloads, args.rounds, args.loops)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
