"""shared.table_batch sends what the SDK sends and answers as the SDK answers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import table_batch

STALE = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""


def _normalized(body: bytes) -> str:
    text = body.decode("utf-8")
    text = re.sub(r"(batch|changeset)_[0-9a-f-]{36}", r"\1_X", text)
    return re.sub(r"(x-ms-date|Date): [^\r]+", r"\1: D", text)


def _operations(pk: str) -> list[tuple[Any, ...]]:
    cond = {"etag": STALE, "match_condition": MatchConditions.IfNotModified}
    return [
        ("create", {"PartitionKey": pk, "RowKey": "a|1", "text": "ünï 🚀", "n": 5, "ok": True}),
        ("upsert", {"PartitionKey": pk, "RowKey": "b", "x": "y"}, {"mode": UpdateMode.REPLACE}),
        ("upsert", {"PartitionKey": pk, "RowKey": "c", "x": "y"}, {"mode": UpdateMode.MERGE}),
        ("update", {"PartitionKey": pk, "RowKey": "d", "x": 1}, {"mode": UpdateMode.MERGE, **cond}),
        (
            "update",
            {"PartitionKey": pk, "RowKey": "e", "x": 1},
            {"mode": UpdateMode.REPLACE, **cond},
        ),
        ("delete", {"PartitionKey": pk, "RowKey": "f"}, cond),
        ("delete", {"PartitionKey": pk, "RowKey": "g"}),
    ]


@pytest.fixture
def table(storage: str) -> TableClient:
    service = TableServiceClient.from_connection_string(storage)
    service.create_table("batches")
    return service.get_table_client("batches")


def _capture(storage: str, send: Callable[[TableClient], Any]) -> bytes:
    bodies: list[bytes] = []

    def hook(request: Any) -> None:
        if request.http_request.url.endswith("$batch"):
            bodies.append(request.http_request.content)

    client = TableServiceClient.from_connection_string(storage, raw_request_hook=hook)
    with contextlib.suppress(HttpResponseError):
        send(client.get_table_client("batches"))
    (body,) = bodies
    return body


def test_the_envelope_is_byte_for_byte_the_sdks(storage: str, table: TableClient) -> None:
    ops = _operations("p1")
    sdk = _capture(storage, lambda t: t.submit_transaction(ops))
    lean = _capture(storage, lambda t: table_batch.submit_transaction(t, ops))
    assert _normalized(lean) == _normalized(sdk)


def _outcome(send: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", len(send()))
    except HttpResponseError as exc:
        return (
            type(exc).__name__,
            exc.status_code,
            str(getattr(exc, "error_code", "")),
            getattr(exc, "index", None),
        )


@pytest.mark.parametrize(
    "case",
    ["success", "exists-at-1", "stale-etag-at-0", "merge-missing", "table-missing"],
)
def test_answers_and_errors_match_the_sdk(storage: str, table: TableClient, case: str) -> None:
    def ops(pk: str) -> list[tuple[Any, ...]]:
        if case == "success":
            return [
                ("create", {"PartitionKey": pk, "RowKey": "x"}),
                ("upsert", {"PartitionKey": pk, "RowKey": "y"}),
            ]
        if case == "exists-at-1":
            table.create_entity({"PartitionKey": pk, "RowKey": "y"})
            return [
                ("create", {"PartitionKey": pk, "RowKey": "x"}),
                ("create", {"PartitionKey": pk, "RowKey": "y"}),
            ]
        if case == "stale-etag-at-0":
            table.create_entity({"PartitionKey": pk, "RowKey": "x"})
            cond = {
                "mode": UpdateMode.MERGE,
                "etag": STALE,
                "match_condition": MatchConditions.IfNotModified,
            }
            return [
                ("update", {"PartitionKey": pk, "RowKey": "x", "v": 1}, cond),
                ("upsert", {"PartitionKey": pk, "RowKey": "y"}),
            ]
        return [
            ("update", {"PartitionKey": pk, "RowKey": "x", "v": 1}, {"mode": UpdateMode.MERGE}),
            ("upsert", {"PartitionKey": pk, "RowKey": "y"}),
        ]

    target = table
    if case == "table-missing":
        target = TableClient.from_connection_string(storage, "nosuchtable")
    sdk = _outcome(lambda: target.submit_transaction(ops("sdk")))
    lean = _outcome(lambda: table_batch.submit_transaction(target, ops("lean")))
    assert lean == sdk
    if case == "success":
        got = table_batch.submit_transaction(
            table,
            [
                ("upsert", {"PartitionKey": "e", "RowKey": "1"}),
                ("upsert", {"PartitionKey": "e", "RowKey": "2"}),
            ],
        )
        assert [m["etag"] for m in got] == [table.get_entity("e", r).metadata["etag"] for r in "12"]
