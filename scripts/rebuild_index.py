"""Rebuild the work item API's index rows, item timelines and per-tenant CMDB from the work items.

    .venv/bin/python scripts/rebuild_index.py                       # everything
    .venv/bin/python scripts/rebuild_index.py --state rebuild.json  # resumable
    .venv/bin/python scripts/rebuild_index.py --settings local.settings.json

For data written before an index layout change (docs/data-model.md, "Indexes for the work
item API"), before items had timelines (`t|` rows, the history pages), or before tenants had
their own index partitions and CMDB (docs/security.md, "Tenant model"): reads every work item
(`workitems`, row keys `i|`), page by page, and writes what it should have: its month, open
and CI item rows in its tenant's partitions (`workitemindex`, and its CIs' `cmdb`
partitions), its tenant's month in the `months` partition, a timeline row per history entry,
and for each of its CIs the tenant's CI (copied from the CI shared by every tenant before,
when the tenant has none yet), the CI -> group binding, the CI's name row, and the item -> CI
binding under its per-tenant key. Then the name row of every per-tenant CI.

Idempotent: every write is an upsert of what the item says now, so running it twice, or
while the app runs, leaves the same rows (a row the app no longer needs is dropped by the
next listing that reads it, as any stale index row). Resumable: with `--state FILE`, the
position after each page is saved there and a new run starts from it; delete the file to
start over. Storage settings are the app's own (see scripts/replay_poison.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared import ci_names, storage, table_keys, workitem_index, workitem_rows
from shared.alert_events import iso, to_micros
from shared.config import storage_settings
from shared.workitem_index import INDEX_TABLE


def _upsert(client: TableClient, entity: Mapping[str, Any]) -> None:
    client.upsert_entity(dict(entity), mode=UpdateMode.MERGE)


def item_rows(item: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, entity) of every index row the item should have, and its month's row."""
    view = workitem_index.view_of_entity(item)
    if view is None:
        return
    seq = item.get("indexSeq")
    stamp = {"seq": seq if isinstance(seq, int) and not isinstance(seq, bool) else 0}
    for key, props in workitem_index.rows(view).items():
        yield workitem_index.stored_entity(key, {**props, **stamp})
    month = workitem_index.month_of(view.fired_at)
    row = workitem_index.months_row(workitem_index.tenant_scope(view.tenant), month)
    yield INDEX_TABLE, {"PartitionKey": workitem_index.MONTHS_PARTITION, "RowKey": row}


_CI_COPIED = (*workitem_rows.CI_FIELDS, "key", "display", "firstSeen", "lastSeen")


def _name_row(ci: Mapping[str, Any], tenant: str) -> dict[str, Any]:
    """The CI's row in its tenant's name index, from its CMDB entity."""
    name = str(ci.get("name") or ci.get("display") or ci.get("key") or "")
    data = {k: ci.get(k) for k in ("kind", "subscriptionId", "resourceType", "name")}
    scope = workitem_index.tenant_scope(tenant)
    return {
        "PartitionKey": ci_names.names_partition(scope),
        "RowKey": ci_names.ci_name_row(name, str(ci["PartitionKey"])),
        **ci_names.ci_name_props(
            data, str(ci.get("key") or ""), str(ci.get("display") or ""), tenant
        ),
    }


def tenant_cmdb(clients: Mapping[str, TableClient], item: Mapping[str, Any]) -> None:
    """The item's CIs in its tenant's CMDB: the CI, its group binding, its name row, and the
    item -> CI binding under its per-tenant row key. Idempotent: a tenant's CI that exists is
    left as the app keeps it; the rest are upserts of what the item says."""
    work, cmdb = clients[table_keys.WORKITEMS_TABLE], clients[table_keys.CMDB_TABLE]
    item_id, group = str(item["id"]), str(item["group"])
    tenant = table_keys.tenant_key(str(item.get("tenantId") or ""))
    pk = table_keys.item_partition(item_id)
    flt = f"PartitionKey eq '{pk}' and " + table_keys.prefix_filter(
        table_keys.binding_prefix(item_id)
    )
    for binding in list(work.query_entities(flt)):
        key = str(binding.get("ciKey") or "")
        if not key:
            continue
        ci_pk = table_keys.ci_partition(key, tenant)
        ci: Mapping[str, Any]
        try:
            ci = cmdb.get_entity(ci_pk, table_keys.CI_ROW)
        except ResourceNotFoundError:
            ci = _copy_shared_ci(cmdb, key, ci_pk, tenant, binding)
        _upsert(clients[INDEX_TABLE], _name_row(ci, tenant))
        bind = {
            "PartitionKey": ci_pk,
            "RowKey": table_keys.CI_ITEM_PREFIX + group,
            "group": group,
            "groupKind": str(item.get("groupKind") or ""),
            "groupPartition": pk,
            "itemId": table_keys.base_item_id(group) if item.get("groupKind") == "alert" else "",
            "correlationKey": str(item.get("correlationKey") or ""),
        }
        _upsert(cmdb, bind)
        row = table_keys.binding_row(item_id, key, tenant)
        if binding["RowKey"] != row:  # the item -> CI binding of the shared CMDB: moved
            _upsert(work, {**dict(binding), "RowKey": row, "ciPartition": ci_pk})
            with contextlib.suppress(ResourceNotFoundError):
                work.delete_entity(pk, str(binding["RowKey"]))


