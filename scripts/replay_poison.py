"""Move messages from `alerts-poison` back to `alerts`, so that the queue function retries them.

    .venv/bin/python scripts/replay_poison.py --dry-run      # how many, and which alerts
    .venv/bin/python scripts/replay_poison.py                # move them all
    .venv/bin/python scripts/replay_poison.py --max 10       # move at most 10

The Functions host moves a message to `alerts-poison` after `maxDequeueCount` (5) failed
attempts. Fix the cause first (the `process_alert` error log names the alert and the
reason), then replay: processing is idempotent per event, so a message that was partly
applied before it failed, or that is replayed twice, leaves the same tables.

Storage comes from the app's own settings, read the way the app reads them
(`shared/config.py`, `shared/storage.py`): the connection string `AzureWebJobsStorage`, or
the identity-based `AzureWebJobsStorage__accountName` / `__queueServiceUri` with
`__credential` and `__clientId` (from your machine, `az login` is enough: the credential is
`DefaultAzureCredential`, and you need Storage Queue Data Contributor on the account).
`--settings local.settings.json` reads the `Values` of a Core Tools settings file instead
of the environment.

Messages are copied as they are (same text, so the same `messageEncoding`), each one sent
to `alerts` before it is deleted from `alerts-poison`: an interruption can leave a copy in
both queues, never in neither. Only the messages present when the run starts are moved
(at most `--max`), so a message that fails again meanwhile is not replayed in a loop.
Exit status: 0 when every message meant to move was moved, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.queue import QueueClient

from shared import storage
from shared.config import (
    ALERTS_QUEUE,
    POISON_QUEUE,
    ConfigError,
    StorageSettings,
)
from shared.config import storage_settings as _storage

BATCH = 32  # the most a queue hands out per receive
LEASE_SECONDS = 300  # how long a received message stays hidden from other readers


def storage_settings(values: Mapping[str, str]) -> StorageSettings:
    """The app's storage settings from environment-like values (ConfigError if missing)."""
    return _storage(values)


def read_settings_file(path: Path) -> dict[str, str]:
    """The `Values` of a Core Tools local.settings.json."""
    data = json.loads(path.read_text(encoding="utf-8"))
    values = data.get("Values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f"{path} has no 'Values' object")
    return {str(k): str(v) for k, v in values.items()}


def describe(content: str) -> str:
    """A short line about a message: its alert id and condition, or why they are unknown."""
    message: Any = None
    for text in (content, _unbase64(content)):
        if text is None:
            continue
        try:
            message = json.loads(text)
            break
        except ValueError:
            continue
    if not isinstance(message, dict):
        return f"not JSON ({len(content)} characters)"
    inner = message.get("alert")
    alert: dict[str, Any] = inner if isinstance(inner, dict) else message
    alert_id = alert.get("alertId", "<no alertId>")
    condition = alert.get("monitorCondition") or ""
    how = "claim check" if "claimCheck" in message else "inline"
    return f"{str(alert_id)[:200]} {condition} ({how}, {len(content)} characters)".strip()


def _unbase64(content: str) -> str | None:
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def count(queue: QueueClient) -> int:
    try:
        return int(queue.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


def dry_run(poison: QueueClient, waiting: int) -> int:
    print(f"{POISON_QUEUE}: {waiting} message(s); dry run, nothing moved.")
    if waiting:
        shown = list(poison.peek_messages(max_messages=BATCH))
        print(f"The first {len(shown)}:")
        for message in shown:
            print(f"  {message.id}  dequeued {message.dequeue_count}x  {describe(message.content)}")
    return 0


def send(queue: QueueClient, content: str) -> None:
    try:
        queue.send_message(content)
    except ResourceNotFoundError:  # a fresh account (Azurite): the app creates it the same way
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        queue.send_message(content)


def replay(poison: QueueClient, alerts: QueueClient, limit: int) -> int:
    """Move up to `limit` messages; returns how many moved."""
    moved = 0
    while moved < limit:
        size = min(BATCH, limit - moved)
        batch = list(
            poison.receive_messages(
                messages_per_page=size, max_messages=size, visibility_timeout=LEASE_SECONDS
            )
        )
        if not batch:
            break
        for message in batch:
            send(alerts, message.content)
            poison.delete_message(message)
            moved += 1
            print(f"  moved {message.id}  {describe(message.content)}")
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Move messages from alerts-poison back to alerts (see the module docstring)."
    )
    parser.add_argument("--dry-run", action="store_true", help="count and list, move nothing")
    parser.add_argument("--max", type=int, default=None, help="move at most this many messages")
    parser.add_argument("--settings", type=Path, help="read settings from this local.settings.json")
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")

    try:
        values = read_settings_file(args.settings) if args.settings else dict(os.environ)
        settings = storage_settings(values)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    poison = storage.queue_client(settings, POISON_QUEUE)
    alerts = storage.queue_client(settings, ALERTS_QUEUE)
    try:
        waiting = count(poison)
        if args.dry_run:
            return dry_run(poison, waiting)
        limit = waiting if args.max is None else min(waiting, args.max)
        print(f"{POISON_QUEUE}: {waiting} message(s); moving {limit} to {ALERTS_QUEUE}.")
        moved = replay(poison, alerts, limit) if limit else 0
    except AzureError as exc:
        print(f"error: storage: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"Moved {moved} of {limit} message(s) from {POISON_QUEUE} to {ALERTS_QUEUE}.")
    return 0 if moved == limit else 1


if __name__ == "__main__":
    sys.exit(main())
