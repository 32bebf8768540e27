"""Per-type summaries of `alertContext`: pick the builder by `monitoringService`.

The service decides; when it is missing or unknown, the context's shape does (a new
service may reuse a known context). Unknown shapes get the generic summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.alerts.summaries import activity_log, logs, metric, other
from shared.alerts.summaries.common import TITLE_CAP, Extract
from shared.alerts.values import lower_keys, plain, text

__all__ = ["STATELESS_TYPES", "SUMMARY_TYPES", "Extract", "headline", "never_resolves", "summarize"]

Builder = Callable[[dict[str, Any]], Extract]

# monitoringService, lowercased without spaces and punctuation.
_BY_SERVICE: dict[str, Builder] = {
    "platform": metric.build,
    "loganalytics": logs.build_v1,
    "applicationinsights": logs.build_v1,
    "logalertsv2": logs.build_v2,
    "simplelogalert": logs.build_simple,
    "activitylogadministrative": activity_log.build_administrative,
    "activitylogpolicy": activity_log.build_policy,
    "activitylogautoscale": activity_log.build_autoscale,
    "activitylogsecurity": activity_log.build_security,
    "activitylogrecommendation": activity_log.build_recommendation,
    "servicehealth": activity_log.build_service_health,
    "activitylogservicehealth": activity_log.build_service_health,
    "resourcehealth": activity_log.build_resource_health,
    "activitylogresourcehealth": activity_log.build_resource_health,
    "smartdetector": other.build_smart_detector,
    "prometheus": other.build_prometheus,
    "costalerts": other.build_budget,
    "budget": other.build_budget,
    "budgets": other.build_budget,
}
# The spellings Azure sends, looked up before any string work.
_EXACT: dict[str, Builder] = {
    "Platform": metric.build,
    "Log Analytics": logs.build_v1,
    "Application Insights": logs.build_v1,
    "Log Alerts V2": logs.build_v2,
    "Simple Log Alert": logs.build_simple,
    "Activity Log - Administrative": activity_log.build_administrative,
    "Activity Log - Policy": activity_log.build_policy,
    "Activity Log - Autoscale": activity_log.build_autoscale,
    "Activity Log - Security": activity_log.build_security,
    "Activity Log - Recommendation": activity_log.build_recommendation,
    "ServiceHealth": activity_log.build_service_health,
    "Resource Health": activity_log.build_resource_health,
    "SmartDetector": other.build_smart_detector,
    "Prometheus": other.build_prometheus,
    "CostAlerts": other.build_budget,
}

# Activity log events name their family in `eventSource`.
_BY_EVENT_SOURCE: dict[str, Builder] = {
    "administrative": activity_log.build_administrative,
    "policy": activity_log.build_policy,
    "autoscale": activity_log.build_autoscale,
    "security": activity_log.build_security,
    "recommendation": activity_log.build_recommendation,
    "servicehealth": activity_log.build_service_health,
    "resourcehealth": activity_log.build_resource_health,
}

SUMMARY_TYPES = (
    "metric",
    "logV1",
    "logV2",
    "simpleLog",
    "activityLog",
    "autoscale",
    "security",
    "recommendation",
    "policy",
    "serviceHealth",
    "resourceHealth",
    "smartDetector",
    "prometheus",
    "budget",
    "generic",
)

# Types whose services never send a Resolved: each delivery is one event, always Fired.
STATELESS_TYPES = frozenset(
    (
        "activityLog",
        "autoscale",
        "security",
        "recommendation",
        "policy",
        "serviceHealth",
        "resourceHealth",
        "smartDetector",
        "budget",
    )
)
_STATELESS_BUILDERS = frozenset(
    (
        *_BY_EVENT_SOURCE.values(),
        activity_log.build_recommendation,
        other.build_smart_detector,
        other.build_budget,
    )
)


def _squash(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


def _by_service(service: str) -> Builder | None:
    builder = _EXACT.get(service)
    if builder is None:
        key = _squash(service)
        builder = _BY_SERVICE.get(key)
        if builder is None and key.startswith("activitylog"):
            builder = _BY_EVENT_SOURCE.get(key[11:], activity_log.build_administrative)
    return builder


def _by_shape(raw: dict[str, Any]) -> Builder | None:
    ctx = lower_keys(raw)
    condition = ctx.get("condition")
    if isinstance(condition, dict):
        condition_type = ctx.get("conditiontype")
        if isinstance(condition_type, str) and condition_type.lower() == "logquerycriteria":
            return logs.build_v2
        return metric.build
    if "searchquery" in ctx:
        return logs.build_v1
    if "alertdata" in ctx or ctx.get("alertcategory") == "budgets":
        return other.build_budget
    if "smartdetectorid" in ctx or "detectionsummary" in ctx:
        return other.build_smart_detector
    if "expression" in ctx and ("rulegroup" in ctx or "labels" in ctx):
        return other.build_prometheus
    if "operationname" in ctx:
        source = ctx.get("eventsource")
        family: Builder | None = None
        if isinstance(source, str):
            family = _BY_EVENT_SOURCE.get(_squash(source))
        return family or activity_log.build_administrative
    return None


def summarize(service: str | None, context: object) -> Extract:
    """The summary of `alertContext` for `monitoringService`; never raises on JSON input."""
    if not isinstance(context, dict):
        return Extract("generic", None, {})
    builder = _by_service(service) if service is not None else None
    if builder is None:
        builder = _by_shape(context) or other.build_generic
    return builder(context)


def never_resolves(service: str | None, summary_type: str) -> bool:
    """True for alerts of a stateless service (budgets, activity log, Service Health,
    Resource Health, smart detection): by the summary built, else by the service alone (a
    budget whose alertContext is missing is still a budget)."""
    if summary_type in STATELESS_TYPES:
        return True
    if service is None:
        return False
    return _by_service(service) in _STATELESS_BUILDERS


def headline(title: str | None, alert_rule: str | None, service: str | None) -> str:
    """A one-line title of at most TITLE_CAP characters, never empty: the summary's own,
    else the alert rule, else "<service> alert"."""
    if title and len(title) <= TITLE_CAP and plain(title):  # the usual case
        return title
    for candidate in (title, alert_rule, service and f"{service} alert"):
        if candidate:
            if len(candidate) <= TITLE_CAP and plain(candidate):
                return candidate
            line = text(" ".join(candidate.split()), TITLE_CAP)
            if line:
                return line
    return "Azure Monitor alert"
