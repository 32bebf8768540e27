"""The queue trigger end to end through the host harness: poison, claim checks, crashes."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared import alert_queue, store
from shared.config import ALERTS_QUEUE, POISON_QUEUE, get_settings
from shared.workitems import NEW, STATE_RESOLVED
from tests import alert_factory as af
from tests.alert_factory import fired, resolved
from tests.workitem_fixtures import WorkItemEnv, diff_snapshots


def poison_messages(env: WorkItemEnv) -> list[str]:
    client = QueueClient.from_connection_string(env.connection_string, POISON_QUEUE)
    return [m.content for m in client.peek_messages(max_messages=32)]


def send_raw(env: WorkItemEnv, text: str) -> None:
    client = QueueClient.from_connection_string(env.connection_string, ALERTS_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(text)


def test_fired_and_resolved_through_the_queue(workitem_env: WorkItemEnv) -> None:
    workitem_env.enqueue([fired("a", 0), resolved("a", 0, 9), fired("b", 1)])
    stats = workitem_env.run_queue()
    assert (stats.succeeded, stats.failed_attempts, stats.poisoned) == (3, 0, 0)
    assert sorted(i["state"] for i in workitem_env.items()) == [NEW, STATE_RESOLVED]


def test_an_unknown_major_version_ends_in_poison_with_a_log_line(
    workitem_env: WorkItemEnv, caplog: pytest.LogCaptureFixture
) -> None:
    alert = {**fired("v2", 0), "schemaVersion": "2.0"}
    workitem_env.enqueue([alert])
    with caplog.at_level(logging.ERROR, logger="shared.processor"):
        stats = workitem_env.run_queue()
    assert (stats.succeeded, stats.poisoned) == (0, 1)
    assert stats.failed_attempts == 5  # maxDequeueCount: tried, logged, then poisoned
    (message,) = poison_messages(workitem_env)
    assert json.loads(message)["alert"]["alertId"] == alert["alertId"]
    lines = [r.getMessage() for r in caplog.records if alert["alertId"] in r.getMessage()]
    assert len(lines) == 5
    assert all("major version 2" in line for line in lines)
    assert workitem_env.items() == []


def test_a_corrupt_claim_check_pointer_ends_in_poison(
    workitem_env: WorkItemEnv, caplog: pytest.LogCaptureFixture
) -> None:
    pointer = {
        "schemaVersion": "1.0",
        "alertId": af.alert_id("lost"),
        "correlationId": "c",
        "claimCheck": {
            "container": "alert-payloads",
            "blob": "2024/03/01/gone.json",
            "sha256": "0" * 64,
            "size": 10,
        },
    }
    send_raw(workitem_env, json.dumps(pointer))
    with caplog.at_level(logging.ERROR, logger="shared.processor"):
        stats = workitem_env.run_queue()
    assert stats.poisoned == 1
    assert stats.succeeded == 0
    assert any(
        af.alert_id("lost") in r.getMessage() and "does not exist" in r.getMessage()
        for r in caplog.records
    )


def test_a_big_alert_goes_through_a_claim_check_blob(workitem_env: WorkItemEnv) -> None:
    raw = {"data": {"alertContext": {"rows": ["x" * 1000] * 70}}}  # about 70 KiB
    workitem_env.enqueue([fired("big", 0)], raw=raw)
    client = QueueClient.from_connection_string(workitem_env.connection_string, ALERTS_QUEUE)
    (queued,) = client.peek_messages()
    pointer = json.loads(queued.content)["claimCheck"]
    stats = workitem_env.run_queue()
    assert stats.succeeded == 1
    (item,) = workitem_env.items()
    stored = workitem_env.store.get_item(item["id"])
    assert stored is not None
    assert stored["lastPayloadBlob"] == f"{pointer['container']}/{pointer['blob']}"
    assert stored["lastPayloadSha256"] == pointer["sha256"]


def test_the_same_message_twice_leaves_the_same_tables(workitem_env: WorkItemEnv) -> None:
    """A crash after the writes, before the host deleted the message: it comes again."""
    alerts = [fired("a", 0, cis=(af.VM, "db-01")), resolved("a", 0, 4, cis=(af.VM, "db-01"))]
    texts = [alert_queue.encode(a, {"n": n}) for n, a in enumerate(alerts)]
    for text in texts:
        send_raw(workitem_env, text)
    workitem_env.run_queue()
    once = workitem_env.snapshot()
    for text in texts:
        send_raw(workitem_env, text)
    stats = workitem_env.run_queue()
    assert stats.succeeded == 2
    assert diff_snapshots(once, workitem_env.snapshot()) == ""


@pytest.mark.parametrize("crash_at", ["before-commit", "after-commit"])
def test_a_crash_mid_message_is_retried_to_the_same_tables(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    workitem_env.configure(mode="rule")
    alerts = [fired("a", 0), fired("b", 2), resolved("a", 0, 5), resolved("b", 2, 7)]
    workitem_env.process(alerts)
    expected = workitem_env.snapshot()
    workitem_env.wipe()

    crashed: set[str] = set()
    name = "_write_group" if crash_at == "before-commit" else "apply"
    real = getattr(store.WorkItemStore, name)

    def crash_once(self: store.WorkItemStore, *args: Any) -> Any:
        key = repr(args[0])
        if crash_at == "after-commit":
            result = real(self, *args)
        if key not in crashed:
            crashed.add(key)
            raise OSError(f"worker died ({crash_at})")
        return result if crash_at == "after-commit" else real(self, *args)

    monkeypatch.setattr(store.WorkItemStore, name, crash_once)
    workitem_env.enqueue(alerts)
    stats = workitem_env.run_queue()
    assert stats.failed_attempts >= len(alerts)
    assert stats.succeeded == len(alerts)
    assert stats.poisoned == 0
    monkeypatch.setattr(store.WorkItemStore, name, real)
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""


def test_settings_come_from_the_environment(workitem_env: WorkItemEnv) -> None:
    workitem_env.configure(mode="rule", reopen=5, flap_threshold=2, flap_window=30)
    policy = workitem_env.store.policy
    assert (policy.correlation_mode, policy.reopen_window, policy.flap_threshold) == (
        "rule",
        5 * 60_000_000,
        2,
    )
    assert get_settings().flap_window_minutes == 30
