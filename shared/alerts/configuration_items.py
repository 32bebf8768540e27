"""Configuration items (CIs): what the CMDB binds an alert to.

A CI is either an Azure resource (an ARM resource id: starts with `/subscriptions/`,
case-insensitive) or a plain name (a computer from a log query, `budgets`). Keys are
lowercased for deduplication but not encoded for Table Storage: the store does that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.alerts.values import as_list, ci_get, escaped_weight, plain, text, utf8_safe

AZURE_RESOURCE = "azureResource"
NAME = "name"

MAX_ITEMS = 20
MAX_KEY_WEIGHT = 1024  # Table Storage keys are at most 1 KiB: a longer CI cannot be stored
KEYS_BUDGET = 2000  # total escaped weight of all keys: bounds the queue message

# Log search alerts derive CIs from these dimensions / result columns, first one present.
LOG_CI_COLUMNS = ("_resourceid", "resourceid", "resource", "computer")
# Metric alert dimensions that name what a time series is about (docs/queue-message.md):
# resource dimensions count only when they hold an ARM id (a VM metric's `ResourceId` is
# the VM's unique id, a GUID), host dimensions name a machine (metrics from logs split by
# `Computer`, Container insights `host`, AKS `node`, scale set `VMName`, App Insights
# `cloud/roleInstance`). One per condition: an ARM-id resource dimension, else the host
# dimension first in this order.
METRIC_RESOURCE_DIMENSIONS = ("_resourceid", "resourceid", "resource", "microsoft.resourceid")
METRIC_HOST_DIMENSIONS = (
    "computer",
    "host",
    "hostname",
    "node",
    "nodename",
    "vmname",
    "cloud/roleinstance",
    "roleinstance",
)
# lowercased name -> rank: -1 for resource dimensions, else the host dimension's priority
_METRIC_CI_RANKS = {
    **{name: i for i, name in enumerate(METRIC_HOST_DIMENSIONS)},
    **dict.fromkeys(METRIC_RESOURCE_DIMENSIONS, -1),
}

# subscription, resource group, provider, type, name, display name
ResourceParts = tuple[str, str | None, str | None, str | None, str | None, str | None]


def parse_resource_id(resource_id: str) -> dict[str, Any] | None:
    """The parts of an ARM resource id, or None when it is not one.

    `/subscriptions/{sub}[/resourceGroups/{rg}][/providers/{ns}/{type}/{name}[/{type}/{name}]...]`
    with extension resources (`.../providers/{ns}/{type}/{name}/providers/...`) described by
    their last provider block. Child types are joined (`Microsoft.Sql/servers/databases`);
    `name` is the last name segment; `subscriptionId` is lowercased. Empty segments (`//`, a
    trailing `/`) are ignored.
    """
    parts = _parse(resource_id)
    if parts is None:
        return None
    sub, rg, provider, resource_type, name, _ = parts
    return {
        "subscriptionId": sub,
        "resourceGroup": rg,
        "provider": provider,
        "resourceType": resource_type,
        "name": name,
    }


def subscription_id(resource_id: str) -> str | None:
    """`parse_resource_id(resource_id)["subscriptionId"]` (None when not an ARM id), without
    parsing the rest: normalize needs only this from the rule and alert ids."""
    if resource_id[:15].lower() == "/subscriptions/":
        sub, slash, _ = resource_id[15:].partition("/")
        if sub and slash:  # not the last segment: untouched by the general parse's strip()
            return sub.lower()
    parts = _parse(resource_id)
    return None if parts is None else parts[0]


def _parse(resource_id: str, lowered: str | None = None) -> ResourceParts | None:
    low = (resource_id.lower() if lowered is None else lowered).split("/")
    if (  # the usual shape, a top-level resource in a resource group: no general parse
        len(low) == 9
        and low[1] == "subscriptions"
        and low[3] == "resourcegroups"
        and low[5] == "providers"
        and not low[0]
        and all(low[2:9:2])
        and all(low[6:9])
    ):
        segs = resource_id.split("/")
        return low[2], segs[4], segs[6], f"{segs[6]}/{segs[7]}", segs[8], segs[8]
    return _parse_general(resource_id)


def _parse_general(resource_id: str) -> ResourceParts | None:
    segs = [p for p in resource_id.strip().split("/") if p]
    if len(segs) < 2 or segs[0].lower() != "subscriptions":
        return None
    n = len(segs)
    resource_group: str | None = None
    i = 2
    if n >= 4 and segs[2].lower() == "resourcegroups":
        resource_group = segs[3]
        i = 4
    provider: str | None = None
    resource_type: str | None = None
    name: str | None = None
    display: str | None = None
    if i == n:
        provider = "Microsoft.Resources"
        if resource_group is None:
            resource_type, name = "Microsoft.Resources/subscriptions", segs[1]
        else:
            resource_type, name = "Microsoft.Resources/resourceGroups", resource_group
    elif segs[i].lower() == "providers" and i + 1 < n:
        while i < n and segs[i].lower() == "providers" and i + 1 < n:
            provider = segs[i + 1]
            types: list[str] = []
            names: list[str] = []
            i += 2
            while i < n:
                if segs[i].lower() == "providers" and len(types) == len(names) and types:
                    break  # an extension resource follows its parent's full type/name pairs
                types.append(segs[i])
                if i + 1 < n:
                    names.append(segs[i + 1])
                i += 2
            resource_type = "/".join([provider, *types]) if types else None
            name = names[-1] if names else None
            # A child keeps its parents, as ARM spells child names: "vmss/212", "srv/db".
            display = "/".join(names) if len(names) > 1 else name
    else:
        name = segs[-1]
    return segs[1].lower(), resource_group, provider, resource_type, name, display or name


def _candidates(values: object) -> list[object]:
    if isinstance(values, list):
        return values[: MAX_ITEMS * 4]
    return [] if values is None else [values]  # a single string where a list was documented


def log_dimension_value(dimensions: object) -> object:
    """The CI a log alert's dimensions name: `_ResourceId`, `ResourceId`, `Resource`,
    `Computer`, first one present (Azure's own order for configurationItems)."""
    found: dict[str, object] = {}
    for dim in as_list(dimensions)[:50]:
        if isinstance(dim, dict):
            name = ci_get(dim, "name")
            if isinstance(name, str):
                lname = name.lower()
                if lname in LOG_CI_COLUMNS and lname not in found:
                    found[lname] = ci_get(dim, "value")
    for column in LOG_CI_COLUMNS:
        value = found.get(column)
        if (isinstance(value, str) and value.strip()) or isinstance(value, int | float):
            return value
    return None


def metric_dimension_value(dimensions: object) -> object:
    """The CI one metric condition's dimensions name: the first resource dimension
    (`_ResourceId`, `ResourceId`, `Resource`, `Microsoft.ResourceId`) holding an ARM id,
    else the first host dimension by METRIC_HOST_DIMENSIONS order; None when none does."""
    if isinstance(dimensions, list):
        pairs: list[Any] = dimensions[:50]
    elif isinstance(dimensions, dict):  # {name: value}, as some senders write them
        pairs = [{"name": k, "value": v} for k, v in list(dimensions.items())[:50]]
    else:
        return None
    host_rank = len(METRIC_HOST_DIMENSIONS)
    host: str | None = None
    for dim in pairs:
        if not isinstance(dim, dict):
            continue
        name = dim.get("name")
        if name is None:
            name = ci_get(dim, "name")
        rank = _METRIC_CI_RANKS.get(name.lower()) if isinstance(name, str) else None
        if rank is None or rank >= host_rank:
            continue  # the usual case: a dimension that names neither
        value = dim.get("value")
        if value is None:
            value = ci_get(dim, "value")
        if not isinstance(value, str):
            continue
        if rank < 0:
            if value.lstrip()[:15].lower() == "/subscriptions/":
                return value
        elif value.strip():
            host_rank, host = rank, value
    return host


def search_result_values(search_results: object, max_rows: int = 50) -> list[object]:
    """CI values from log alert V1 search results: per row, the first CI column present."""
    values: list[object] = []
    if not isinstance(search_results, dict):
        return values
    for table in as_list(ci_get(search_results, "tables"))[:5]:
        if not isinstance(table, dict):
            continue
        lowered = [
            name.lower() if isinstance(name, str) else None
            for name in (
                ci_get(c, "name") if isinstance(c, dict) else None
                for c in as_list(ci_get(table, "columns"))
            )
        ]
        index = next((lowered.index(c) for c in LOG_CI_COLUMNS if c in lowered), None)
        if index is None:
            continue
        for row in as_list(ci_get(table, "rows"))[:max_rows]:
            if isinstance(row, list) and index < len(row):
                values.append(row[index])
    return values


def collect(
    configuration_items: object, alert_target_ids: object, context_values: Sequence[object]
) -> tuple[list[dict[str, Any]], int, str | None]:
    """The deduplicated CIs in source order, how many were left out for size, and the key
    of the primary target (None when there is no CI).

    Sources: `configurationItems`, `alertTargetIDs`, then what the context names (log
    alert dimensions, V1 search result columns, V1 `AffectedConfigurationItems`, metric
    alert resource and host dimensions).

    The primary target is what the alert is about: the first CI the context names (the
    dimension the rule splits by: the computer, not the workspace it reports to), else the
    first of `alertTargetIDs` (the rule's target), else the first CI.

    A plain name equal to the name of an Azure resource CI of the same alert is folded into
    that CI: Azure fills `configurationItems` with the short name of the target, and binding
    work items to a bare VM name would link unrelated VMs of the same name.
    """
    items: list[dict[str, Any]] = []
    keys: set[str] = set()
    resource_names: dict[str, str] = {}  # lowercased name -> key of its resource CI
    names = used = omitted = 0
    given = _candidates(configuration_items)
    targets = _candidates(alert_target_ids)
    first_target = len(given)
    first_context = first_target + len(targets)
    values = given + targets
    values += context_values[: MAX_ITEMS * 4]
    target_key: str | None = None
    context_key: str | None = None
    for index, value in enumerate(values):
        if isinstance(value, str):
            s = value.strip()
            if not s:
                continue
            if not s.isascii():
                s = utf8_safe(s)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            s = text(value, 64) or ""  # a computer named by a number is still a name
            if not s:
                continue
        else:
            continue
        key = lowered = s.lower()
        arm = key[:15] == "/subscriptions/" and len(key) > 15
        if arm and ("//" in key or key[-1] == "/"):
            key = "/" + "/".join(p for p in key.split("/") if p)
        if key not in keys:
            weight = len(key) if plain(key) else escaped_weight(key)
            if weight > MAX_KEY_WEIGHT or len(items) >= MAX_ITEMS or used + weight > KEYS_BUDGET:
                omitted += 1
                continue
            keys.add(key)
            used += weight
            parts = _parse(s, lowered) if arm else None
            if parts is None:
                names += 1
                items.append(
                    {
                        "key": key,
                        "display": s,
                        "displayName": s,
                        "kind": NAME,
                        "subscriptionId": None,
                        "resourceGroup": None,
                        "provider": None,
                        "resourceType": None,
                        "name": s,
                    }
                )
            else:
                if parts[4]:
                    resource_names.setdefault(parts[4].lower(), key)
                items.append(
                    {
                        "key": key,
                        "display": s,
                        "displayName": parts[5] or s,
                        "kind": AZURE_RESOURCE,
                        "subscriptionId": parts[0],
                        "resourceGroup": parts[1],
                        "provider": parts[2],
                        "resourceType": parts[3],
                        "name": parts[4],
                    }
                )
        if index >= first_context:
            if context_key is None:
                context_key = key
        elif index >= first_target and target_key is None:
            target_key = key
    primary = context_key or target_key or (items[0]["key"] if items else None)
    if names and resource_names:
        items = [i for i in items if i["kind"] != NAME or i["key"] not in resource_names]
        if primary is not None:
            primary = resource_names.get(primary, primary)  # folded into its resource
    return items, omitted, primary
