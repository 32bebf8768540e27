"""Tenant isolation of the work item API, end to end (docs/security.md, "Tenant model").

Two tenants (A and B, both in AAD_TENANT_IDS) send alerts named alike, about the same
Azure resources. Every endpoint is called with real RSA tokens of each tenant through the
host harness: each caller sees its own tenant's work items and CIs only, another tenant's
item or CI answers exactly as a missing one, continuation tokens cannot cross tenants, and
the CMDB keeps one CI per tenant for a resource both name. Callers from an operator tenant
(AAD_OPERATOR_TENANT_IDS) see every tenant, and filter by one with `tenant`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import alert_queue, processor, table_keys, workitem_index
from shared.alert_events import to_micros
from shared.api import params
from shared.config import ConfigError, load_settings
from tests import alert_factory as af
from tests.api_support import READ, WRITE, Answer, Api, api_session, ids
from tests.harness import FunctionsHost
from tests.tokens import TENANT_A, TENANT_B, Mint

VM2 = af.VM.replace("vm-web-01", "vm-web-02")
OTHER_RULE = "Disk almost full"
MISSING_ITEM = "WI-ZZZZZZZZZZ"
MISSING_CI = "CI-" + "Z" * table_keys.CI_CHARS


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def seed(api: Api, tenant: str, offset: float) -> dict[str, str]:
    """The same five alerts in `tenant` (minutes shifted by `offset`): name -> work item."""
    t = {"tenantId": tenant}
    made = {
        "sev1": api.alerts(af.fired("same-1", 0 + offset, severity="Sev1", **t)),
        "vm2": api.alerts(af.fired("same-2", 10 + offset, cis=(VM2,), severity="Sev3", **t)),
        "disk": api.alerts(af.fired("same-3", 20 + offset, rule=OTHER_RULE, rule_id=None, **t)),
        "resolved": api.alerts(
            af.fired("same-4", 5 + offset, **t), af.resolved("same-4", 5 + offset, 30, **t)
        ),
    }
    raw = {"schemaId": "azureMonitorCommonAlertSchema", "data": {"tenant": tenant}}
    alert = af.fired("same-5", 40 + offset, **t)
    processor.handle(alert_queue.encode(alert, raw), 1, f"payload-{tenant}")
    made["payload"] = api.alerts(af.redelivered(alert))
    return {name: item_ids[0] for name, item_ids in made.items()}


@pytest.fixture
def two(api: Api) -> dict[str, dict[str, str]]:
    return {TENANT_A: seed(api, TENANT_A, 0), TENANT_B: seed(api, TENANT_B, 1)}


def as_(api: Api, tenant: str, role: str = WRITE) -> dict[str, Any]:
    """Call options for a caller (an application) of `tenant`."""
    return {"token": api.token(role, tenant_id=tenant)}


def listing(api: Api, caller: str, **query: Any) -> list[str]:
    """Every page of a listing by a caller of tenant `caller`, top=2 to go through tokens."""
    out: list[str] = []
    token = None
    for _ in range(100):
        q = {"top": 2, **query, **({"continuationToken": token} if token else {})}
        answer = api.get("/api/workitems", query=q, **as_(api, caller, READ))
        assert answer.status == 200, answer
        out.extend(ids(answer.body["items"]))
        for item in answer.body["items"]:
            assert item["tenantId"] == caller
        token = answer.body["continuationToken"]
        if token is None:
            return out
    raise AssertionError("no last page")


def _same_error(foreign: Answer, missing: Answer, foreign_id: str, missing_id: str) -> None:
    """Another tenant's resource answers exactly as a missing one (but for the id)."""
    assert (foreign.status, missing.status) == (404, 404), (foreign, missing)
    a = {k: v for k, v in foreign.body.items() if k != "correlationId"}
    b = {k: v for k, v in missing.body.items() if k != "correlationId"}
    assert str(a).replace(foreign_id, "<id>") == str(b).replace(missing_id, "<id>")
    assert set(foreign.headers) == set(missing.headers)


# -- listings -------------------------------------------------------------------------------


