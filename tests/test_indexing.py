"""The Python worker's own indexer accepts function_app.py and finds what we expect.

`azure-functions-runtime` is the worker library the Functions host runs; its loader
checks things the SDK decorators accept silently (parameters that match no binding,
wrong annotations, return bindings). It receives the host's gRPC message classes as
`protos`; we pass plain records with the same field names and enum values as
FunctionRpc.proto (BindingInfo.Direction in=0/out=1/inout=2, DataType
undefined=0/string=1/binary=2/stream=3), so every decision is the worker's own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure_functions_runtime import functions as worker_functions
from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta

REPO = Path(__file__).resolve().parent.parent


class _Record:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _BindingInfo(_Record):
    in_, out, inout = 0, 1, 2
    undefined, string, binary, stream = 0, 1, 2, 3


PROTOS = SimpleNamespace(
    BindingInfo=_BindingInfo,
    RpcRetryOptions=_Record,
    RpcFunctionMetadata=_Record,
)


@pytest.fixture(scope="module")
def indexed() -> list[Any]:
    meta.load_binding_registry()
    sys.path.insert(0, str(REPO))
    # The indexer imports function_app itself; give it a fresh module so that its
    # get_functions() (allowed once per app) leaves the tests' own app untouched.
    ours = sys.modules.pop("function_app", None)
    try:
        functions = loader.index_function_app(str(REPO / "function_app.py"))
        metadata, _binding_logs = loader.process_indexed_function(
            PROTOS, worker_functions.Registry(), functions, str(REPO)
        )
        return list(metadata)
    finally:
        sys.path.remove(str(REPO))
        sys.modules.pop("function_app", None)
        if ours is not None:
            sys.modules["function_app"] = ours


def _bindings(metadata: Any) -> dict[str, dict[str, Any]]:
    raw = [json.loads(b) for b in metadata.raw_bindings]
    return {b["name"]: b for b in raw}


def test_worker_indexes_exactly_our_functions(indexed: list[Any]) -> None:
    names = sorted(m.name for m in indexed)
    assert names == sorted(
        [
            "process_alert",
            "receive_alert",
            "sync_alert_state",
            "repair_alert_sync",
            "purge_expired",
            *WORK_ITEM_API,
            *BOARD,
        ]
    )
    assert all(m.language == "python" for m in indexed)


# The work item API (shared/api): function name -> (route, method). Anonymous at the
# platform level like receive_alert: shared/auth.py verifies the Entra token. host.json's
# routePrefix is empty (the board answers at /), so each API route names its api/.
WORK_ITEM_API = {
    "list_workitems": ("api/workitems", "GET"),
    "get_workitem": ("api/workitems/{id}", "GET"),
    "workitem_history": ("api/workitems/{id}/history", "GET"),
    "event_payload": ("api/workitems/{id}/events/{eventId}/payload", "GET"),
    "update_workitem": ("api/workitems/{id}", "PATCH"),
    "search_cis": ("api/cis", "GET"),
    "get_ci": ("api/cis/{id}", "GET"),
    "openapi": ("api/openapi.json", "GET"),
}

# The web board (shared/board.py): public files, its redirect at / and its sign-in settings.
BOARD = {
    "board_home": ("{ignored:maxlength(0)?}", "GET"),
    "board_assets": ("board/{*path}", "GET"),
    "board_config": ("api/board-config", "GET"),
}


@pytest.mark.parametrize("name", sorted(BOARD))
def test_board_routes(indexed: list[Any], name: str) -> None:
    metadata = next(m for m in indexed if m.name == name)
    trigger = _bindings(metadata)["req"]
    route, method = BOARD[name]
    assert (trigger["type"], trigger["route"], trigger["methods"]) == (
        "httpTrigger",
        route,
        [method],
    )
    assert trigger["authLevel"].upper() == "ANONYMOUS"


@pytest.mark.parametrize("name", sorted(WORK_ITEM_API))
def test_work_item_api_routes(indexed: list[Any], name: str) -> None:
    metadata = next(m for m in indexed if m.name == name)
    bindings = _bindings(metadata)
    assert set(bindings) == {"req", "$return"}
    trigger = bindings["req"]
    route, method = WORK_ITEM_API[name]
    assert (trigger["type"], trigger["route"], trigger["methods"]) == (
        "httpTrigger",
        route,
        [method],
    )
    assert trigger["authLevel"].upper() == "ANONYMOUS"
    assert not trigger["route"].startswith("api/alerts"), "must not clash with the ingest route"


def test_retention_runs_daily_on_a_timer(indexed: list[Any]) -> None:
    metadata = next(m for m in indexed if m.name == "purge_expired")
    trigger = _bindings(metadata)["timer"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "0 30 2 * * *"
    assert not trigger.get("runOnStartup")


def test_the_alert_sync_outbox_is_repaired_every_two_minutes(indexed: list[Any]) -> None:
    metadata = next(m for m in indexed if m.name == "repair_alert_sync")
    trigger = _bindings(metadata)["timer"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "0 */2 * * * *"
    assert not trigger.get("runOnStartup")


def test_receive_alert_is_anonymous_post_on_alerts(indexed: list[Any]) -> None:
    metadata = next(m for m in indexed if m.name == "receive_alert")
    bindings = _bindings(metadata)
    assert set(bindings) == {"req", "$return"}
    trigger = bindings["req"]
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == "api/alerts"
    assert trigger["methods"] == ["POST"]
    assert trigger["authLevel"].upper() == "ANONYMOUS"
    assert bindings["$return"]["type"] == "http"
    # No queue output binding: ingest writes the queue itself to be able to answer 503.
    assert not [b for b in bindings.values() if b["type"] == "queue"]


def test_process_alert_triggers_on_alerts_queue(indexed: list[Any]) -> None:
    metadata = next(m for m in indexed if m.name == "process_alert")
    bindings = _bindings(metadata)
    assert set(bindings) == {"msg"}
    assert bindings["msg"]["type"] == "queueTrigger"
    assert bindings["msg"]["queueName"] == "alerts"
    assert bindings["msg"]["connection"] == "AzureWebJobsStorage"
    assert metadata.bindings["msg"].direction == _BindingInfo.in_


def test_sync_alert_state_triggers_on_the_alert_sync_queue(indexed: list[Any]) -> None:
    metadata = next(m for m in indexed if m.name == "sync_alert_state")
    bindings = _bindings(metadata)
    assert set(bindings) == {"msg"}
    assert bindings["msg"]["type"] == "queueTrigger"
    assert bindings["msg"]["queueName"] == "alert-state-sync"
    assert bindings["msg"]["connection"] == "AzureWebJobsStorage"


def test_indexer_rejects_a_binding_without_parameter(tmp_path: Path) -> None:
    """The check is real: a mistake the SDK accepts makes the worker's indexer fail."""
    broken = tmp_path / "broken_app.py"
    broken.write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.queue_trigger(arg_name='msg', queue_name='q', connection='AzureWebJobsStorage')\n"
        "@app.queue_output(arg_name='out', queue_name='o', connection='AzureWebJobsStorage')\n"
        "def f(msg: func.QueueMessage) -> None:\n"
        "    pass\n"
    )
    meta.load_binding_registry()
    sys.path.insert(0, str(tmp_path))
    try:
        functions = loader.index_function_app(str(broken))
        with pytest.raises(Exception, match="out"):
            loader.process_indexed_function(
                PROTOS, worker_functions.Registry(), functions, str(tmp_path)
            )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("broken_app", None)
