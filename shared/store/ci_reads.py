"""The CMDB's reads for the work item API: a tenant's CIs by id, by name prefix and by name
(docs/data-model.md, "Layout"; docs/security.md, "Tenant model")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared import ci_names, table_keys, workitem_index
from shared.store.base import Page, _is_table_missing, _parallel
from shared.store.cmdb import _Cmdb
from shared.workitem_index import INDEX_TABLE


def of_tenant(entity: Mapping[str, Any], tenant: str) -> bool:
    """Whether a work item or CI entity is the tenant's (ids compared as keys use them)."""
    owner = table_keys.tenant_key(str(entity.get("tenantId") or ""))
    return owner == table_keys.tenant_key(tenant)


class _CiReads(_Cmdb):
    """The store's CMDB reads part (shared.store.WorkItemStore combines them)."""

    def _query_rows(self, name: str, flt: str, need: int) -> tuple[list[Any], bool, int]:
        """Up to `need` entities matching `flt` in key order, whether more may follow, and
        the requests it took (the service may answer a filtered query in short pages)."""

        def run(t: TableClient) -> tuple[list[Any], bool, int]:
            out: list[Any] = []
            token: Any = None
            requests = 0
            while True:
                pager: Any = t.query_entities(flt, results_per_page=need - len(out)).by_page(
                    continuation_token=token
                )
                out.extend(next(pager, []))
                requests += 1
                token = pager.continuation_token
                if token is None or len(out) >= need:
                    return out[:need], token is not None or len(out) > need, requests

        return self._call(name, run)

    def _ci_tenant(self, ci: str) -> str | None:
        """The tenant of a CI (its entity says), or None if there is no such CI."""

        def get(t: TableClient) -> Any | None:
            try:
                return t.get_entity(ci, table_keys.CI_ROW, select=["tenantId"])
            except ResourceNotFoundError as exc:
                if _is_table_missing(exc):
                    raise
                return None

        entity = self._call(table_keys.CMDB_TABLE, get)
        return None if entity is None else table_keys.tenant_key(str(entity.get("tenantId") or ""))

    def ci_entity(self, ci_partition: str, tenant: str | None = None) -> Any | None:
        """The CMDB entity of a CI by its hash (its id without `CI-`), or None; with `tenant`,
        None also when the CI is another tenant's (exactly as if there were none)."""
        entity = self._get(table_keys.CMDB_TABLE, ci_partition, table_keys.CI_ROW)
        if entity is None or tenant is None or of_tenant(entity, tenant):
            return entity
        return None

    def search_cis(
        self,
        query: str | None,
        resource_type: str | None,
        subscription: str | None,
        top: int,
        after: str | None,
        tenant: str | None,
    ) -> Page:
        """A tenant's CIs by name prefix (or one ARM resource id), type and subscription, by
        name; `tenant` None: every tenant's (by name, merged), for operators."""
        stats: Counter[str] = Counter()
        if query is not None and query.lower().startswith("/subscriptions/"):
            if tenant is None:
                raise ValueError("a CI is looked up by resource id within one tenant")
            entity = self.get_ci(query.lower(), tenant)
            stats["requests"] += 1
            hits = [entity] if entity is not None and after is None else []
            hits = [
                e
                for e in hits
                if (resource_type is None or str(e.get("resourceType")).lower() == resource_type)
                and (subscription is None or str(e.get("subscriptionId")).lower() == subscription)
            ]
            return Page(hits, None, stats)
        if tenant is not None:
            scopes = [workitem_index.tenant_scope(tenant)]
        else:
            scopes = sorted({scope for scope, _ in self._months()})
            stats["requests"] += 1
        rows: list[tuple[str, Any]] = []
        more = False
        for scope in scopes:
            found, more_here = self._search_scope(
                scope, query, resource_type, subscription, top, after, stats
            )
            rows.extend(found)
            more = more or more_here
        rows.sort(key=lambda pair: pair[0])
        more = more or len(rows) > top
        rows = rows[:top]
        found_cis = [e for _, e in rows if e is not None]
        stats["items_read"] += len(found_cis)
        return Page(found_cis, rows[-1][0] if more and rows else None, stats)

    def _search_scope(
        self,
        scope: str,
        query: str | None,
        resource_type: str | None,
        subscription: str | None,
        top: int,
        after: str | None,
        stats: Counter[str],
    ) -> tuple[list[tuple[str, Any]], bool]:
        """(name row key, CI entity or None) of up to `top` rows of one tenant's name index."""
        clauses = [f"PartitionKey eq '{ci_names.names_partition(scope)}'"]
        prefix = ci_names.name_prefix_range(query or "")
        clauses += [prefix] if prefix else []
        if resource_type is not None:
            clauses.append(f"resourceType eq '{workitem_index.quote(resource_type)}'")
        if subscription is not None:
            clauses.append(f"subscriptionId eq '{workitem_index.quote(subscription)}'")
        if after is not None:
            clauses.append(f"RowKey gt '{workitem_index.quote(after)}'")
        rows, more, requests = self._query_rows(INDEX_TABLE, " and ".join(clauses), top)
        stats["requests"] += requests + len(rows)
        stats["index_rows"] += len(rows)

        def read(row: Any) -> tuple[str, Any]:
            return str(row["RowKey"]), self.ci_entity(str(row.get("ci") or ""))

        return list(_parallel(read, rows)), more

    def ci_hashes_named(self, name: str, tenant: str | None, limit: int = 20) -> list[str]:
        """The CIs whose name is `name` (case-insensitive), from the tenant's name index
        (None: every tenant's)."""
        key = ci_names.name_key(name)
        if not key:
            return []
        if tenant is not None:
            scopes = [workitem_index.tenant_scope(tenant)]
        else:
            scopes = sorted({scope for scope, _ in self._months()})
        found: set[str] = set()
        for scope in scopes:
            flt = (
                f"PartitionKey eq '{ci_names.names_partition(scope)}' and "
                f"RowKey gt '{workitem_index.quote(key)}|' and "
                f"RowKey lt '{workitem_index.quote(key)}}}'"
            )
            rows, _more, _requests = self._query_rows(INDEX_TABLE, flt, limit)
            found.update(str(r["ci"]) for r in rows if r.get("ci"))
        return sorted(found)

    def get_ci(self, ci_key: str, tenant: str) -> Any | None:
        """The tenant's CI with this canonical key (lowercase ARM id or name), or None."""
        pk = table_keys.ci_partition(ci_key, tenant)
        return self._get(table_keys.CMDB_TABLE, pk, table_keys.CI_ROW)

    def ci_groups(self, ci_key: str, tenant: str) -> list[Any]:
        """The CI -> group bindings: alert-mode rows name their item directly."""
        return self._query(
            table_keys.CMDB_TABLE,
            f"PartitionKey eq '{table_keys.ci_partition(ci_key, tenant)}' and "
            + table_keys.prefix_filter(table_keys.CI_ITEM_PREFIX),
        )
