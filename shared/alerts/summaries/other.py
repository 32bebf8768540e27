"""Smart detector, Prometheus, budget (CostAlerts) and unknown services."""

from __future__ import annotations

from typing import Any

from shared.alerts.summaries.common import FREE_FORM_BUDGET, Extract, moment, one_line, show
from shared.alerts.values import Budget, Keys, ci_get, number, text

SMART_DETECTOR = Keys(
    "DetectionSummary",
    "FormattedOccurrenceTime",
    "DetectedValue",
    "NormalValue",
    "PresentationInsightEventRequest",
    "SmartDetectorId",
    "SmartDetectorName",
    "AnalysisTimestamp",
)
PROMETHEUS = Keys(
    "interval", "expression", "expressionValue", "for", "labels", "annotations", "ruleGroup"
)
BUDGET_CONTEXT = Keys("AlertCategory", "AlertData")
BUDGET_DATA = Keys(
    "Scope",
    "ThresholdType",
    "BudgetType",
    "BudgetThreshold",
    "NotificationThresholdAmount",
    "BudgetName",
    "BudgetId",
    "BudgetStartDate",
    "BudgetCreator",
    "Unit",
    "SpentAmount",
    "ForecastedTotalForPeriod",
)


def build_smart_detector(raw: dict[str, Any]) -> Extract:
    ctx = SMART_DETECTOR.view(raw)
    fields = {
        "detectorId": text(ctx.get("SmartDetectorId"), 128),
        "detectorName": text(ctx.get("SmartDetectorName"), 256),
        "detectionSummary": text(ctx.get("DetectionSummary"), 512),
        "detectedValue": text(ctx.get("DetectedValue"), 128),
        "normalValue": text(ctx.get("NormalValue"), 128),
        "occurrenceTime": moment(ctx.get("FormattedOccurrenceTime")),
        "analysisTimestamp": moment(ctx.get("AnalysisTimestamp")),
    }
    title = one_line(fields["detectionSummary"] or fields["detectorName"], 160) or "Smart detection"
    if fields["detectedValue"] is not None:
        title += f" (detected {fields['detectedValue']}"
        if fields["normalValue"] is not None:
            title += f", normal {fields['normalValue']}"
        title += ")"
    return Extract("smartDetector", title, fields)


def build_prometheus(raw: dict[str, Any]) -> Extract:
    ctx = PROMETHEUS.view(raw)
    b = Budget(FREE_FORM_BUDGET)
    labels = ctx.get("labels")
    annotations = ctx.get("annotations")
    fields = {
        "expression": text(ctx.get("expression"), 1024),
        "expressionValue": number(ctx.get("expressionValue")),
        "interval": text(ctx.get("interval"), 32),
        "for": text(ctx.get("for"), 32),
        "labels": b.copy(labels, depth=1, max_items=20) if isinstance(labels, dict) else {},
        "annotations": b.copy(annotations, depth=1, max_items=10, cap=512)
        if isinstance(annotations, dict)
        else {},
        "ruleGroup": text(ctx.get("ruleGroup"), 512),
    }
    headline = None
    if isinstance(annotations, dict):
        headline = ci_get(annotations, "summary") or ci_get(annotations, "description")
    if not headline and isinstance(labels, dict):
        headline = ci_get(labels, "alertname")
    title = one_line(text(headline, 256) or fields["expression"], 160) or "Prometheus alert"
    if fields["expressionValue"] is not None:
        title += f" (value {show(fields['expressionValue'])})"
    return Extract("prometheus", title, fields)


def build_budget(raw: dict[str, Any]) -> Extract:
    ctx = BUDGET_CONTEXT.view(raw)
    data = BUDGET_DATA.of(ctx.get("AlertData")) or {}
    fields = {
        "budgetName": text(data.get("BudgetName"), 256),
        "budgetType": text(data.get("BudgetType"), 64),
        "thresholdType": text(data.get("ThresholdType"), 64),
        "budgetAmount": text(data.get("BudgetThreshold"), 64),
        "notificationThreshold": text(data.get("NotificationThresholdAmount"), 64),
        "spentAmount": text(data.get("SpentAmount"), 64),
        "forecastedTotal": text(data.get("ForecastedTotalForPeriod"), 64),
        "unit": text(data.get("Unit"), 16),
        "budgetStartDate": text(data.get("BudgetStartDate"), 64),
        "scope": text(data.get("Scope"), 512),
        "budgetId": text(data.get("BudgetId"), 512),
        "budgetCreator": text(data.get("BudgetCreator"), 256),
        "alertCategory": text(ctx.get("AlertCategory"), 64),
    }
    title = f"Budget {fields['budgetName'] or '?'}: "
    if (fields["thresholdType"] or "").lower() == "forecasted":
        title += f"forecast {fields['forecastedTotal'] or '?'}"
    else:
        title += f"spent {fields['spentAmount'] or '?'}"
    title += f" of {fields['budgetAmount'] or '?'}"
    if fields["notificationThreshold"] is not None:
        title += f" (alert at {fields['notificationThreshold']})"
    return Extract("budget", title, fields)


def build_generic(raw: dict[str, Any]) -> Extract:
    """Unknown services are never rejected: keep the context's top-level scalars."""
    return Extract("generic", None, Budget(FREE_FORM_BUDGET).scalars(raw, max_items=30, cap=256))