def test_each_tenant_lists_its_own_items_under_every_filter(
    api: Api, two: dict[str, dict[str, str]]
) -> None:
    for name in two[TENANT_A]:  # alike alerts of two tenants: two work items
        assert two[TENANT_A][name] != two[TENANT_B][name]
    for tenant, other in ((TENANT_A, TENANT_B), (TENANT_B, TENANT_A)):
        mine, theirs = two[tenant], two[other]
        ci_mine = workitem_index.ci_id(workitem_index.ci_hash(VM2.lower(), tenant))
        expected: list[tuple[dict[str, Any], set[str]]] = [
            ({}, {mine[n] for n in ("sev1", "vm2", "disk", "payload")}),
            ({"state": "all"}, set(mine.values())),
            ({"state": "Resolved"}, {mine["resolved"]}),
            ({"severity": "Sev1"}, {mine["sev1"]}),
            ({"severity": "Sev3", "state": "all"}, {mine["vm2"]}),
            ({"priority": "4"}, {mine["vm2"]}),
            ({"rule": OTHER_RULE}, {mine["disk"]}),
            ({"rule": OTHER_RULE, "state": "all"}, {mine["disk"]}),
            ({"ci": "vm-web-02"}, {mine["vm2"]}),
            ({"ci": "vm-web-02", "state": "all"}, {mine["vm2"]}),
            ({"ci": VM2}, {mine["vm2"]}),
            ({"ci": ci_mine, "state": "all"}, {mine["vm2"]}),
            ({"since": af.at(9), "until": af.at(25)}, {mine["vm2"], mine["disk"]}),
            ({"since": af.at(0), "state": "all", "flapping": "false"}, set(mine.values())),
        ]
        for query, wanted in expected:
            got = listing(api, tenant, **query)
            assert sorted(got) == sorted(wanted), (tenant, query)
            assert not set(got) & set(theirs.values()), (tenant, query)
        # Another tenant's CI, by its id: as a CI nobody has seen (none of its rows is read).
        foreign_ci = workitem_index.ci_id(workitem_index.ci_hash(VM2.lower(), other))
        for state in ("open", "all"):
            assert listing(api, tenant, ci=foreign_ci, state=state) == []
            assert listing(api, tenant, ci=MISSING_CI, state=state) == []


def test_continuation_tokens_stay_in_their_tenant(api: Api, two: dict[str, dict[str, str]]) -> None:
    first_a = api.get("/api/workitems", query={"top": 1}, **as_(api, TENANT_A))
    token_a = first_a.body["continuationToken"]
    assert token_a
    # A's token in B's hands: bound to A's listing, refused.
    stolen = api.get(
        "/api/workitems", query={"top": 1, "continuationToken": token_a}, **as_(api, TENANT_B)
    )
    assert (stolen.status, stolen.body["error"]) == (400, "invalid_continuation_token")
    # A token forged with B's own query, positioned at A's newest item: B's rows after it.
    b_fingerprint = params.list_request(
        "http://x/api/workitems?top=1", TENANT_B
    ).filter.fingerprint()
    newest_a = first_a.body["items"][0]
    micros = to_micros(newest_a["firedAt"])
    assert micros is not None
    position = workitem_index.sort_key(micros, newest_a["id"])
    forged = params.make_token(b_fingerprint, position)
    seen: list[str] = []
    token: str | None = forged
    while token:
        page = api.get(
            "/api/workitems", query={"top": 1, "continuationToken": token}, **as_(api, TENANT_B)
        )
        assert page.status == 200, page
        seen.extend(ids(page.body["items"]))
        token = page.body["continuationToken"]
    assert seen
    assert not set(seen) & set(two[TENANT_A].values())
    assert set(seen) <= set(two[TENANT_B].values())
    # A CI search token likewise.
    first = api.get("/api/cis", query={"top": 1}, **as_(api, TENANT_A))
    assert first.body["continuationToken"]
    stolen = api.get(
        "/api/cis",
        query={"top": 1, "continuationToken": first.body["continuationToken"]},
        **as_(api, TENANT_B),
    )
    assert (stolen.status, stolen.body["error"]) == (400, "invalid_continuation_token")
    # A search token forged with B's query, positioned before A's CI names: B's CIs only.
    b_search = params.ci_search("http://x/api/cis?top=1", TENANT_B).fingerprint()
    forged_search = params.make_token(b_search, "a")
    found: list[str] = []
    token_s: str | None = forged_search
    while token_s:
        page = api.get(
            "/api/cis", query={"top": 1, "continuationToken": token_s}, **as_(api, TENANT_B)
        )
        assert page.status == 200, page
        assert {c["tenantId"] for c in page.body["items"]} <= {TENANT_B}
        found.extend(c["id"] for c in page.body["items"])
        token_s = page.body["continuationToken"]
    assert len(found) == 2  # vm-web-01 and vm-web-02, B's
    # And a history token (bound to its item, which B cannot read at all).
    item_a = two[TENANT_A]["resolved"]
    history = api.get(f"/api/workitems/{item_a}/history", query={"top": 1}, **as_(api, TENANT_A))
    token_h = history.body["continuationToken"]
    assert token_h
    foreign = api.get(
        f"/api/workitems/{item_a}/history",
        query={"top": 1, "continuationToken": token_h},
        **as_(api, TENANT_B),
    )
    assert foreign.status == 404, foreign


