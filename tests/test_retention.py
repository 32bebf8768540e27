"""Retention end to end: the timer function through the harness, against Azurite.

Old resolved and closed items go with every row and blob of theirs; open items and recent
ones stay; a second run finds nothing more; a run stopped by its bound is finished by the
next one.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared import alert_queue, processor, store, table_keys
from shared.workitem_index import INDEX_TABLE
from tests import alert_factory as af
from tests.api_support import Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint
from tests.workitem_fixtures import item_history


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _now_minutes(offset: float = 0) -> float:
    return (datetime.now(UTC) - af.BASE).total_seconds() / 60 + offset


def _rows(connection: str) -> dict[str, list[dict[str, Any]]]:
    service = TableServiceClient.from_connection_string(connection)
    out = {}
    for name in (*table_keys.TABLES, INDEX_TABLE):
        out[name] = [dict(e) for e in service.get_table_client(name).list_entities()]
    return out


def _mentions(rows: dict[str, list[dict[str, Any]]], item_id: str) -> list[str]:
    return [
        f"{table} {r['PartitionKey']} {r['RowKey']}"
        for table, entities in rows.items()
        for r in entities
        if item_id in str(r["RowKey"]) or item_id in (r.get("itemId"), r.get("id"))
    ]


def _blobs(connection: str) -> list[str]:
    container = BlobServiceClient.from_connection_string(connection).get_container_client(
        alert_queue.CLAIM_CHECK_CONTAINER
    )
    try:
        return [b.name for b in container.list_blobs()]
    except Exception:
        return []


def test_old_finished_items_go_with_everything_theirs_open_and_recent_ones_stay(
    api: Api, host: FunctionsHost, storage: str
) -> None:
    noise = base64.b64encode(os.urandom(90_000)).decode()  # kept in a claim-check blob
    old = af.fired("old-1", 0)
    processor.handle(alert_queue.encode(old, {"noise": noise}), 1, "old-fired")
    [old_id] = api.alerts(af.resolved("old-1", 0, 30))
    [closed_id] = api.alerts(af.fired("old-closed", 5))
    assert api.patch(closed_id, {"state": "Closed"}, "*").status == 200
    [open_id] = api.alerts(af.fired("old-open", 10))
    [recent_id] = api.alerts(af.fired("recent", _now_minutes(-60)))
    api.alerts(af.resolved("recent", _now_minutes(-60), _now_minutes(-30)))
    assert _blobs(storage)
    before = _rows(storage)
    assert _mentions(before, old_id)

    host.fire_timer("purge_expired")

    after = _rows(storage)
    assert _mentions(after, old_id) == []
    # Closed by a person just now: its last change is recent, so it stays.
    assert _mentions(after, closed_id)
    assert api.store.get_item(open_id) is not None  # open: never deleted
    assert api.store.get_item(recent_id) is not None
    assert _blobs(storage) == []
    assert api.get(f"/api/workitems/{old_id}").status == 404
    assert {i["id"] for i in api.list_all(state="all")} == {closed_id, open_id, recent_id}

    host.fire_timer("purge_expired")  # again: nothing more to do
    assert _rows(storage) == after


def test_a_bounded_run_is_finished_by_the_next(api: Api) -> None:
    ids = []
    for n in range(5):
        [item_id] = api.alerts(af.fired(f"batch-{n}", n))
        api.alerts(af.resolved(f"batch-{n}", n, n + 1))
        ids.append(item_id)
    s = api.store
    cutoff = int(datetime.now(UTC).timestamp() * 1_000_000)
    first = s.purge_expired(cutoff, max_deleted=2)
    assert len(first.items) == 2
    assert not first.complete
    rest = s.purge_expired(cutoff)
    assert rest.complete
    assert sorted(first.items + rest.items) == sorted(ids)
    assert all(s.get_item(i) is None for i in ids)
    assert s.purge_expired(cutoff).items == []
    assert isinstance(first, store.Purged)


def test_an_item_with_a_long_history_goes_over_several_bounded_runs(api: Api, storage: str) -> None:
    [item_id] = api.alerts(af.fired("long-history", 0))
    for n in range(9):
        assert api.patch(item_id, {"note": f"note {n}"}, "*").status == 200
    api.alerts(af.resolved("long-history", 0, 30))
    entries = len(item_history(storage, item_id))
    assert entries >= 11
    s = api.store
    cutoff = int(datetime.now(UTC).timestamp() * 1_000_000) + 1
    runs = []
    while True:
        run = s.purge_expired(cutoff, max_entries=4)
        runs.append(run)
        assert run.entries <= 4  # the bound holds whatever the item's age
        if run.complete:
            break
        assert s.get_item(item_id) is not None  # still findable until its entries are gone
        assert len(runs) < 10
    assert sum(r.entries for r in runs) == entries
    assert len(runs) >= entries // 4
    assert [i for r in runs for i in r.items] == [item_id]
    assert _mentions(_rows(storage), item_id) == []
