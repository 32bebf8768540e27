"""Fixtures and helpers for work item tests (registered by tests/conftest.py).

- ``workitem_env``: the storage account (Azurite) plus the settings `get_settings()` needs,
  with the lifecycle settings at their defaults; returns a ``WorkItemEnv`` to change them,
  queue alerts, run them through the host harness or straight through the processor,
  and snapshot the tables.
- ``snapshot(connection_string)``: every entity of the work item tables, minus what
  legitimately differs between runs (write timestamps, which copy of an event arrived
  first): two runs that saw the same events give equal snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from shared import alert_queue, processor, store, table_keys, workitem_index
from shared.config import get_settings
from shared.workitem_rows import DELIVERY_FIELDS, WRITE_TIME_FIELDS
from tests.alert_factory import TENANT
from tests.harness import REPO, FunctionsHost, QueueRunStats

IGNORED_FIELDS = frozenset((*WRITE_TIME_FIELDS, *DELIVERY_FIELDS))
LIFECYCLE_SETTINGS = (
    "CORRELATION_MODE",
    "REOPEN_WINDOW_MINUTES",
    "FLAP_THRESHOLD",
    "FLAP_WINDOW_MINUTES",
)

Snapshot = dict[tuple[str, str, str], dict[str, Any]]


def snapshot(connection_string: str) -> Snapshot:
    """(table, PartitionKey, RowKey) -> properties, without write times and delivery fields.

    Index rows are left out, the CI's item rows in `cmdb` like the index table: a crash or
    a lost race may leave a stale one, which readers skip and repair (tests/test_api_*).
    """
    service = TableServiceClient.from_connection_string(connection_string)
    out: Snapshot = {}
    for name in table_keys.TABLES:
        try:
            entities = list(service.get_table_client(name).list_entities())
        except ResourceNotFoundError:
            continue
        for e in entities:
            if name == table_keys.CMDB_TABLE and str(e["RowKey"]).startswith(
                workitem_index.CI_ITEMS_ROW_PREFIX
            ):
                continue
            props = {k: v for k, v in e.items() if k not in IGNORED_FIELDS}
            out[(name, e["PartitionKey"], e["RowKey"])] = props
    return out


def diff_snapshots(a: Snapshot, b: Snapshot) -> str:
    """A readable description of how two snapshots differ ("" when equal)."""
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            lines.append(f"only in second: {key}: {json.dumps(b[key], default=str)[:600]}")
        elif key not in b:
            lines.append(f"only in first: {key}: {json.dumps(a[key], default=str)[:600]}")
        elif a[key] != b[key]:
            for prop in sorted(set(a[key]) | set(b[key])):
                if a[key].get(prop) != b[key].get(prop):
                    lines.append(
                        f"{key} {prop}: {str(a[key].get(prop))[:300]!r} != "
                        f"{str(b[key].get(prop))[:300]!r}"
                    )
    return "\n".join(lines)


# -- unbounded reads, for tests only: the app pages history (WorkItemStore.history_page) and
# lists a CI's items through its index rows (WorkItemStore.list_items) --------------------


def _work_table(connection_string: str) -> Any:
    service = TableServiceClient.from_connection_string(connection_string)
    return service.get_table_client(table_keys.WORKITEMS_TABLE)


def item_history(connection_string: str, item_id: str) -> list[dict[str, Any]]:
    """Every history entry of an item, in event-time order (a scan of its group's history)."""
    work = _work_table(connection_string)
    pk = table_keys.item_partition(item_id)
    try:
        item = work.get_entity(pk, table_keys.item_row(item_id))
    except ResourceNotFoundError:
        return []
    flt = f"PartitionKey eq '{pk}' and " + table_keys.prefix_filter(
        table_keys.history_prefix(str(item["group"]))
    )
    mine = [dict(r) for r in work.query_entities(flt) if r.get("itemId") == item["id"]]
    return sorted(
        mine, key=lambda r: (str(r.get("eventTime")), str(r.get("condition")), r["RowKey"])
    )


def group_items(connection_string: str, partition: str, group: str) -> list[dict[str, Any]]:
    """Every work item of one group (rule mode: every episode of a rule and CI set)."""
    flt = f"PartitionKey eq '{partition}' and " + table_keys.prefix_filter(table_keys.ITEM_PREFIX)
    rows = _work_table(connection_string).query_entities(flt)
    return [dict(r) for r in rows if r.get("group") == group]


def ci_items(connection_string: str, ci_key: str, tenant: str) -> list[dict[str, Any]]:
    """Every work item touching a tenant's CI: its CI -> group bindings, then each group's
    items."""
    service = TableServiceClient.from_connection_string(connection_string)
    cmdb = service.get_table_client(table_keys.CMDB_TABLE)
    flt = f"PartitionKey eq '{table_keys.ci_partition(ci_key, tenant)}' and " + (
        table_keys.prefix_filter(table_keys.CI_ITEM_PREFIX)
    )
    items = []
    for binding in cmdb.query_entities(flt):
        items += group_items(
            connection_string, str(binding["groupPartition"]), str(binding["group"])
        )
    return items


def wipe_tables(connection_string: str) -> None:
    """Delete the work item and index tables (the store recreates them) and its caches."""
    service = TableServiceClient.from_connection_string(connection_string)
    for name in (*table_keys.TABLES, workitem_index.INDEX_TABLE):
        service.delete_table(name)
    store.clear_caches()


def host_json(tmp_dir: Path, **queues: Any) -> Path:
    """A copy of host.json with some `extensions.queues` settings changed."""
    config = json.loads((REPO / "host.json").read_text())
    config["extensions"]["queues"].update(queues)
    path = tmp_dir / f"host-{abs(hash(json.dumps(queues, sort_keys=True)))}.json"
    path.write_text(json.dumps(config))
    return path


@dataclass
class WorkItemEnv:
    connection_string: str
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path

    def configure(
        self,
        mode: str | None = None,
        reopen: int | None = None,
        flap_threshold: int | None = None,
        flap_window: int | None = None,
    ) -> None:
        values = (mode, reopen, flap_threshold, flap_window)
        for name, value in zip(LIFECYCLE_SETTINGS, values, strict=True):
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
            else:
                self.monkeypatch.setenv(name, str(value))

    @property
    def store(self) -> store.WorkItemStore:
        return store.store_for(get_settings())

    def process(self, alerts: Iterable[Mapping[str, Any]], raw: Any = None) -> None:
        """Each alert straight through the processor, in order (no queue)."""
        for n, alert in enumerate(alerts):
            text = alert_queue.encode(alert, raw if raw is not None else {"n": n})
            processor.handle(text, 1, f"direct-{n}")

    def enqueue(self, alerts: Iterable[Mapping[str, Any]], raw: Any = None) -> None:
        settings = get_settings().storage
        for n, alert in enumerate(alerts):
            alert_queue.enqueue(settings, alert, raw if raw is not None else {"n": n})

    def host(self, **queues: Any) -> FunctionsHost:
        import function_app

        path = host_json(self.tmp_path, **queues) if queues else REPO / "host.json"
        return FunctionsHost(function_app.app, self.connection_string, host_json=path)

    def run_queue(self, workers: int | None = None, timeout: float = 120) -> QueueRunStats:
        """Drain `alerts` through the harness: host.json concurrency, or `workers` at once."""
        queues = {} if workers is None else {"batchSize": workers, "newBatchThreshold": 0}
        return self.host(**queues).run_queue("alerts", visibility_timeout=0, timeout=timeout)

    def snapshot(self) -> Snapshot:
        return snapshot(self.connection_string)

    def wipe(self) -> None:
        wipe_tables(self.connection_string)

    def items(self) -> list[dict[str, Any]]:
        """Every work item entity, by id."""
        rows = [
            v
            for (t, _, rk), v in self.snapshot().items()
            if t == table_keys.WORKITEMS_TABLE and rk.startswith("i|")
        ]
        return sorted(rows, key=lambda r: str(r["id"]))

    def history(self, item_id: str) -> list[dict[str, Any]]:
        return item_history(self.connection_string, item_id)


@pytest.fixture
def workitem_env(
    storage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[WorkItemEnv]:
    monkeypatch.setenv("AAD_TENANT_IDS", TENANT)
    monkeypatch.setenv("AAD_AUDIENCES", "api://itsm-receiver-tests")
    env = WorkItemEnv(storage, monkeypatch, tmp_path)
    env.configure()
    store.clear_caches()
    yield env
    store.clear_caches()
