"""Log search alerts: V1 (`Log Analytics`, `Application Insights`: flat PascalCase context),
V2 (`Log Alerts V2`: `condition.allOf[]`) and `Simple Log Alert`."""

from __future__ import annotations

from typing import Any

from shared.alerts import links
from shared.alerts.configuration_items import log_dimension_value, search_result_values
from shared.alerts.enums import operator_symbol
from shared.alerts.summaries.common import (
    MAX_CONDITIONS,
    Dimensions,
    Extract,
    failing_periods,
    moment,
    one_line,
    show,
)
from shared.alerts.timestamps import timestamp
from shared.alerts.values import Keys, as_list, ci_get, number, text

QUERY_CAP = 1024

V1_CONTEXT = Keys(
    "SearchQuery",
    "SearchIntervalStartTimeUtc",
    "SearchIntervalEndtimeUtc",
    "ResultCount",
    "LinkToSearchResults",
    "LinkToSearchResultsUI",
    "LinkToFilteredSearchResultsUI",
    "LinkToSearchResultsAPI",
    "LinkToFilteredSearchResultsAPI",
    "SeverityDescription",
    "WorkspaceId",
    "ApplicationId",
    "SearchIntervalDurationMin",
    "SearchIntervalInMinutes",
    "AffectedConfigurationItems",
    "AlertType",
    "IncludeSearchResults",
    "IncludedSearchResults",
    "Dimensions",
    "SearchResults",
    "Threshold",
    "Operator",
    "MetricValue",
)
V1_LINKS = (  # most useful first: the filtered UI view shows just the rows that fired
    "LinkToFilteredSearchResultsUI",
    "LinkToSearchResultsUI",
    "LinkToSearchResults",
    "LinkToFilteredSearchResultsAPI",
    "LinkToSearchResultsAPI",
)

V2_CONTEXT = Keys("properties", "conditionType", "condition")
V2_CONDITION = Keys("windowSize", "allOf", "windowStartTime", "windowEndTime")
V2_CRITERION = Keys(
    "searchQuery",
    "metricMeasureColumn",
    "targetResourceTypes",
    "operator",
    "threshold",
    "timeAggregation",
    "dimensions",
    "metricValue",
    "failingPeriods",
    "linkToSearchResultsUI",
    "linkToFilteredSearchResultsUI",
    "linkToSearchResultsAPI",
    "linkToFilteredSearchResultsAPI",
    "event",
)
V2_LINKS = (
    "linkToFilteredSearchResultsUI",
    "linkToSearchResultsUI",
    "linkToFilteredSearchResultsAPI",
    "linkToSearchResultsAPI",
)


def build_v1(raw: dict[str, Any]) -> Extract:
    ctx = V1_CONTEXT.view(raw)
    alert_type = text(ctx.get("AlertType"), 64)
    operator = text(ctx.get("Operator"), 32)
    threshold = number(ctx.get("Threshold"))
    result_count = number(ctx.get("ResultCount"))
    query = text(ctx.get("SearchQuery"), QUERY_CAP)
    metric_value = number(ctx.get("MetricValue"))
    if metric_value is None and alert_type is not None and "measurement" in alert_type.lower():
        metric_value = _aggregated_value(ctx.get("SearchResults"), operator_symbol(operator))
    window = ctx.get("SearchIntervalInMinutes")
    fields = {
        "alertType": alert_type,
        "searchQuery": query,
        "resultCount": result_count,
        "operator": operator,
        "threshold": threshold,
        "metricValue": metric_value,
        "windowStart": moment(ctx.get("SearchIntervalStartTimeUtc")),
        "windowEnd": moment(ctx.get("SearchIntervalEndtimeUtc")),
        "windowMinutes": number(
            window if window is not None else ctx.get("SearchIntervalDurationMin")
        ),
        "severityDescription": text(ctx.get("SeverityDescription"), 64),
        "workspaceId": text(ctx.get("WorkspaceId"), 128),
        "applicationId": text(ctx.get("ApplicationId"), 128),
        "dimensions": Dimensions().read(ctx.get("Dimensions")),
    }
    title = f"{alert_type or 'Log search'}: {show(result_count)} result"
    if result_count != 1:
        title += "s"
    title += f", threshold {operator_symbol(operator) or operator or '?'} {show(threshold)}"
    if metric_value is not None:
        title += f", value {show(metric_value)}"
    if query:
        title += f" - {one_line(query)}"
    # The alert's own CI is named by its dimensions and AffectedConfigurationItems; the
    # search result rows cover the whole query (other computers too, when the rule splits
    # by dimension), so they are only a fallback.
    ci_values: list[object] = [log_dimension_value(ctx.get("Dimensions"))]
    affected = ctx.get("AffectedConfigurationItems")
    ci_values += affected if isinstance(affected, list) else [affected]
    if not any(v is not None and v != "" for v in ci_values):
        ci_values = search_result_values(ctx.get("SearchResults"))
    return Extract(
        "logV1",
        title,
        fields,
        search_links=links.search_links([ctx], V1_LINKS),
        ci_values=ci_values,
    )


