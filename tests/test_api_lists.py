"""GET /api/workitems (every filter, paging), GET /api/cis and GET /api/cis/{id}, end to
end; plus what the index does under the hood (stale rows are never shown, and repaired)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import table_keys, workitem_index
from shared.alert_events import to_micros
from shared.store import reads as store_reads
from tests import alert_factory as af
from tests.api_support import Api, api_session, ids
from tests.harness import FunctionsHost
from tests.tokens import Mint

VM2 = af.VM.replace("vm-web-01", "vm-db-01")
RULE2 = af.RULE_ID.replace("cpu-high", "disk-full")
COMPUTER = "SQLHOST7"


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


@pytest.fixture
def seeded(api: Api) -> dict[str, str]:
    """A small zoo of work items, fired at minutes 0..70 after BASE."""
    made: dict[str, str] = {}

    def one(name: str, *alerts: dict[str, Any]) -> None:
        touched = api.alerts(*alerts)
        made[name] = touched[0]

    one("new-sev2", af.fired("z-new", 0))
    one("sev0-vm2", af.fired("z-sev0", 10, severity="Sev0", cis=(VM2,)))
    one("sev1-disk", af.fired("z-disk", 20, severity="Sev1", rule="Disk full", rule_id=RULE2))
    one("resolved", af.fired("z-res", 30), af.resolved("z-res", 30, 35))
    one("computer", af.fired("z-comp", 40, cis=(COMPUTER,), severity="Sev3"))
    one("prio1", af.fired("z-prio", 50, custom={"itsm.priority": 1}))
    one("closed", af.fired("z-closed", 60))
    assert api.patch(made["closed"], {"state": "Closed"}, "*").status == 200
    one("acked", af.fired("z-ack", 70, cis=(af.VM, VM2)))
    assert api.patch(made["acked"], {"state": "Acknowledged"}, "*").status == 200
    return made


def names(seeded: dict[str, str], items: list[dict[str, Any]]) -> list[str]:
    by_id = {v: k for k, v in seeded.items()}
    return [by_id[i] for i in ids(items)]


def test_default_lists_open_items_newest_first(api: Api, seeded: dict[str, str]) -> None:
    page = api.list().body
    assert names(seeded, page["items"]) == [
        "acked",
        "prio1",
        "computer",
        "sev1-disk",
        "sev0-vm2",
        "new-sev2",
    ]
    assert page["count"] == 6
    assert page["continuationToken"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {"state": "all"},
            [
                "acked",
                "closed",
                "prio1",
                "computer",
                "resolved",
                "sev1-disk",
                "sev0-vm2",
                "new-sev2",
            ],
        ),
        ({"state": "Resolved"}, ["resolved"]),
        ({"state": "closed,resolved"}, ["closed", "resolved"]),
        ({"state": "Acknowledged"}, ["acked"]),
        ({"state": "New"}, ["prio1", "computer", "sev1-disk", "sev0-vm2", "new-sev2"]),
        ({"severity": "Sev0,Sev1"}, ["sev1-disk", "sev0-vm2"]),
        (
            {"severity": "Sev2", "state": "all"},
            ["acked", "closed", "prio1", "resolved", "new-sev2"],
        ),
        ({"priority": "1"}, ["prio1", "sev0-vm2"]),
        ({"priority": "4", "state": "all"}, ["computer"]),
        ({"ci": VM2}, ["acked", "sev0-vm2"]),
        ({"ci": VM2.upper()}, ["acked", "sev0-vm2"]),
        ({"ci": COMPUTER.lower()}, ["computer"]),
        ({"ci": "VM-DB-01"}, ["acked", "sev0-vm2"]),  # a resource by its name
        (
            {"ci": af.VM, "state": "all"},
            ["acked", "closed", "prio1", "resolved", "sev1-disk", "new-sev2"],
        ),
        ({"ci": af.VM, "state": "Resolved,Closed"}, ["closed", "resolved"]),
        ({"rule": "Disk full"}, ["sev1-disk"]),
        ({"rule": RULE2.upper()}, ["sev1-disk"]),
        (
            {"rule": "CPU above 90%", "state": "all", "severity": "Sev2"},
            ["acked", "closed", "prio1", "resolved", "new-sev2"],
        ),
        ({"since": af.at(40)}, ["acked", "prio1", "computer"]),
        ({"until": af.at(20)}, ["sev0-vm2", "new-sev2"]),
        (
            {"since": af.at(10), "until": af.at(40), "state": "all"},
            ["resolved", "sev1-disk", "sev0-vm2"],
        ),
        ({"flapping": "true"}, []),
        ({"flapping": "false", "severity": "Sev3"}, ["computer"]),
        ({"ci": "CI-0123456789ABCDEFGHJK", "state": "all"}, []),
    ],
)
def test_filters(
    api: Api, seeded: dict[str, str], query: dict[str, str], expected: list[str]
) -> None:
    assert names(seeded, api.list_all(**query)) == expected


def test_ci_filter_takes_the_ci_id(api: Api, seeded: dict[str, str]) -> None:
    ci_id = workitem_index.ci_id(workitem_index.ci_hash(VM2.lower(), af.TENANT))
    assert names(seeded, api.list_all(ci=ci_id)) == ["acked", "sev0-vm2"]


def test_a_cis_item_rows_live_in_its_cmdb_partition_and_stale_ones_get_repaired(
    api: Api, seeded: dict[str, str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The items of one CI are listed from the CI's own cmdb partition (where the CI's
    transaction writes them); a stale row there is never shown and is repaired too."""
    cmdb = TableServiceClient.from_connection_string(storage).get_table_client(
        table_keys.CMDB_TABLE
    )
    ci = workitem_index.ci_hash(VM2.lower(), af.TENANT)
    rows = list(
        cmdb.query_entities(f"PartitionKey eq '{ci}' and RowKey gt 's|' and RowKey lt 's}}'")
    )
    assert sorted(str(r["itemId"]) for r in rows) == sorted([seeded["acked"], seeded["sev0-vm2"]])
    micros = to_micros(af.at(65))
    assert micros is not None
    stale = workitem_index.sort_key(micros, seeded["new-sev2"])  # an item not on this CI
    cmdb.upsert_entity(
        {
            "PartitionKey": ci,
            "RowKey": workitem_index.CI_ITEMS_ROW_PREFIX + stale,
            "itemId": seeded["new-sev2"],
            "firedAt": af.at(65),
            "seq": 0,
        }
    )
    expected = ["acked", "sev0-vm2"]
    assert names(seeded, api.list_all(ci=VM2, state="all")) == expected
    monkeypatch.setattr(store_reads, "STALE_INDEX_GRACE_SECONDS", 0)
    assert names(seeded, api.list_all(ci=VM2, state="all")) == expected
    left = cmdb.query_entities(f"PartitionKey eq '{ci}' and RowKey gt 's|' and RowKey lt 's}}'")
    assert seeded["new-sev2"] not in {str(r["itemId"]) for r in left}


