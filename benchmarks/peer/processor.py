"""The host's queue listener for process_alert, as a long-running process of its own.

    OURS_APP_DIR=<copy of the checkout> AzureWebJobsStorage=... python processor.py STATUS_FILE

Reuses the project's own host stand-in (tests/harness.py, imported from the checkout copy):
it reads process_alert's queue trigger from function_app.app and batchSize,
newBatchThreshold, visibilityTimeout, maxDequeueCount and messageEncoding from host.json,
leases batches, runs up to batchSize + newBatchThreshold messages at once, deletes on
success, retries after visibilityTimeout, poisons after maxDequeueCount.
`FunctionsHost.run_queue` returns when the queue is empty and nothing is in flight; between
runs this loop polls like the host's listener: at once after work, then backing off
exponentially from 100 ms to host.json's maxPollingInterval while the queue stays empty.

The host's own queue calls (receive, delete, visibility updates, the emptiness check) are
metered apart: in Azure the Functions host (.NET) makes them, not our Python. Each call is
timed with the calling thread's CPU clock (`time.thread_time`), which counts only that
thread's work, so the function's table calls running on other threads at the same time are
not in it. After every run the cumulative counts and that CPU go to STATUS_FILE (JSON), so
the load driver knows when everything it sent is processed without asking storage.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

APP = Path(os.environ["OURS_APP_DIR"])
sys.path.insert(0, str(APP))

from azure.storage.queue import QueueClient  # noqa: E402

import function_app  # noqa: E402
from tests.harness import FunctionsHost, _timespan_seconds  # noqa: E402

logging.basicConfig(level=logging.WARNING)
# The harness's clients pool 10 connections for 24 threads; urllib3 warns about it per request.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

_lock = threading.Lock()
host_queue_cpu = {"seconds": 0.0, "calls": 0}


def _metered(call: Any) -> Any:
    """`call` with its thread's CPU time added to host_queue_cpu (a list() of a pager is
    taken inside, so a receive's paging counts too)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.thread_time()
        try:
            result = call(*args, **kwargs)
            return list(result) if call.__name__ == "receive_messages" else result
        finally:
            spent = time.thread_time() - t0
            with _lock:
                host_queue_cpu["seconds"] += spent
                host_queue_cpu["calls"] += 1

    return run


class HostQueueClient(QueueClient):
    """The host's queue client: the SDK's own, its calls metered (see the module doc)."""

    receive_messages = _metered(QueueClient.receive_messages)  # type: ignore[assignment]
    delete_message = _metered(QueueClient.delete_message)  # type: ignore[assignment]
    update_message = _metered(QueueClient.update_message)  # type: ignore[assignment]
    get_queue_properties = _metered(QueueClient.get_queue_properties)  # type: ignore[assignment]
    send_message = _metered(QueueClient.send_message)  # type: ignore[assignment]


class MeteredHost(FunctionsHost):
    def queue_client(self, name: str) -> QueueClient:
        return HostQueueClient.from_connection_string(self.connection_string, name)


def main() -> int:
    status_file = Path(sys.argv[1])
    host = MeteredHost(
        function_app.app,
        os.environ["AzureWebJobsStorage"],  # noqa: SIM112  the host's name, host_json=APP / "host.json"
    )
    queue = os.environ.get("OURS_QUEUE", "alerts")
    queues = host.host_config["extensions"]["queues"]
    max_poll = _timespan_seconds(queues.get("maxPollingInterval", "00:01:00"))
    totals: dict[str, Any] = {
        "runs": 0,
        "succeeded": 0,
        "failed_attempts": 0,
        "poisoned": 0,
        "errors": [],
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    delay = 0.1
    while True:
        stats = host.run_queue(queue, timeout=3600)
        totals["runs"] += 1
        totals["succeeded"] += stats.succeeded
        totals["failed_attempts"] += stats.failed_attempts
        totals["poisoned"] += stats.poisoned
        totals["errors"] = (totals["errors"] + stats.errors)[-20:]
        with _lock:
            totals["host_queue_cpu_s"] = host_queue_cpu["seconds"]
            totals["host_queue_calls"] = host_queue_cpu["calls"]
        totals["updated"] = time.time()
        tmp = status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(totals))
        tmp.replace(status_file)
        delay = 0.1 if stats.succeeded or stats.failed_attempts else min(delay * 2, max_poll)
        time.sleep(delay)


if __name__ == "__main__":
    sys.exit(main())
