"""scripts/rebuild_index.py against Azurite: index rows and timelines come back, resumably.

Work items made by the real processor lose their index table, their CIs' item rows and
their timeline rows; the script, run page by page with a state file (as after an
interruption), then again (idempotent), brings back the rows the app would have written,
and the work item API lists and pages history as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import store, table_keys, workitem_index
from shared.workitem_index import INDEX_TABLE
from tests import alert_factory as af
from tests.api_support import Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _derived_rows(connection: str) -> dict[tuple[str, str, str], set[str]]:
    """Index, CI item and timeline rows: key -> the flags/fields that are true or set."""
    service = TableServiceClient.from_connection_string(connection)
    out: dict[tuple[str, str, str], set[str]] = {}
    for name in (INDEX_TABLE, table_keys.CMDB_TABLE, table_keys.WORKITEMS_TABLE):
        for e in service.get_table_client(name).list_entities():
            rk = str(e["RowKey"])
            if name == table_keys.CMDB_TABLE and not rk.startswith(
                workitem_index.CI_ITEMS_ROW_PREFIX
            ):
                continue
            if name == table_keys.WORKITEMS_TABLE and not rk.startswith(table_keys.TIMELINE_PREFIX):
                continue
            out[(name, str(e["PartitionKey"]), rk)] = {
                k for k, v in e.items() if v is True or (isinstance(v, str) and k == "itemId")
            }
    return out


def _drop(connection: str, rows: dict[tuple[str, str, str], Any]) -> None:
    service = TableServiceClient.from_connection_string(connection)
    service.delete_table(INDEX_TABLE)
    for name, pk, rk in rows:
        if name != INDEX_TABLE:
            service.get_table_client(name).delete_entity(pk, rk)
    store.clear_caches()


def _run(*args: str) -> str:
    import contextlib
    import io

    from scripts import rebuild_index

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert rebuild_index.main(list(args)) == 0
    return out.getvalue()


def test_rebuild_brings_back_index_rows_and_timelines(
    api: Api, storage: str, tmp_path: Path
) -> None:
    other = af.VM.replace("vm-web-01", "vm-web-02")
    ids = []
    for n in range(5):
        [item_id] = api.alerts(af.fired(f"rb-{n}", n, cis=(af.VM, other)))
        ids.append(item_id)
        if n % 2:
            api.alerts(af.resolved(f"rb-{n}", n, n + 4, cis=(af.VM, other)))
    before = _derived_rows(storage)
    listing = [i["id"] for i in api.list_all(state="all")]
    assert sorted(listing) == sorted(ids)
    _drop(storage, before)
    assert api.list_all(state="all") == []

    state = tmp_path / "rebuild.json"
    first = _run("--state", str(state), "--page", "2", "--max-pages", "1")
    assert "more to do" in first
    assert json.loads(state.read_text())["token"]
    assert "finished" in _run("--state", str(state), "--page", "2")
    after = _derived_rows(storage)
    assert set(after) == set(before)
    for key, fields in before.items():
        assert after[key] <= fields, key  # month rows may have gained flags on the way
    assert "finished" in _run()  # again, without state: the same rows
    assert _derived_rows(storage) == after
    assert [i["id"] for i in api.list_all(state="all")] == listing
    body = api.item(ids[1]).body
    assert [h["effect"] for h in body["history"]] == ["resolved", "created"]