def _aggregated_value(search_results: object, symbol: str | None) -> int | float | None:
    """V1 metric measurement sends no value: take the most extreme `AggregatedValue` of
    the included results in the operator's direction (the one that breached most)."""
    if not isinstance(search_results, dict):
        return None
    values: list[int | float] = []
    for table in as_list(ci_get(search_results, "tables"))[:5]:
        if not isinstance(table, dict):
            continue
        columns = [
            name.lower() if isinstance(name, str) else ""
            for name in (
                ci_get(c, "name") if isinstance(c, dict) else None
                for c in as_list(ci_get(table, "columns"))
            )
        ]
        if "aggregatedvalue" not in columns:
            continue
        index = columns.index("aggregatedvalue")
        for row in as_list(ci_get(table, "rows"))[:200]:
            if isinstance(row, list) and index < len(row):
                v = number(row[index])
                if isinstance(v, int | float):
                    values.append(v)
    if not values:
        return None
    if symbol in (">", ">="):
        return max(values)
    if symbol in ("<", "<="):
        return min(values)
    return values[0]


def _criteria(
    raw: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], int]:
    """The context, its condition, the first allOf entries and how many were left out."""
    ctx = V2_CONTEXT.view(raw)
    condition = V2_CONDITION.of(ctx.get("condition")) or {}
    all_of = condition.get("allOf")
    all_of = all_of if isinstance(all_of, list) else []
    criteria = [c for c in map(V2_CRITERION.of, all_of[:MAX_CONDITIONS]) if c is not None]
    return ctx, condition, criteria, max(0, len(all_of) - MAX_CONDITIONS)


def build_v2(raw: dict[str, Any]) -> Extract:
    ctx, condition, criteria, omitted = _criteria(raw)
    conditions: list[dict[str, Any]] = []
    ci_values: list[object] = []
    titles: list[str] = []
    dims = Dimensions()
    for c in criteria:
        query = text(c.get("searchQuery"), QUERY_CAP)
        item: dict[str, Any] = {
            "searchQuery": query,
            "metricMeasureColumn": text(c.get("metricMeasureColumn"), 128),
            "targetResourceTypes": text(c.get("targetResourceTypes"), 256),
            "operator": text(c.get("operator"), 32),
            "threshold": number(c.get("threshold")),
            "timeAggregation": text(c.get("timeAggregation"), 32),
            "metricValue": number(c.get("metricValue")),
            "dimensions": dims.read(c.get("dimensions")),
            "failingPeriods": failing_periods(c.get("failingPeriods")),
        }
        conditions.append(item)
        ci_values.append(log_dimension_value(c.get("dimensions")))
        op = item["operator"]
        title = (
            f"Log query {item['timeAggregation'] or 'result'} "
            f"{operator_symbol(op) or op or '?'} {show(item['threshold'])}"
        )
        if item["metricValue"] is not None:
            title += f", value {show(item['metricValue'])}"
        if query:
            title += f" - {one_line(query)}"
        titles.append(title)
    fields: dict[str, Any] = {
        "conditionType": text(ctx.get("conditionType"), 64),
        "windowSize": text(condition.get("windowSize"), 32),
        "windowStart": timestamp(condition.get("windowStartTime")),
        "windowEnd": timestamp(condition.get("windowEndTime")),
        "conditions": conditions,
    }
    if omitted:
        fields["conditionsOmitted"] = omitted
    return Extract(
        "logV2",
        "; ".join(titles) or None,
        fields,
        search_links=links.search_links(criteria, V2_LINKS),
        ci_values=ci_values,
    )


def build_simple(raw: dict[str, Any]) -> Extract:
    """Simple log alerts fire per log record: the record itself is the interesting part."""
    _, _, criteria, _ = _criteria(raw)
    first = criteria[0] if criteria else {}
    query = text(first.get("searchQuery"), QUERY_CAP)
    events = as_list(first.get("event"))
    fields = {
        "searchQuery": query,
        "metricValue": number(first.get("metricValue")),
        "record": Dimensions().read(events[0]) if events else {},  # [{name, value}, ...]
        "recordCount": len(events),
    }
    title = "Log record matched"
    if query:
        title += f" - {one_line(query)}"
    return Extract(
        "simpleLog",
        title,
        fields,
        search_links=links.search_links(criteria, V2_LINKS),
        ci_values=[log_dimension_value(c.get("dimensions")) for c in criteria],
    )