def test_ci_by_a_name_two_resources_share(api: Api) -> None:
    twin = af.VM.replace("RG-Web", "RG-Other")
    [first] = api.alerts(af.fired("twin-1", 0))
    [second] = api.alerts(af.fired("twin-2", 1, cis=(twin,)))
    answer = api.get("/api/workitems", query={"ci": "vm-web-01"})
    assert answer.status == 400
    assert answer.body["error"] == "ambiguous_ci"
    assert answer.body["field"] == "ci"
    assert ids(api.list_all(ci=twin)) == [second]
    assert ids(api.list_all(ci=af.VM)) == [first]


def test_paging_through_several_pages(api: Api, seeded: dict[str, str]) -> None:
    for query in ({}, {"state": "all"}, {"ci": af.VM, "state": "all"}):
        whole = api.list_all(**query)
        for top in (1, 2, 3):
            pages, token, seen = 0, None, []
            while True:
                q = {**query, "top": top, **({"continuationToken": token} if token else {})}
                body = api.list(**q).body
                assert len(body["items"]) <= top
                seen.extend(body["items"])
                pages += 1
                token = body["continuationToken"]
                if token is None:
                    break
            assert ids(seen) == ids(whole), (query, top)
            assert pages >= len(whole) // top


def test_a_token_only_works_with_its_own_filters(api: Api, seeded: dict[str, str]) -> None:
    token = api.list(top=1).body["continuationToken"]
    assert token
    answer = api.get("/api/workitems", query={"top": 1, "state": "all", "continuationToken": token})
    assert answer.status == 400
    assert answer.body["field"] == "continuationToken"
    answer = api.get("/api/workitems", query={"continuationToken": token[:-3] + "AAA"})
    assert answer.status == 400


@pytest.mark.parametrize(
    "query",
    [
        {"state": "pending"},
        {"severity": "critical"},
        {"priority": "9"},
        {"since": "last week"},
        {"until": "2024-02-30"},
        {"flapping": "maybe"},
        {"top": "1000"},
        {"continuationToken": "!!!"},
        {"sort": "firedAt"},
        {"ci": ""},
    ],
)
def test_bad_filters_answer_400(api: Api, query: dict[str, str]) -> None:
    answer = api.get("/api/workitems", query=query)
    assert answer.status == 400, answer
    assert answer.body["detail"]
    assert answer.body["field"]


