"""The indexes under concurrency: whatever races, no work item is ever missing from them.

Alerts of a few hot groups are processed by many threads at once, without the in-process
group lock (so threads race like separate instances, and ETag conflicts, retries and
failed attempts happen), interleaved with people's changes. Afterwards every stored work
item must have every index row it needs, with at least its flags (the invariant the
write protocol keeps: docs/data-model.md, "Indexes"), and the API must list exactly the
items the work item table holds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import table_keys, workitem_index
from shared.store import groups as store_groups
from tests import alert_factory as af
from tests.api_support import Api, api_session, ids
from tests.harness import FunctionsHost
from tests.tokens import Mint


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _entities(storage: str, table: str) -> list[Any]:
    return list(
        TableServiceClient.from_connection_string(storage).get_table_client(table).list_entities()
    )


def test_no_item_is_ever_missing_from_the_indexes(
    api: Api, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_groups, "SERIALIZE_GROUPS_IN_PROCESS", False)
    api.configure(CORRELATION_MODE="rule", REOPEN_WINDOW_MINUTES=5)
    rng = random.Random(11)
    vms = [af.VM.replace("vm-web-01", f"vm-{n}") for n in range(3)]
    alerts: list[dict[str, Any]] = []
    for n in range(36):
        ci = (vms[n % 3],)
        start = rng.uniform(0, 120)
        sev = f"Sev{rng.randint(0, 4)}"
        alerts.append(af.fired(f"i{n}", start, cis=ci, severity=sev))
        if rng.random() < 0.7:
            alerts.append(
                af.resolved(f"i{n}", start, start + rng.uniform(1, 20), cis=ci, severity=sev)
            )
    rng.shuffle(alerts)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda a: api.alerts(a), alerts))
    # People act on some items while the last alerts still arrive.
    items = {
        str(e["id"]): e
        for e in _entities(storage, table_keys.WORKITEMS_TABLE)
        if str(e["RowKey"]).startswith("i|")
    }
    late = [af.fired(f"late{n}", 200 + n, cis=(vms[n % 3],)) for n in range(6)]

    def person(item_id: str) -> None:
        api.patch(item_id, {"priority": 1, "note": "mine"}, "*")

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(api.alerts, a) for a in late]
        futures += [pool.submit(person, i) for i in sorted(items)[:6]]
        for f in futures:
            f.result()

    stored = [
        e
        for e in _entities(storage, table_keys.WORKITEMS_TABLE)
        if str(e["RowKey"]).startswith("i|")
    ]
    index = {
        workitem_index.key_of(table, e): e
        for table in (workitem_index.INDEX_TABLE, table_keys.CMDB_TABLE)
        for e in _entities(storage, table)
        if table != table_keys.CMDB_TABLE
        or str(e["RowKey"]).startswith(workitem_index.CI_ITEMS_ROW_PREFIX)
    }
    for item in stored:
        view = workitem_index.view_of_entity(item)
        assert view is not None
        for key, wanted in workitem_index.rows(view).items():
            assert key in index, f"{item['id']} ({item['state']}) is missing its index row {key}"
            missing = workitem_index.flag_names(wanted) - workitem_index.flag_names(index[key])
            assert not missing, f"{item['id']}: index row {key} lacks {missing}"

    open_ids = sorted(str(i["id"]) for i in stored if i["state"] in workitem_index.OPEN_STATES)
    assert sorted(ids(api.list_all(top=7))) == open_ids
    everything = api.list_all(state="all", top=9)
    assert sorted(ids(everything)) == sorted(str(i["id"]) for i in stored)
    fired = [i["firedAt"] for i in everything]
    assert fired == sorted(fired, reverse=True), "newest first"
    for vm in vms:
        mine = sorted(str(i["id"]) for i in stored if vm.lower() in str(i["configurationItems"]))
        assert sorted(ids(api.list_all(ci=vm, state="all"))) == mine
    # Stale rows a race may leave (superset flags, an obsolete row whose cleanup lost to
    # a later writer) are never shown, and readers delete those they can prove stale.
    left = [
        str(e["itemId"])
        for e in _entities(storage, workitem_index.INDEX_TABLE)
        if workitem_index.is_open_partition(workitem_index.key_of(workitem_index.INDEX_TABLE, e)[0])
    ]
    assert set(open_ids) <= set(left)
