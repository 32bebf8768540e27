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
from tests.api_support import READ, Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import TENANT_A, TENANT_B, Mint

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


def _legacy_layout(connection: str) -> None:
    """Turn the tables into what the app wrote before tenants had their own partitions and
    CMDB: index rows in `m|<month>`, `months` and `cis`; one CI per resource for every
    tenant (no `tenantId`), holding every tenant's bindings and item rows; item -> CI
    bindings keyed by that shared CI."""
    service = TableServiceClient.from_connection_string(connection)
    index = service.get_table_client(INDEX_TABLE)
    for e in list(index.list_entities()):
        pk, rk = str(e["PartitionKey"]), str(e["RowKey"])
        if pk == workitem_index.MONTHS_PARTITION:
            legacy = {"PartitionKey": pk, "RowKey": rk.split("|", 1)[1]}
        else:
            legacy = {**e, "PartitionKey": pk.split("|", 1)[1]}
            legacy.pop("tenantId", None)
        index.delete_entity(pk, rk)
        index.upsert_entity(legacy)
    cmdb = service.get_table_client(table_keys.CMDB_TABLE)
    rows = list(cmdb.list_entities())
    cis = {str(e["PartitionKey"]): e for e in rows if e["RowKey"] == table_keys.CI_ROW}
    for e in rows:
        shared = table_keys.legacy_ci_partition(str(cis[str(e["PartitionKey"])]["key"]))
        row = {k: v for k, v in e.items() if k != "tenantId"}
        cmdb.upsert_entity({**row, "PartitionKey": shared})
        cmdb.delete_entity(str(e["PartitionKey"]), str(e["RowKey"]))
    work = service.get_table_client(table_keys.WORKITEMS_TABLE)
    for e in list(work.query_entities("RowKey ge 'b|' and RowKey lt 'b}'")):
        shared = table_keys.legacy_ci_partition(str(e["ciKey"]))
        work.delete_entity(str(e["PartitionKey"]), str(e["RowKey"]))
        prefix = table_keys.binding_prefix(str(e["itemId"]))
        work.upsert_entity({**e, "RowKey": prefix + shared, "ciPartition": shared})
    store.clear_caches()


def test_data_of_the_shared_layout_is_found_per_tenant_after_a_rebuild(
    api: Api, storage: str, tmp_path: Path
) -> None:
    """Work items written before each tenant had its own index partitions and CMDB: two
    tenants' alerts about the same VMs. After `rebuild_index.py` each tenant lists, pages,
    searches and reads exactly what it did when the data was written per tenant."""
    other = af.VM.replace("vm-web-01", "vm-web-02")
    items: dict[str, list[str]] = {TENANT_A: [], TENANT_B: []}
    for tenant in items:
        for n in range(3):
            alert = af.fired(f"mig-{n}", n, cis=(af.VM, other), tenantId=tenant)
            items[tenant] += api.alerts(alert)
        api.alerts(af.resolved("mig-1", 1, 9, cis=(af.VM, other), tenantId=tenant))

    def seen() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tenant in items:
            who = {"token": api.token(READ, tenant_id=tenant)}
            out[f"list {tenant}"] = [
                i["id"]
                for i in api.get("/api/workitems", query={"state": "all"}, **who).body["items"]
            ]
            out[f"open {tenant}"] = [
                i["id"]
                for i in api.get("/api/workitems", query={"ci": "vm-web-02"}, **who).body["items"]
            ]
            cis = api.get("/api/cis", query={"query": "vm-web"}, **who).body["items"]
            out[f"cis {tenant}"] = [(c["id"], c["tenantId"]) for c in cis]
            for c in cis:
                detail = api.get(f"/api/cis/{c['id']}", **who)
                out[f"ci {c['id']}"] = (
                    detail.status,
                    [i["id"] for i in detail.body.get("recentWorkItems", [])],
                )
            first = api.get(f"/api/workitems/{items[tenant][0]}", **who).body
            out[f"item {tenant}"] = [c["id"] for c in first["configurationItems"]]
        return out

    before_rows = _derived_rows(storage)
    before = seen()
    assert before[f"list {TENANT_A}"]
    assert not set(before[f"list {TENANT_A}"]) & set(before[f"list {TENANT_B}"])
    _legacy_layout(storage)
    assert seen() != before  # the per-tenant reads find nothing of the shared layout

    state = tmp_path / "rebuild.json"
    assert "more to do" in _run("--state", str(state), "--page", "2", "--max-pages", "1")
    assert "finished" in _run("--state", str(state), "--page", "2")
    assert seen() == before
    assert "finished" in _run()  # idempotent
    assert seen() == before
    after_rows = _derived_rows(storage)
    assert set(before_rows) <= set(after_rows)
    # New events of migrated groups land in the tenant's partitions as any other.
    api.alerts(af.resolved("mig-2", 2, 12, cis=(af.VM, other), tenantId=TENANT_B))
    who = {"token": api.token(READ, tenant_id=TENANT_B)}
    resolved = api.get("/api/workitems", query={"state": "Resolved"}, **who).body["items"]
    assert [i["id"] for i in resolved] == [items[TENANT_B][2], items[TENANT_B][1]]
    theirs = api.get("/api/workitems", query={"state": "Resolved"}).body["items"]  # A's
    assert [i["id"] for i in theirs] == [items[TENANT_A][1]]