def test_a_tenant_filter_names_the_callers_own_tenant_only(
    api: Api, two: dict[str, dict[str, str]]
) -> None:
    own = listing(api, TENANT_B, tenant=TENANT_B.upper())
    assert sorted(own) == sorted(listing(api, TENANT_B))
    for path in ("/api/workitems", "/api/cis"):
        for value in (TENANT_A, "not-a-tenant", "11111111-2222-3333-4444-555555555555"):
            answer = api.get(path, query={"tenant": value}, **as_(api, TENANT_B))
            assert (answer.status, answer.body["field"]) == (400, "tenant"), answer
    # The refusal is the same whether or not the tenant has data: nothing to learn.
    a = api.get("/api/workitems", query={"tenant": TENANT_A}, **as_(api, TENANT_B))
    n = api.get(
        "/api/workitems",
        query={"tenant": "11111111-2222-3333-4444-555555555555"},
        **as_(api, TENANT_B),
    )
    assert a.body["detail"] == n.body["detail"]


# -- one item -------------------------------------------------------------------------------


def test_another_tenants_item_is_not_found_on_every_item_endpoint(
    api: Api, two: dict[str, dict[str, str]]
) -> None:
    item_a = two[TENANT_A]["payload"]
    detail = api.item(item_a).body  # A's own caller (af.TENANT is A) reads it
    event_id = detail["history"][0]["id"]
    before = api.store.get_item(item_a)
    b = as_(api, TENANT_B)
    _same_error(
        api.get(f"/api/workitems/{item_a}", **b),
        api.get(f"/api/workitems/{MISSING_ITEM}", **b),
        item_a,
        MISSING_ITEM,
    )
    _same_error(
        api.get(f"/api/workitems/{item_a}/history", **b),
        api.get(f"/api/workitems/{MISSING_ITEM}/history", **b),
        item_a,
        MISSING_ITEM,
    )
    _same_error(
        api.get(f"/api/workitems/{item_a}/events/{event_id}/payload", **b),
        api.get(f"/api/workitems/{MISSING_ITEM}/events/{event_id}/payload", **b),
        item_a,
        MISSING_ITEM,
    )
    for body in ({"state": "Closed", "note": "not yours"}, {"note": "a note alone"}):
        _same_error(
            api.patch(item_a, body, "*", **b),
            api.patch(MISSING_ITEM, body, "*", **b),
            item_a,
            MISSING_ITEM,
        )
        _same_error(
            api.patch(item_a, body, api.item(item_a).etag, **b),  # even with its ETag
            api.patch(MISSING_ITEM, body, 'W/"x"', **b),
            item_a,
            MISSING_ITEM,
        )
    after = api.store.get_item(item_a)
    assert after.metadata["etag"] == before.metadata["etag"]  # nothing was written
    assert after["state"] == "New"
    # B's own item of the same alert is B's to read, page, change.
    item_b = two[TENANT_B]["payload"]
    mine = api.get(f"/api/workitems/{item_b}", **b)
    assert mine.status == 200
    assert mine.body["tenantId"] == TENANT_B
    event_b = mine.body["history"][0]["id"]
    payload = api.get(f"/api/workitems/{item_b}/events/{event_b}/payload", **b)
    assert payload.body == {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"tenant": TENANT_B},
    }
    assert api.get(f"/api/workitems/{item_b}/history", **b).status == 200
    changed = api.patch(item_b, {"state": "Acknowledged"}, mine.etag, **b)
    assert changed.status == 200
    assert changed.body["state"] == "Acknowledged"
    assert api.item(item_a).body["state"] == "New"


# -- CMDB -------------------------------------------------------------------------------------


