"""Nothing accepted is lost: storage down, storage restarted mid-storm, transient storage
faults, poison messages and their replay, a queue function dying after its writes, a burst.

Every scenario ends the same way: the work item tables are compared, ignoring write times
and which copy of an event came first (tests/workitem_fixtures.py), with the tables left by
each distinct event processed once, in event-time order, straight through the processor
(`reference`). Alerts are delivered as an action group delivers them: POSTed with a valid
token, and retried only on 408/429/503/504, a bounded number of times
(tests/fault_injection.py, `deliver`).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

import function_app
from benchmarks.bench_burst import run_burst
from shared import alert_queue, processor, store
from tests import alert_factory as af
from tests.azurite import Azurite
from tests.fault_injection import (
    AZURE_MONITOR_DELAYS,
    KINDS,
    Delivery,
    FaultPlan,
    FaultServer,
    Storm,
    clear_client_caches,
    deliver_all,
    doomed,
    inject_faults,
    poison_length,
    queue_length,
    reference_snapshot,
    request_body,
    storm,
)
from tests.harness import REPO, FunctionsHost
from tests.tokens import TENANT_A
from tests.workitem_fixtures import Snapshot, diff_snapshots, snapshot

# Sizes. The restart storm is the slow one: 110-130 s on 2 busy cores, half of it its
# reference (every event once, sequentially); lower it here if CI needs the time.
STORM_DELIVERIES = 2000  # POSTs in the storm during which Azurite restarts
OUTAGE_DELIVERIES = 90  # a third before, during and after the outage
FAULT_DELIVERIES = 240
FAULT_RATE = 0.2  # share of storage requests (each SDK attempt) that fail
DOOM_ONE_IN = 8  # about 1 message in 8 meets storage failing on every attempt: poisoned
CRASH_DELIVERIES = 150
BURST_DELIVERIES = 300  # benchmarks/bench_burst.py runs 10,000
BURST_RSS_GROWTH_MIB = 150

# Azure Monitor waits 5, 20, 5, 40, 5 s between its retries; a quarter of that here.
SCALED_RETRY_DELAYS = tuple(d / 4 for d in AZURE_MONITOR_DELAYS)
QUICK_RETRY_DELAYS = (0.05, 0.1, 0.05, 0.2, 0.05)

_references: dict[tuple[int, int], Snapshot] = {}


def reference(connection_string: str, burst: Storm, seed: int) -> Snapshot:
    """The expected tables for a storm (computed once per storm and session)."""
    key = (len(burst.deliveries), seed)
    if key not in _references:
        _references[key] = reference_snapshot(connection_string, burst.events, TENANT_A)
    return _references[key]


def fresh_host(connection_string: str) -> FunctionsHost:
    return FunctionsHost(function_app.app, connection_string)


def assert_delivered(deliveries: list[Delivery]) -> None:
    """Every POST ended 202; on the way, only 503 (never 500, never another 5xx or 4xx)."""
    seen = Counter(s for d in deliveries for s in d.statuses)
    assert set(seen) <= {202, 503}, seen
    refused = [d.statuses for d in deliveries if not d.accepted]
    assert not refused, f"{len(refused)} deliveries never accepted: {refused[:5]}"


def assert_same_tables(expected: Snapshot, connection_string: str) -> None:
    difference = diff_snapshots(expected, snapshot(connection_string))
    assert difference == "", difference[:3000]


@pytest.fixture
def persistent_azurite(
    storage: str, auth_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Azurite]:
    """An Azurite of this test's own, on disk (survives restarts); the app points at it.

    The session Azurite (`storage`) stays available for the reference tables.
    """
    server = Azurite(persistent=True)
    server.start()
    monkeypatch.setenv("AzureWebJobsStorage", server.connection_string)
    clear_client_caches()
    yield server
    clear_client_caches()
    server.close()


# --------------------------------------------------------------------------- storage down


def test_storage_down_ingest_answers_503_and_every_accepted_alert_is_processed(
    persistent_azurite: Azurite, storage: str, authorization: str
) -> None:
    burst = storm(OUTAGE_DELIVERIES, seed=11)
    expected = reference(storage, burst, 11)
    conn = persistent_azurite.connection_string
    host = fresh_host(conn)
    third = len(burst.deliveries) // 3
    before, during, after = (
        burst.deliveries[:third],
        burst.deliveries[third : 2 * third],
        burst.deliveries[2 * third :],
    )

    assert_delivered(deliver_all(host, authorization, before, delays=()))
    persistent_azurite.stop()
    down = deliver_all(host, authorization, during, delays=(), workers=8)  # one attempt each
    for delivery in down:
        assert delivery.statuses == [503], delivery.statuses
        assert delivery.answer is not None
        assert delivery.answer["error"] == "service_unavailable"
        assert delivery.headers.get("Retry-After") == "10"
    slowest = max(s for d in down for s in d.seconds)
    assert slowest < 8, f"a 503 took {slowest:.1f} s: Azure Monitor gives up after about 10 s"

    persistent_azurite.start()
    # Azure Monitor retries the 503s; new alerts keep coming.
    retried = deliver_all(host, authorization, during, delays=SCALED_RETRY_DELAYS)
    rest = deliver_all(host, authorization, after, delays=())
    assert_delivered(retried + rest)
    accepted = len(before) + len(retried) + len(rest)
    # Every 2xx is a queued message, and nothing was queued without one.
    assert queue_length(conn) == accepted

    stats = host.run_queue("alerts", visibility_timeout=0)
    assert (stats.succeeded, stats.failed_attempts, stats.poisoned) == (accepted, 0, 0)
    assert_same_tables(expected, conn)
    print(f"\noutage: {len(down)} POSTs answered 503 (slowest {slowest:.2f} s), all accepted later")


# --------------------------------------------------------------------------- restart


@pytest.mark.slow
def test_azurite_restart_in_the_middle_of_a_storm_loses_nothing(
    persistent_azurite: Azurite, storage: str, authorization: str
) -> None:
    burst = storm(STORM_DELIVERIES, seed=5)
    expected = reference(storage, burst, 5)
    conn = persistent_azurite.connection_string
    host = fresh_host(conn)
    cut = len(burst.deliveries) // 4

    # A quarter of the storm is in the tables before the restart...
    first = deliver_all(host, authorization, burst.deliveries[:cut], delays=())
    assert_delivered(first)
    assert host.run_queue("alerts", visibility_timeout=0, timeout=600).poisoned == 0
    written = set(snapshot(conn))

    # ...then Azurite restarts (on disk) while the rest arrives.
    answered = itertools.count(1)
    trigger = (len(burst.deliveries) - cut) // 3
    restarted = threading.Event()

    def restart() -> None:
        persistent_azurite.stop()
        time.sleep(0.5)
        persistent_azurite.start()
        restarted.set()

    restarter = threading.Thread(target=restart)

    def on_answer(_: Delivery) -> None:
        if next(answered) == trigger:
            restarter.start()

    storm_start = time.perf_counter()
    second = deliver_all(
        host,
        authorization,
        burst.deliveries[cut:],
        delays=SCALED_RETRY_DELAYS,
        on_answer=on_answer,
    )
    restarter.join(timeout=120)
    assert restarted.is_set()
    ingest_seconds = time.perf_counter() - storm_start
    assert_delivered(second)
    hit = sum(1 for d in second if 503 in d.statuses)
    assert hit, "the restart happened after the storm: nothing was refused"
    # Each 2xx queued its message (a request cut by the restart may have queued a copy too).
    assert queue_length(conn) >= len(second)

    stats = host.run_queue("alerts", visibility_timeout=0, timeout=600)
    assert stats.poisoned == 0, stats.errors[:5]
    final = snapshot(conn)
    assert written <= set(final), "rows written before the restart are gone"
    assert_same_tables(expected, conn)
    items = [k for k in final if k[0] == "workitems" and k[2].startswith("i|")]
    assert len(items) == burst.alerts
    print(
        f"\nrestart storm: {len(burst.deliveries)} POSTs ({burst.alerts} alerts), "
        f"{hit} refused with 503 during the restart and retried, ingest {ingest_seconds:.1f} s, "
        f"{stats.succeeded} messages processed after recovery"
    )


# --------------------------------------------------------------------------- transient faults


def _replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/replay_poison.py as an operator runs it, with `env` as its environment."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "replay_poison.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _run_replay(connection_string: str, *args: str) -> str:
    done = _replay({**os.environ, "AzureWebJobsStorage": connection_string}, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_transient_storage_faults_lose_nothing_and_poison_messages_replay(
    host: FunctionsHost, storage: str, authorization: str
) -> None:
    burst = storm(FAULT_DELIVERIES, seed=7)
    expected = reference(storage, burst, 7)
    plan = FaultPlan(rate=FAULT_RATE, seed=7)
    doomed_ids: set[str] = set()

    def doom_some(message: Any) -> None:
        fate = doomed(message.get_body(), DOOM_ONE_IN)
        if fate:
            doomed_ids.add(message.id)
        plan.doom(fate)

    with FaultServer() as server, inject_faults(plan, server):
        deliveries = deliver_all(host, authorization, burst.deliveries, delays=QUICK_RETRY_DELAYS)
        assert_delivered(deliveries)
        ingest_faults = plan.injected
        retried = sum(1 for d in deliveries if len(d.statuses) > 1)

        first = host.run_queue("alerts", visibility_timeout=0, on_message=doom_some)
        assert doomed_ids, "no message was doomed: raise FAULT_DELIVERIES"
        assert first.poisoned >= len(doomed_ids)
        assert poison_length(storage) == first.poisoned
        assert queue_length(storage) == 0

        dry = _run_replay(storage, "--dry-run")
        assert f"alerts-poison: {first.poisoned} message(s); dry run" in dry
        assert poison_length(storage) == first.poisoned
        assert queue_length(storage) == 0
        moved = _run_replay(storage)
        assert f"Moved {first.poisoned} of {first.poisoned} message(s)" in moved
        assert poison_length(storage) == 0
        assert queue_length(storage) == first.poisoned

        # Faults still on at half the rate, nothing doomed: the replayed messages go through.
        # At the full rate about a third of attempts fail (a message makes ~10 requests, each
        # with one SDK retry), so 5 failures in a row among ~30 messages is a 1-in-10 event;
        # at half the rate it is about 1 in 30,000.
        plan.rate = FAULT_RATE / 2
        second = host.run_queue(
            "alerts", visibility_timeout=0, on_message=lambda _message: plan.doom(False)
        )
        assert second.poisoned == 0, second.errors[:5]
        assert second.succeeded == first.poisoned

    assert all(plan.counts[kind] for kind in KINDS), plan.counts
    assert_same_tables(expected, storage)
    print(
        f"\nfaults: {plan.injected} injected ({dict(plan.counts)}) into "
        f"{sum(plan.requests.values())} storage requests, {ingest_faults} of them during "
        f"ingest ({retried} POSTs retried after a 503); {first.failed_attempts} failed "
        f"attempts, {first.poisoned} poisoned, all replayed"
    )


def test_replay_poison_moves_at_most_max_messages_unchanged(storage: str, tmp_path: Path) -> None:
    poison = QueueClient.from_connection_string(storage, "alerts-poison")
    poison.create_queue()
    texts = ['{"alert": {"alertId": "a1", "monitorCondition": "Fired"}}', "bm90IGpzb24=", "x < y"]
    for text in texts:
        poison.send_message(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")}

    missing = _replay(env)
    assert missing.returncode == 1
    assert "AzureWebJobsStorage" in missing.stderr

    two = _replay({**env, "AzureWebJobsStorage": storage}, "--max", "2")
    assert two.returncode == 0, two.stderr
    assert "Moved 2 of 2 message(s)" in two.stdout
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"AzureWebJobsStorage": storage}})
    )
    rest = _replay(env, "--settings", str(settings))
    assert rest.returncode == 0, rest.stderr
    assert "Moved 1 of 1 message(s)" in rest.stdout

    moved = QueueClient.from_connection_string(storage, "alerts").receive_messages(max_messages=10)
    assert sorted(m.content for m in moved) == sorted(texts)  # byte for byte
    assert poison_length(storage) == 0


# --------------------------------------------------------------------------- crash


class SimulatedCrash(Exception):
    """The instance died after its table writes, before the host deleted the message."""


def test_crash_after_the_writes_before_the_delete_leaves_the_same_tables(
    host: FunctionsHost, storage: str, authorization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    burst = storm(CRASH_DELIVERIES, seed=3)
    expected = reference(storage, burst, 3)
    assert_delivered(deliver_all(host, authorization, burst.deliveries, delays=()))

    real_handle, real_apply = processor.handle, store.WorkItemStore.apply
    crashed: set[str] = set()
    outcomes: dict[tuple[str, int], str] = {}
    lock = threading.Lock()
    current = threading.local()

    def apply(self: store.WorkItemStore, *args: Any, **kwargs: Any) -> store.ApplyResult:
        result = real_apply(self, *args, **kwargs)
        with lock:
            outcomes[current.attempt] = result.outcome
        return result

    def handle_then_crash(text: str, dequeue_count: int, message_id: str | None) -> None:
        assert message_id is not None
        current.attempt = (message_id, dequeue_count)
        real_handle(text, dequeue_count, message_id)  # every table write done
        with lock:
            first = message_id not in crashed
            crashed.add(message_id)
        if first:
            raise SimulatedCrash(f"message {message_id}: died before the delete")

    monkeypatch.setattr(store.WorkItemStore, "apply", apply)
    monkeypatch.setattr(processor, "handle", handle_then_crash)
    stats = host.run_queue("alerts", visibility_timeout=0)

    messages = len(burst.deliveries)
    assert (stats.succeeded, stats.failed_attempts, stats.poisoned) == (messages, messages, 0)
    second = {k: v for k, v in outcomes.items() if k[1] == 2}
    assert len(second) == messages
    assert set(second.values()) == {"duplicate"}  # the redelivery found its event applied
    assert_same_tables(expected, storage)


# --------------------------------------------------------------------------- throttling


def test_a_throttled_group_transaction_is_a_transient_storage_error(
    app_env: dict[str, str], storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Table Storage answers 503 ServerBusy when it throttles: the processor must raise that
    storage error for the host to retry, not take it for rows that disagree with the root
    (a repair, three times the requests, then StoreInconsistent)."""

    def group_transactions(service: str, request: Any) -> bool:
        return (
            service == "table"
            and request.method == "POST"
            and request.url.endswith("$batch")
            and b"/workitems" in request_body(request)
        )

    plan = FaultPlan(rate=1.0, kinds={"503": 1.0}, select=group_transactions)
    text = alert_queue.encode(af.fired("throttled", 0, cis=(af.VM, f"{af.VM}-2")), {})
    with FaultServer() as server, inject_faults(plan, server), pytest.raises(AzureError) as raised:
        processor.handle(text, 1, "m-1")
    assert not isinstance(raised.value, store.StoreInconsistent)
    assert "disagree with its root" not in caplog.text
    assert plan.counts["503"] == 3  # one request and the SDK's two retries


# --------------------------------------------------------------------------- burst


def test_a_burst_through_http_queue_and_tables_loses_nothing(
    host: FunctionsHost, storage: str, authorization: str
) -> None:
    result = run_burst(host, storage, authorization, BURST_DELIVERIES)
    assert result.problems == []
    assert result.peak_rss_mib - result.start_rss_mib < BURST_RSS_GROWTH_MIB
    print("\n" + result.report())