def _copy_shared_ci(
    cmdb: TableClient, key: str, ci_pk: str, tenant: str, binding: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Create the tenant's CI from the one every tenant shared before (its spelling, ARM
    parts and first/last seen), or from the binding when that is gone."""
    try:
        shared = dict(cmdb.get_entity(table_keys.legacy_ci_partition(key), table_keys.CI_ROW))
    except ResourceNotFoundError:
        shared = {"key": key, "display": binding.get("display") or key, "kind": binding.get("kind")}
    now = iso(int(time.time() * 1_000_000))
    entity = {
        "PartitionKey": ci_pk,
        "RowKey": table_keys.CI_ROW,
        **{k: shared.get(k) or "" for k in _CI_COPIED},
        "tenantId": tenant,
        "createdAt": now,
        "updatedAt": now,
    }
    with contextlib.suppress(ResourceExistsError):  # the app (or an earlier run) was first
        cmdb.create_entity(entity)
    return cmdb.get_entity(ci_pk, table_keys.CI_ROW)


def timeline_rows(work: TableClient, item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The item's timeline rows, from its history entries."""
    item_id, group = str(item["id"]), str(item["group"])
    pk = table_keys.item_partition(item_id)
    flt = (
        f"PartitionKey eq '{pk}' and "
        + table_keys.prefix_filter(table_keys.history_prefix(group))
        + f" and itemId eq '{item_id}'"
    )
    for entry in work.query_entities(flt, select=["entryId", "eventTime", "itemId"]):
        when = to_micros(entry.get("eventTime"))
        entry_id = str(entry.get("entryId") or "")
        if when is None or not entry_id:
            continue
        yield {
            "PartitionKey": pk,
            "RowKey": table_keys.timeline_row(item_id, when, entry_id),
            "entryId": entry_id,
            "itemId": item_id,
            "group": group,
        }


def rebuild(
    service: TableServiceClient, state: Path | None, page_size: int, max_pages: int | None
) -> tuple[int, bool]:
    """(items done, finished) for this run."""
    clients = {name: service.get_table_client(name) for name in (*table_keys.TABLES, INDEX_TABLE)}
    for client in clients.values():
        with contextlib.suppress(ResourceExistsError):
            client.create_table()
    saved = json.loads(state.read_text()) if state is not None and state.exists() else {}
    if saved.get("done"):
        return 0, True
    work = clients[table_keys.WORKITEMS_TABLE]
    flt = f"RowKey ge '{table_keys.ITEM_PREFIX}' and RowKey lt '{table_keys.ITEM_PREFIX}~'"
    pages = work.query_entities(flt, results_per_page=page_size).by_page(
        continuation_token=saved.get("token")
    )
    done = 0
    for n, page in enumerate(pages):
        if max_pages is not None and n >= max_pages:
            return done, False
        for item in page:
            for table, entity in item_rows(item):
                _upsert(clients[table], entity)
            for entity in timeline_rows(work, item):
                _upsert(work, entity)
            tenant_cmdb(clients, item)
            done += 1
        if state is not None:  # the position after this page: a new run starts there
            token = pages.continuation_token  # type: ignore[attr-defined]
            state.write_text(json.dumps({"token": token, "done": token is None}))
    cmdb = clients[table_keys.CMDB_TABLE]
    for ci in cmdb.query_entities(f"RowKey eq '{table_keys.CI_ROW}'"):
        if "tenantId" in ci:  # a tenant's CI; one of the shared CMDB is no one's any more
            _upsert(clients[INDEX_TABLE], _name_row(ci, str(ci["tenantId"])))
    if state is not None:
        state.write_text(json.dumps({"token": None, "done": True}))
    return done, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", type=Path, help="a Core Tools local.settings.json")
    parser.add_argument("--state", type=Path, help="where to keep the position (resumable)")
    parser.add_argument("--page", type=int, default=100, help="items per page")
    parser.add_argument("--max-pages", type=int, help="stop after this many pages")
    args = parser.parse_args(argv)
    values: Mapping[str, str] = os.environ
    if args.settings is not None:
        values = json.loads(args.settings.read_text(encoding="utf-8"))["Values"]
    service = storage.table_service(storage_settings(values))
    done, finished = rebuild(service, args.state, args.page, args.max_pages)
    print(f"{done} work items rebuilt; {'finished' if finished else 'more to do: run again'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