def test_each_tenant_has_its_own_ci_of_a_shared_resource(
    api: Api, two: dict[str, dict[str, str]]
) -> None:
    found = {}
    for tenant in (TENANT_A, TENANT_B):
        answer = api.get("/api/cis", query={"query": "vm-web-0"}, **as_(api, tenant, READ))
        assert answer.status == 200, answer
        assert {c["tenantId"] for c in answer.body["items"]} == {tenant}
        assert sorted(c["key"] for c in answer.body["items"]) == sorted(
            [af.VM.lower(), VM2.lower()]
        )
        by_id = api.get("/api/cis", query={"query": af.VM}, **as_(api, tenant, READ))
        assert [c["tenantId"] for c in by_id.body["items"]] == [tenant]
        found[tenant] = {c["key"]: c["id"] for c in answer.body["items"]}
        # Paging a search stays in the tenant too.
        paged: list[str] = []
        token = None
        while True:
            q = {"top": 1, **({"continuationToken": token} if token else {})}
            page = api.get("/api/cis", query=q, **as_(api, tenant, READ)).body
            paged.extend(c["id"] for c in page["items"])
            token = page["continuationToken"]
            if token is None:
                break
        assert sorted(paged) == sorted(found[tenant].values())
    assert not set(found[TENANT_A].values()) & set(found[TENANT_B].values())
    s = api.store
    for tenant in (TENANT_A, TENANT_B):
        ci = s.get_ci(af.VM.lower(), tenant)
        assert ci is not None
        assert ci["tenantId"] == tenant
        groups = {str(g["itemId"]) for g in s.ci_groups(af.VM.lower(), tenant) if g.get("itemId")}
        own = set(two[tenant].values())
        assert groups
        assert groups <= own


def test_another_tenants_ci_is_not_found(api: Api, two: dict[str, dict[str, str]]) -> None:
    a_ci = workitem_index.ci_id(workitem_index.ci_hash(af.VM.lower(), TENANT_A))
    b_ci = workitem_index.ci_id(workitem_index.ci_hash(af.VM.lower(), TENANT_B))
    b = as_(api, TENANT_B, READ)
    _same_error(
        api.get(f"/api/cis/{a_ci}", **b), api.get(f"/api/cis/{MISSING_CI}", **b), a_ci, MISSING_CI
    )
    own = api.get(f"/api/cis/{b_ci}", **b)
    assert own.status == 200, own
    assert own.body["tenantId"] == TENANT_B
    listed = ids(own.body["openWorkItems"]) + ids(own.body["recentWorkItems"])
    assert listed
    assert set(listed) <= set(two[TENANT_B].values())
    # The CI ids a work item shows are its own tenant's.
    item_b = api.get(f"/api/workitems/{two[TENANT_B]['sev1']}", **b).body
    assert [c["id"] for c in item_b["configurationItems"]] == [b_ci]


# -- operators --------------------------------------------------------------------------------


