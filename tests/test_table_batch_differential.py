"""shared/table_batch.py against the SDK's own TableClient.submit_transaction, on a corpus.

This is the gate for an azure-data-tables upgrade (see README, "Pinned dependencies"):
table_batch reaches into the SDK's private batch builder, so a new SDK version is taken
only when this file passes on it. For every transaction of the corpus (creates, merges,
replaces, upserts, deletes, conditional ETags right and stale, 1 and 100 operations,
unicode and binary properties, awkward keys) both paths run from the same starting rows:

- the request on the wire is the same: method, URL, the headers that matter, and the body
  once boundaries, dates and the run's own ETags are normalized;
- the answer is the same: per operation, the metadata keys, and ETags that are the rows'
  ETags afterwards; or the same error (type, status, error code, failing operation index);
- the table ends up the same.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared import table_batch
from shared.storage_transport import HttpClientTransport

PK = "pärt'1"
STALE = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""
WIRE_HEADERS = (
    "Content-Type",
    "Accept",
    "x-ms-version",
    "DataServiceVersion",
    "MaxDataServiceVersion",
    "Content-Length",
)

Seed = list[dict[str, Any]]
Etags = dict[str, str]  # row key -> ETag of the seeded row, in this run
Build = Callable[[Etags], list[tuple[Any, ...]]]


def _typed(rk: str, n: int) -> dict[str, Any]:
    return {
        "PartitionKey": PK,
        "RowKey": rk,
        "text": f"ünïcödé 🚀 <&> \"quoted\" 'single' {n}",
        "blob": bytes(range(256))[n % 7 :],
        "int": n,
        "big": EntityProperty(2**40 + n, EdmType.INT64),
        "ratio": n / 3,
        "flag": n % 2 == 0,
        "when": datetime.datetime(2026, 12, 3, 12, n % 60, 7, 123456, tzinfo=datetime.UTC),
        "id": uuid.UUID(int=n + 1),
        "empty": "",
    }


def _seed(*rows: str) -> Seed:
    return [_typed(rk, i) for i, rk in enumerate(rows)]


def _if(etag: str) -> dict[str, Any]:
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


SEEDED = ("m", "r", "d", "o'brien", "ünï", "a b%20")
# name -> (rows seeded first, the operations given their ETags)
CORPUS: dict[str, tuple[Seed, Build]] = {
    "one create, every property type": (_seed(), lambda _: [("create", _typed("new", 1))]),
    "one upsert merge": (
        _seed("m"),
        lambda _: [("upsert", {"PartitionKey": PK, "RowKey": "m", "x": "y"})],
    ),
    "one delete": (_seed("d"), lambda _: [("delete", {"PartitionKey": PK, "RowKey": "d"})]),
    "mixed, with matching etags": (
        _seed(*SEEDED),
        lambda e: [
            ("create", _typed("c1", 3)),
            ("upsert", {"PartitionKey": PK, "RowKey": "m", "x": 1}, {"mode": UpdateMode.MERGE}),
            ("upsert", {"PartitionKey": PK, "RowKey": "r", "x": 2}, {"mode": UpdateMode.REPLACE}),
            ("update", {"PartitionKey": PK, "RowKey": "o'brien", "x": 3}, _if(e["o'brien"])),
            (
                "update",
                {"PartitionKey": PK, "RowKey": "ünï", "x": b"\x00\x01"},
                {"mode": UpdateMode.REPLACE, **_if(e["ünï"])},
            ),
            ("delete", {"PartitionKey": PK, "RowKey": "d"}, _if(e["d"])),
            ("delete", {"PartitionKey": PK, "RowKey": "a b%20"}),
        ],
    ),
    "100 operations": (
        _seed(*(f"s{i:03d}" for i in range(60))),
        lambda e: [
            *(("create", _typed(f"n{i:03d}", i)) for i in range(40)),
            *(("upsert", _typed(f"s{i:03d}", i + 100)) for i in range(20)),
            *(
                ("update", {"PartitionKey": PK, "RowKey": f"s{i:03d}", "v": i}, _if(e[f"s{i:03d}"]))
                for i in range(20, 40)
            ),
            *(("delete", {"PartitionKey": PK, "RowKey": f"s{i:03d}"}) for i in range(40, 60)),
        ],
    ),
    "error: create of an existing row at 1": (
        _seed("m"),
        lambda _: [("create", _typed("x", 1)), ("create", _typed("m", 2))],
    ),
    "error: stale etag at 3": (
        _seed(*SEEDED),
        lambda e: [
            ("upsert", _typed("u1", 1)),
            ("update", {"PartitionKey": PK, "RowKey": "m", "v": 1}, _if(e["m"])),
            ("upsert", _typed("u2", 2)),
            ("update", {"PartitionKey": PK, "RowKey": "r", "v": 1}, _if(STALE)),
        ],
    ),
    "error: merge of a missing row at 0": (
        _seed(),
        lambda _: [
            ("update", {"PartitionKey": PK, "RowKey": "gone", "v": 1}, {"mode": UpdateMode.MERGE}),
            ("upsert", _typed("u", 1)),
        ],
    ),
    "error: delete of a missing row at 2": (
        _seed("d"),
        lambda _: [
            ("upsert", _typed("u", 1)),
            ("delete", {"PartitionKey": PK, "RowKey": "d"}),
            ("delete", {"PartitionKey": PK, "RowKey": "nope"}),
        ],
    ),
    "error: conditional delete, stale, in 100 operations at 99": (
        _seed("d"),
        lambda _: [
            *(("upsert", _typed(f"u{i:03d}", i)) for i in range(99)),
            ("delete", {"PartitionKey": PK, "RowKey": "d"}, _if(STALE)),
        ],
    ),
}


class _Wire:
    """raw_request_hook: the $batch requests a client sends."""

    def __init__(self) -> None:
        self.batches: list[Any] = []

    def __call__(self, request: Any) -> None:
        if request.http_request.url.endswith("$batch"):
            self.batches.append(request.http_request)


def _normalized_wire(request: Any, etags: Etags) -> tuple[Any, ...]:
    body = request.content if isinstance(request.content, bytes) else b""
    text = body.decode("utf-8")
    text = re.sub(r"(batch|changeset)_[0-9a-f-]{36}", r"\1_X", text)
    text = re.sub(r"(x-ms-date|Date): [^\r]+", r"\1: D", text)
    for rk, etag in etags.items():  # this run's ETags by the row they belong to
        text = text.replace(etag, f"<etag of {rk}>")
    headers = {
        name: re.sub(r"batch_[0-9a-f-]{36}", "batch_X", str(request.headers[name]))
        for name in WIRE_HEADERS
        if name in request.headers
    }
    return request.method, request.url, headers, text


def _rows(table: TableClient) -> dict[str, dict[str, Any]]:
    return {
        e["RowKey"]: {k: (v.value if isinstance(v, EntityProperty) else v) for k, v in e.items()}
        for e in table.list_entities()
    }


def _run(
    table: TableClient, seed: Seed, build: Build, submit: Callable[[list[Any]], Any]
) -> tuple[Any, ...]:
    with contextlib.suppress(ResourceNotFoundError):
        table.delete_table()
    table.create_table()
    etags = {e["RowKey"]: table.create_entity(e)["etag"] for e in seed}
    try:
        result = submit(build(etags))
    except HttpResponseError as exc:
        outcome: Any = (
            type(exc).__name__,
            exc.status_code,
            str(getattr(exc, "error_code", "")),
            getattr(exc, "index", None),
        )
    else:
        after = {e["RowKey"]: e.metadata["etag"] for e in table.list_entities()}
        written = [op[1]["RowKey"] for op in build(etags)]
        outcome = [
            (sorted(meta), meta.get("etag") == after.get(rk) if "etag" in meta else None)
            for meta, rk in zip(result, written, strict=True)
        ]
    return outcome, _rows(table), etags


@pytest.fixture
def clients(storage: str) -> tuple[TableClient, _Wire]:
    wire = _Wire()
    table = TableClient.from_connection_string(
        storage, "differential", transport=HttpClientTransport(), raw_request_hook=wire
    )
    return table, wire


@pytest.mark.parametrize("case", list(CORPUS))
def test_table_batch_is_the_sdks_submit_transaction(
    clients: tuple[TableClient, _Wire], case: str
) -> None:
    table, wire = clients
    seed, build = CORPUS[case]
    sdk_outcome, sdk_rows, sdk_etags = _run(table, seed, build, table.submit_transaction)
    lean_outcome, lean_rows, lean_etags = _run(
        table, seed, build, lambda ops: table_batch.submit_transaction(table, ops)
    )
    sdk_wire, lean_wire = wire.batches
    assert _normalized_wire(lean_wire, lean_etags) == _normalized_wire(sdk_wire, sdk_etags)
    assert lean_outcome == sdk_outcome
    assert lean_rows == sdk_rows
    if case.startswith("error"):
        assert isinstance(sdk_outcome, tuple)
        assert sdk_outcome[0] == "TableTransactionError"
        assert sdk_outcome[3] == int(case.rsplit(" ", 1)[1])  # the index the case names
    else:
        assert isinstance(sdk_outcome, list)
        assert all(same is not False for _, same in sdk_outcome)


def test_a_missing_table_fails_alike(storage: str) -> None:
    table = TableClient.from_connection_string(
        storage, "nosuchtable", transport=HttpClientTransport()
    )
    ops = [("upsert", _typed("a", 1)), ("upsert", _typed("b", 2))]
    outcomes = []
    for submit in (table.submit_transaction, lambda o: table_batch.submit_transaction(table, o)):
        with pytest.raises(HttpResponseError) as err:
            submit(ops)
        outcomes.append((type(err.value), err.value.status_code, err.value.error_code))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == 404


def test_mixed_partitions_are_refused_alike(storage: str) -> None:
    table = TableClient.from_connection_string(storage, "mixed", transport=HttpClientTransport())
    ops = [("upsert", _typed("a", 1)), ("upsert", {**_typed("b", 2), "PartitionKey": "other"})]
    messages = []
    for submit in (table.submit_transaction, lambda o: table_batch.submit_transaction(table, o)):
        with pytest.raises(ValueError, match="Partition") as err:
            submit(ops)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_binary_and_unicode_round_trip_through_the_lean_path(storage: str) -> None:
    table = TableClient.from_connection_string(
        storage, "roundtrip", transport=HttpClientTransport()
    )
    table.create_table()
    row = _typed("ünï 🚀", 5)
    table_batch.submit_transaction(table, [("create", row)])
    got = table.get_entity(PK, "ünï 🚀")
    assert got["blob"] == row["blob"]
    assert got["text"] == row["text"]
    assert base64.b64encode(got["blob"]) == base64.b64encode(bytes(range(256))[5:])
