"""The CMDB side of an event: CI entities, CI -> group bindings, the CI name index
(docs/data-model.md, "`cmdb`")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
)
from azure.data.tables import UpdateMode

from shared import ci_names, table_keys, workitem_index, workitem_rows
from shared.alert_events import Ci, Event, GroupKey, to_micros
from shared.log_text import get_logger
from shared.store.base import _CI_CACHE, CI_ATTEMPTS, ContentionError, IndexOp, _now
from shared.store.index import WRITES, _Index, _IndexWrites, _merge_upsert
from shared.workitem_index import INDEX_TABLE
from shared.workitems import (
    CiSeen,
    GroupState,
    ci_covered,
    merge_ci,
)

log = get_logger(__name__)


class _Cmdb(_Index):
    """The store's cmdb part (shared.store.WorkItemStore combines them)."""

    def _write_ci_name(self, ci: Ci, pk: str, tenant: str) -> None:
        """The CI's row in its tenant's name index (immutable: blind upserts agree)."""
        name = str(ci.data.get("name") or ci.display)
        entity = {
            "PartitionKey": ci_names.names_partition(workitem_index.tenant_scope(tenant)),
            "RowKey": ci_names.ci_name_row(name, pk),
            **ci_names.ci_name_props(ci.data, ci.key, ci.display, tenant),
        }
        operation = ("upsert", entity, {"mode": UpdateMode.REPLACE})
        self._call(INDEX_TABLE, lambda _t: self._coalesced(INDEX_TABLE, operation))

    def _touch_cis(
        self,
        group: GroupKey,
        before: GroupState,
        event: Event,
        index_ops: list[IndexOp],
        writes: _IndexWrites,
    ) -> list[IndexOp]:
        """Write what the event adds to its CIs: first/last seen, spelling, the group
        binding, and the CI's new index rows (see workitem_index.location), one transaction
        per CI. Returns the index writes left for `_index_before`."""
        carried: dict[str, list[IndexOp]] = {}
        rest: list[IndexOp] = []
        for op in index_ops:
            table, pk, _ = workitem_index.location(op[1])
            if op[0] in WRITES and table == table_keys.CMDB_TABLE:  # merged there
                carried.setdefault(pk, []).append(op)
            else:
                rest.append(op)
        for ci in event.cis:
            rows = carried.pop(table_keys.ci_partition(ci.key, group.tenant), [])
            known = before.ci(ci.key)
            if not rows and ci_covered(known, ci, event.seen_time):
                continue  # written before the group committed what it knows about this CI
            bind = group if known is None else None
            writes.etags.update(self._write_ci(ci, group.tenant, event.seen_time, bind, rows))
        for rows in carried.values():  # CIs of the group that this event does not name
            rest.extend(rows)
        return rest

    def _cached_ci(self, pk: str) -> tuple[str, CiSeen] | None:
        return _CI_CACHE.get((self._account, pk))

    def _remember_ci(self, pk: str, etag: str, seen: CiSeen | None) -> None:
        _CI_CACHE.put((self._account, pk), None if seen is None else (etag, seen))

    def _write_ci(
        self,
        ci: Ci,
        tenant: str,
        at: int | None,
        bind: GroupKey | None,
        index_rows: Sequence[IndexOp] = (),
    ) -> dict[workitem_index.Key, str]:
        """One transaction in the CI's partition: the CI (conditionally), a group binding,
        index rows of its items (MERGE); returns the index rows' ETags.

        The CI entity is merged like the group's record (min/max/min), with its ETag; the
        process remembers the last version it saw, and skips the write when that version
        already covers the event (monotone: an old version that covers it proves the new
        one does). A hot CI is therefore written about once per minute, not per alert.
        """
        pk = table_keys.ci_partition(ci.key, tenant)
        for _attempt in range(CI_ATTEMPTS):
            cached = self._cached_ci(pk)
            write_row = not (cached is not None and ci_covered(cached[1], ci, at))
            ops: list[tuple[Any, ...]] = []
            target: CiSeen | None = None
            now = _now()
            if write_row:
                target = merge_ci(cached[1] if cached else None, ci, at)
                entity = {
                    "PartitionKey": pk,
                    "RowKey": table_keys.CI_ROW,
                    **workitem_rows.cmdb_props(target, tenant),
                    "updatedAt": now,
                }
                if cached is None:
                    ops.append(("create", {**entity, "createdAt": now}))
                else:
                    ops.append(
                        (
                            "update",
                            entity,
                            {
                                "mode": UpdateMode.MERGE,
                                "etag": cached[0],
                                "match_condition": MatchConditions.IfNotModified,
                            },
                        )
                    )
            if bind is not None:
                row = {
                    "PartitionKey": pk,
                    "RowKey": table_keys.CI_ITEM_PREFIX + bind.hash[: table_keys.GROUP_CHARS],
                    **workitem_rows.ci_group_props(bind),
                }
                ops.append(("upsert", row, {"mode": UpdateMode.REPLACE}))
            ops.extend(_merge_upsert(key, props) for _, key, props in index_rows)
            if not ops:
                return {}
            if cached is None and write_row and _attempt == 0:
                # A CI this process does not know: make sure the name index has it
                # (immutable, idempotent; before the CI exists, so a search never misses it).
                self._write_ci_name(ci, pk, tenant)
            try:
                result = self._submit(table_keys.CMDB_TABLE, ops)
            except HttpResponseError as exc:
                index = getattr(exc, "index", 0)
                if write_row and index == 0 and exc.status_code in (404, 409, 412):
                    self._refresh_ci(pk)
                    continue
                raise
            if target is not None:
                self._remember_ci(pk, result[0]["etag"], target)
            answers = result[len(ops) - len(index_rows) :]
            return {op[1]: str(a.get("etag")) for op, a in zip(index_rows, answers, strict=True)}
        raise ContentionError(f"CI {ci.key[:200]}: {CI_ATTEMPTS} conflicting attempts")

    def _refresh_ci(self, pk: str) -> None:
        entity = self._get(table_keys.CMDB_TABLE, pk, table_keys.CI_ROW)
        if entity is None:
            self._remember_ci(pk, "", None)
            return
        data = {name: entity.get(name) or None for name in workitem_rows.CI_FIELDS}
        seen = CiSeen(
            key=str(entity["key"]),
            display=str(entity["display"]),
            data={**data, "key": entity["key"], "display": entity["display"]},
            first=to_micros(entity.get("firstSeen")),
            last=to_micros(entity.get("lastSeen")),
        )
        self._remember_ci(pk, entity.metadata["etag"], seen)
