"""Metric alerts (monitoringService `Platform`): static, dynamic and availability tests."""

from __future__ import annotations

from typing import Any

from shared.alerts.configuration_items import metric_dimension_value
from shared.alerts.enums import operator_symbol
from shared.alerts.summaries.common import (
    MAX_CONDITIONS,
    Dimensions,
    Extract,
    failing_periods,
    moment,
    show,
)
from shared.alerts.timestamps import timestamp
from shared.alerts.values import Keys, number, text

CONTEXT = Keys("properties", "conditionType", "condition")
CONDITION = Keys("windowSize", "allOf", "windowStartTime", "windowEndTime")
CRITERION = Keys(
    "metricName",
    "metricNamespace",
    "operator",
    "threshold",
    "timeAggregation",
    "dimensions",
    "metricValue",
    "webTestName",
    "alertSensitivity",
    "failingPeriods",
    "ignoreDataBefore",
)


def build(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    condition = CONDITION.of(ctx.get("condition")) or {}
    all_of = condition.get("allOf")
    all_of = all_of if isinstance(all_of, list) else []
    conditions: list[dict[str, Any]] = []
    titles: list[str] = []
    dims = Dimensions()
    ci_values: list[object] = []
    for item in all_of[:MAX_CONDITIONS]:
        c = CRITERION.of(item)
        if c is None:
            continue
        dimensions = c.get("dimensions")
        if dimensions:
            ci = metric_dimension_value(dimensions)
            if ci is not None:
                ci_values.append(ci)
        criterion = {
            "metricName": text(c.get("metricName"), 128),
            "metricNamespace": text(c.get("metricNamespace"), 128),
            "operator": text(c.get("operator"), 32),
            "threshold": number(c.get("threshold")),
            "timeAggregation": text(c.get("timeAggregation"), 32),
            "metricValue": number(c.get("metricValue")),
            "dimensions": dims.read(dimensions),
            "webTestName": text(c.get("webTestName"), 128),
            "alertSensitivity": text(c.get("alertSensitivity"), 32),
            "failingPeriods": failing_periods(c.get("failingPeriods")),
            "ignoreDataBefore": moment(c.get("ignoreDataBefore")),
        }
        conditions.append(criterion)
        titles.append(_title(criterion))
    fields: dict[str, Any] = {
        "conditionType": text(ctx.get("conditionType"), 64),
        "windowSize": text(condition.get("windowSize"), 32),
        "windowStart": timestamp(condition.get("windowStartTime")),
        "windowEnd": timestamp(condition.get("windowEndTime")),
        "conditions": conditions,
    }
    if len(all_of) > MAX_CONDITIONS:
        fields["conditionsOmitted"] = len(all_of) - MAX_CONDITIONS
    return Extract("metric", "; ".join(titles) or None, fields, ci_values=ci_values)


def _title(c: dict[str, Any]) -> str:
    op = c["operator"]
    head = (
        f"{c['metricName'] or 'Metric'} {operator_symbol(op) or op or '?'} {show(c['threshold'])}"
    )
    if c["alertSensitivity"] is not None:
        head += f" (dynamic, {c['alertSensitivity']} sensitivity)"
    if c["metricValue"] is not None:
        head += f", value {show(c['metricValue'])}"
    if c["webTestName"] is not None:
        head = f"{c['webTestName']}: {head}"
    return head