def test_summary_fields(api: Api, seeded: dict[str, str]) -> None:
    [item] = [i for i in api.list_all() if i["id"] == seeded["acked"]]
    assert item["state"] == "Acknowledged"
    assert item["severity"] == "Sev2"
    assert item["url"] == f"/api/workitems/{seeded['acked']}"
    assert {c["key"] for c in item["configurationItems"]} == {af.VM.lower(), VM2.lower()}


# -- the CMDB ------------------------------------------------------------------------------


def test_ci_search(api: Api, seeded: dict[str, str]) -> None:
    def search(**query: str) -> list[str]:
        answer = api.get("/api/cis", query=query)
        assert answer.status == 200, answer
        return [c["name"] for c in answer.body["items"]]

    assert search() == ["SQLHOST7", "vm-db-01", "vm-web-01"]
    assert search(query="VM-") == ["vm-db-01", "vm-web-01"]
    assert search(query="vm-web") == ["vm-web-01"]
    assert search(query="sql") == ["SQLHOST7"]
    assert search(query="nothing") == []
    assert search(type="microsoft.compute/virtualMachines") == ["vm-db-01", "vm-web-01"]
    assert search(subscription=af.SUBSCRIPTION.upper()) == ["vm-db-01", "vm-web-01"]
    assert search(query=af.VM.upper()) == ["vm-web-01"]
    first = api.get("/api/cis", query={"top": 2}).body
    assert len(first["items"]) == 2
    assert first["continuationToken"]
    rest = api.get("/api/cis", query={"top": 2, "continuationToken": first["continuationToken"]})
    assert [c["name"] for c in rest.body["items"]] == ["vm-web-01"]
    assert rest.body["continuationToken"] is None
    for bad in ({"type": "virtual machines"}, {"subscription": "abc"}, {"top": "0"}, {"name": "x"}):
        assert api.get("/api/cis", query=bad).status == 400


def test_ci_detail_lists_open_and_recent_items(api: Api, seeded: dict[str, str]) -> None:
    [vm] = api.get("/api/cis", query={"query": "vm-web-01"}).body["items"]
    answer = api.get(vm["url"])
    assert answer.status == 200, answer
    body = answer.body
    assert body["key"] == af.VM.lower()
    assert body["display"] == af.VM
    assert body["resourceType"] == "Microsoft.Compute/virtualMachines"
    assert names(seeded, body["openWorkItems"]) == ["acked", "prio1", "sev1-disk", "new-sev2"]
    assert names(seeded, body["recentWorkItems"]) == [
        "acked",
        "closed",
        "prio1",
        "resolved",
        "sev1-disk",
        "new-sev2",
    ]
    assert body["moreOpenWorkItems"] is False
    assert api.get("/api/cis/CI-0123456789ABCDEFGHJK").status == 404
    assert api.get("/api/cis/vm-web-01").status == 400


# -- the index under the hood --------------------------------------------------------------


def test_stale_index_rows_are_never_shown_and_get_repaired(
    api: Api, seeded: dict[str, str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between a group commit and its index cleanup leaves stale rows: readers
    confirm every row against the item, never show a stale one, and delete it when no
    writer can be in the middle of needing it."""
    index = TableServiceClient.from_connection_string(storage).get_table_client(
        workitem_index.INDEX_TABLE
    )
    before = ids(api.list_all())

    def plant(item_id: str, minutes: float, seq: int = 0) -> None:
        micros = to_micros(af.at(minutes))
        assert micros is not None
        scope = workitem_index.tenant_scope(af.TENANT)
        key = (workitem_index.open_partition(scope), workitem_index.sort_key(micros, item_id))
        _, pk, rk = workitem_index.location(key)
        index.upsert_entity(
            {
                "PartitionKey": pk,
                "RowKey": rk,
                "itemId": item_id,
                "firedAt": af.at(minutes),
                "s_New": True,
                "sev_2": True,
                "p_3": True,
                "seq": seq,
            }
        )

    plant(seeded["resolved"], 30)  # resolved, still "open": its cleanup never ran
    plant(seeded["prio1"], 55)  # under a fired time the item does not have
    plant(seeded["closed"], 60, seq=10**6)  # by a commit that failed or may still land
    plant("WI-ZZZZZZZZZZ", 36)  # an item that does not exist (yet?)

    def open_rows() -> list[str]:
        rows = index.list_entities()
        return sorted(
            str(r["itemId"])
            for r in rows
            if workitem_index.is_open_partition(
                workitem_index.key_of(workitem_index.INDEX_TABLE, r)[0]
            )
        )

    assert ids(api.list_all()) == before
    assert open_rows() == sorted([*before, seeded["closed"], "WI-ZZZZZZZZZZ"])
    monkeypatch.setattr(store_reads, "STALE_INDEX_GRACE_SECONDS", 0)  # they are old now
    assert ids(api.list_all()) == before
    assert open_rows() == sorted(before)