def test_an_operator_tenant_sees_every_tenant(api: Api, two: dict[str, dict[str, str]]) -> None:
    api.configure(AAD_OPERATOR_TENANT_IDS=TENANT_A)
    everything = set(two[TENANT_A].values()) | set(two[TENANT_B].values())
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        q = {"state": "all", "top": 3, **({"continuationToken": token} if token else {})}
        page = api.get("/api/workitems", query=q, **as_(api, TENANT_A, READ)).body
        seen.extend(page["items"])
        token = page["continuationToken"]
        if token is None:
            break
    assert sorted(ids(seen)) == sorted(everything)  # every item once, across pages
    fired = [i["firedAt"] for i in seen]
    assert fired == sorted(fired, reverse=True), "newest first across tenants"
    assert {i["tenantId"] for i in seen} == {TENANT_A, TENANT_B}
    only_b = api.get(
        "/api/workitems", query={"state": "all", "tenant": TENANT_B}, **as_(api, TENANT_A)
    )
    assert sorted(ids(only_b.body["items"])) == sorted(two[TENANT_B].values())
    # Another tenant's item, by id: readable, pageable, changeable.
    item_b = two[TENANT_B]["payload"]
    op = as_(api, TENANT_A)
    detail = api.get(f"/api/workitems/{item_b}", **op)
    assert detail.status == 200
    assert detail.body["tenantId"] == TENANT_B
    event_b = detail.body["history"][0]["id"]
    assert api.get(f"/api/workitems/{item_b}/history", **op).status == 200
    assert api.get(f"/api/workitems/{item_b}/events/{event_b}/payload", **op).status == 200
    assert api.patch(item_b, {"state": "InProgress"}, detail.etag, **op).status == 200
    # CIs: every tenant's, or one tenant's; one CI by id, whoever's it is.
    cis = api.get("/api/cis", query={"query": "vm-web-01"}, **op).body["items"]
    assert sorted(c["tenantId"] for c in cis) == sorted([TENANT_A, TENANT_B])
    b_ci = workitem_index.ci_id(workitem_index.ci_hash(af.VM.lower(), TENANT_B))
    one = api.get(f"/api/cis/{b_ci}", **op)
    assert one.status == 200
    assert one.body["tenantId"] == TENANT_B
    assert set(ids(one.body["recentWorkItems"])) <= set(two[TENANT_B].values())
    by_ci = api.get("/api/workitems", query={"ci": b_ci, "state": "all"}, **op)
    assert by_ci.body["items"]
    assert {i["tenantId"] for i in by_ci.body["items"]} == {TENANT_B}
    # A CI by name or resource id needs the tenant: each tenant has its own.
    for path, query in (("/api/workitems", {"ci": "vm-web-01"}), ("/api/cis", {"query": af.VM})):
        answer = api.get(path, query=query, **op)
        assert (answer.status, answer.body["error"]) == (400, "tenant_required"), answer
        scoped = api.get(path, query={**query, "tenant": TENANT_B}, **op)
        assert scoped.status == 200, scoped
        assert scoped.body["items"], scoped
        assert {i["tenantId"] for i in scoped.body["items"]} == {TENANT_B}
    # A token of the every-tenant listing does not serve a one-tenant listing.
    first = api.get("/api/workitems", query={"top": 1}, **op).body["continuationToken"]
    mixed = api.get(
        "/api/workitems",
        query={"top": 1, "tenant": TENANT_B, "continuationToken": first},
        **op,
    )
    assert mixed.status == 400
    # B is no operator: still its own tenant only.
    assert sorted(listing(api, TENANT_B, state="all")) == sorted(two[TENANT_B].values())
    answer = api.get(f"/api/workitems/{two[TENANT_A]['sev1']}", **as_(api, TENANT_B))
    assert answer.status == 404


def test_operator_tenants_must_be_tenants_the_app_accepts() -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AAD_TENANT_IDS": f"{TENANT_A},{TENANT_B}",
        "AAD_AUDIENCES": "api://x",
    }
    settings = load_settings({**base, "AAD_OPERATOR_TENANT_IDS": f" {TENANT_B.upper()} "})
    assert settings.operator_tenant_ids == (TENANT_B,)
    assert load_settings(base).operator_tenant_ids == ()
    for bad in ("11111111-2222-3333-4444-555555555555", "contoso"):
        with pytest.raises(ConfigError) as caught:
            load_settings({**base, "AAD_OPERATOR_TENANT_IDS": bad})
        assert caught.value.setting == "AAD_OPERATOR_TENANT_IDS"


# -- storage layout ------------------------------------------------------------------------------


def test_a_listing_reads_its_tenants_partitions_only(
    api: Api, storage: str, two: dict[str, dict[str, str]]
) -> None:
    """The index is partitioned by tenant: B's rows live where no listing of A looks."""
    index = TableServiceClient.from_connection_string(storage).get_table_client(
        workitem_index.INDEX_TABLE
    )
    scope = {t: workitem_index.tenant_scope(t) for t in (TENANT_A, TENANT_B)}
    for row in index.list_entities():
        pk, rk = str(row["PartitionKey"]), str(row["RowKey"])
        owner = rk.split("|")[0] if pk == workitem_index.MONTHS_PARTITION else pk.split("|")[0]
        assert owner in scope.values(), (pk, rk)
        item_id = row.get("itemId")
        if item_id:
            tenant = TENANT_A if owner == scope[TENANT_A] else TENANT_B
            assert item_id in two[tenant].values(), (pk, rk)
    # A listing's statistics: every index row it read was its own tenant's.
    page = api.store.list_items(
        workitem_index.ItemFilter(states=workitem_index.STATES, tenant=TENANT_B), 50, None
    )
    assert sorted(ids(page.items)) == sorted(two[TENANT_B].values())
    assert page.stats["index_rows"] == len(two[TENANT_B])
