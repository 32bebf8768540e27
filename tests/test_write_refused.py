"""A write Table Storage refuses for good fails loudly, never silently (issue 13, "Fail
loudly"): every attempt logs the alert, the work item and the reason, the host moves the
message to `alerts-poison`, and scripts/replay_poison.py replays it once the cause is fixed
(docs/data-model.md, "Limits")."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from shared import table_keys, workitem_rows
from shared.alert_events import event_from_alert
from tests import alert_factory as af
from tests.fault_injection import poison_length, queue_length
from tests.harness import REPO
from tests.workitem_fixtures import WorkItemEnv


def replay_poison(connection_string: str) -> str:
    """scripts/replay_poison.py as an operator runs it."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "replay_poison.py")],
        env={**os.environ, "AzureWebJobsStorage": connection_string},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_write_table_storage_refuses_is_logged_poisoned_and_replayed_once_fixed(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A limit we missed, as a bug would miss it: descriptions kept up to 64 Ki characters,
    # where a string property holds 32 Ki UTF-16 units. Azurite then refuses the history
    # entry and the item (400 PropertyValueTooLarge) on every attempt, as Table Storage does.
    fixed_limit = workitem_rows.TEXT_LIMIT
    monkeypatch.setattr(workitem_rows, "TEXT_LIMIT", 64 * 1024)
    refused = af.fired("too-long", 0, description="d" * 40_000)
    fine = af.fired("fine", 1)
    item_id = table_keys.base_item_id(event_from_alert(refused, "alert").group.hash)
    workitem_env.enqueue([refused, fine])

    with caplog.at_level(logging.ERROR):
        first = workitem_env.run_queue()
    assert (first.succeeded, first.poisoned, first.failed_attempts) == (1, 1, 5), first.errors
    assert poison_length(workitem_env.connection_string) == 1
    assert queue_length(workitem_env.connection_string) == 0
    lines = [r.getMessage() for r in caplog.records if "cannot be stored" in r.getMessage()]
    assert len(lines) == 5  # one per attempt, each saying everything
    for line in lines:
        assert af.alert_id("too-long") in line
        assert f"work item {item_id}" in line
        assert "Table Storage answered 400 PropertyValueTooLarge" in line
        assert "alerts-poison" in line
        assert "replay_poison.py" in line
    assert [i["id"] for i in workitem_env.items()] == [
        table_keys.base_item_id(event_from_alert(fine, "alert").group.hash)
    ]  # nothing of the refused alert is half written

    # The fix is deployed (the limit is back); the operator replays the poison queue.
    monkeypatch.setattr(workitem_rows, "TEXT_LIMIT", fixed_limit)
    assert "Moved 1 of 1 message(s)" in replay_poison(workitem_env.connection_string)
    second = workitem_env.run_queue()
    assert (second.succeeded, second.poisoned, second.failed_attempts) == (1, 0, 0)
    assert poison_length(workitem_env.connection_string) == 0
    item = next(i for i in workitem_env.items() if i["id"] == item_id)
    assert item["state"] == "New"
    assert str(item["description"]).startswith("d" * 1000)
    assert len(str(item["description"])) < 9 * 1024  # cut at the limit, with its marker
    (entry,) = workitem_env.history(item_id)
    assert entry["effect"] == "created"
