"""Normalized alerts (the queue message contract) for work item tests and benchmarks.

    fired("a1", at=10)                       # Fired at BASE + 10 minutes
    resolved("a1", fired=10, at=25)          # its Resolved (metric: has resolvedAt)
    resolved("a1", fired=10, at=None)        # a log alert's Resolved: no resolvedAt
    service_health("TRK-1", "Active", at=5)  # Service Health update
    resource_health("Unavailable", at=5)     # Resource Health event

Times are minutes after BASE (floats allowed); every alert gets a fresh correlation id
and a receive time shortly after its event time, like real deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
BASE = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
VM = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/RG-Web"
    "/providers/Microsoft.Compute/virtualMachines/vm-web-01"
)
RULE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-monitor"
    "/providers/microsoft.insights/metricAlerts/cpu-high"
)


def at(minutes: float) -> str:
    """The normalized timestamp `minutes` after BASE."""
    dt = BASE + timedelta(minutes=minutes)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"
        f"{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
    )


def ci(value: str) -> dict[str, Any]:
    """A CI as the normalizer emits it, for an ARM resource id or a plain name."""
    parts = value.split("/")
    if value.lower().startswith("/subscriptions/") and len(parts) >= 9:
        return {
            "key": value.lower(),
            "display": value,
            "kind": "azureResource",
            "subscriptionId": parts[2].lower(),
            "resourceGroup": parts[4],
            "provider": parts[6],
            "resourceType": f"{parts[6]}/{parts[7]}",
            "name": parts[-1],
        }
    return {
        "key": value.lower(),
        "display": value,
        "kind": "name",
        "subscriptionId": None,
        "resourceGroup": None,
        "provider": None,
        "resourceType": None,
        "name": value,
    }


def alert(
    name: str,
    condition: str = "Fired",
    *,
    fired: float | None = 0,
    resolved_at: float | None = None,
    rule: str = "CPU above 90%",
    rule_id: str | None = RULE_ID,
    cis: Iterable[str] = (VM,),
    severity: str | None = "Sev2",
    service: str = "Platform",
    signal_type: str | None = "Metric",
    custom: Mapping[str, Any] | None = None,
    lifecycle: Mapping[str, Any] | None = None,
    description: str = "CPU percentage above 90 for 5 minutes",
    received: float | None = None,
    occurred: float | None = None,
    schema_version: str = "1.0",
    **extra: Any,
) -> dict[str, Any]:
    """One normalized alert; `name` names the alert instance (Fired/Resolved share it)."""
    fired_at = None if fired is None else at(fired)
    resolved = None if resolved_at is None else at(resolved_at)
    event_minutes = (
        resolved_at if condition == "Resolved" else (occurred if occurred is not None else fired)
    )
    if received is None:
        received = (event_minutes if event_minutes is not None else 0) + 0.05
    occurred_at = (
        resolved if condition == "Resolved" else at(occurred) if occurred is not None else fired_at
    )
    items = [ci(c) for c in cis]
    return {
        "schemaVersion": schema_version,
        "correlationId": str(uuid.uuid4()),
        "receivedAt": at(received),
        "tenantId": TENANT,
        "alertId": alert_id(name),
        "originAlertId": name,
        "alertRule": rule,
        "alertRuleId": rule_id,
        "subscriptionId": SUBSCRIPTION,
        "monitorCondition": condition,
        "firedAt": fired_at,
        "resolvedAt": resolved,
        "occurredAt": occurred_at,
        "severity": severity,
        "signalType": signal_type,
        "monitoringService": service,
        "description": description,
        "targetResourceType": items[0]["resourceType"] if items else None,
        "targetResourceGroup": items[0]["resourceGroup"] if items else None,
        "configurationItems": items,
        "configurationItemsOmitted": 0,
        "summary": {"type": "metric", "title": f"{rule} ({condition})", "fields": {}},
        "lifecycle": dict(lifecycle) if lifecycle is not None else None,
        "links": {"investigation": None, "portal": None, "searchResults": []},
        "customProperties": dict(custom) if custom is not None else None,
        **extra,
    }


def fired(name: str, at_minutes: float = 0, **kwargs: Any) -> dict[str, Any]:
    return alert(name, "Fired", fired=at_minutes, **kwargs)


def resolved(
    name: str, fired_minutes: float = 0, at_minutes: float | None = 10, **kwargs: Any
) -> dict[str, Any]:
    """A Resolved; `at_minutes=None` is a log alert's (no resolvedAt), received `received`."""
    return alert(name, "Resolved", fired=fired_minutes, resolved_at=at_minutes, **kwargs)


def service_health(
    tracking_id: str, stage: str, at_minutes: float, **kwargs: Any
) -> dict[str, Any]:
    """A Service Health update: its own alert instance, always Fired, the stage in lifecycle."""
    kwargs.setdefault("cis", ())
    return alert(
        f"sh-{tracking_id}-{stage}-{at_minutes}",
        "Fired",
        fired=at_minutes,
        rule="Service issues in West Europe",
        rule_id="/subscriptions/x/providers/microsoft.insights/activityLogAlerts/service-health",
        severity="Sev4",
        service="ServiceHealth",
        signal_type="ActivityLog",
        lifecycle={"kind": "serviceHealth", "trackingId": tracking_id, "stage": stage},
        **kwargs,
    )


def resource_health(
    status: str, at_minutes: float, resource: str = VM, previous: str = "Available", **kwargs: Any
) -> dict[str, Any]:
    """A Resource Health event: its own alert instance, always Fired, the status in lifecycle."""
    return alert(
        f"rh-{resource}-{status}-{at_minutes}",
        "Fired",
        fired=at_minutes,
        rule="VM health",
        rule_id="/subscriptions/x/providers/microsoft.insights/activityLogAlerts/vm-health",
        severity="Sev1",
        service="Resource Health",
        signal_type="ActivityLog",
        cis=(resource,),
        lifecycle={
            "kind": "resourceHealth",
            "currentHealthStatus": status,
            "previousHealthStatus": previous,
        },
        **kwargs,
    )


def redelivered(original: Mapping[str, Any], after_minutes: float = 0.2) -> dict[str, Any]:
    """Another copy of an alert (a retry or a second action group): new delivery fields."""
    received = datetime.strptime(original["receivedAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=UTC
    )
    copy = dict(original)
    copy["correlationId"] = str(uuid.uuid4())
    copy["receivedAt"] = (received + timedelta(minutes=after_minutes)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return copy


def metric_alert_payload(
    n: int,
    condition: str,
    *,
    vm: int,
    rule: int,
    fired: str,
    resolved: str | None,
    subscription: str,
    id_prefix: str,
) -> dict[str, Any]:
    """A raw common-schema metric alert (the shape of Microsoft's published sample), as
    Azure Monitor POSTs it; `n` and `id_prefix` make its alert id."""
    target = (
        f"/subscriptions/{subscription}/resourceGroups/rg-storm/providers/"
        f"Microsoft.Compute/virtualMachines/vm-{vm:04d}"
    )
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/"
        f"{uuid.uuid5(uuid.NAMESPACE_OID, f'{id_prefix}-{n}')}",
        "alertRule": f"cpu-rule-{rule:02d}",
        "alertRuleID": f"/subscriptions/{subscription}/resourceGroups/rg-monitor/providers/"
        f"microsoft.insights/metricAlerts/cpu-rule-{rule:02d}",
        "severity": f"Sev{rule % 5}",
        "signalType": "Metric",
        "monitorCondition": condition,
        "monitoringService": "Platform",
        "alertTargetIDs": [target.lower()],
        "configurationItems": [f"vm-{vm:04d}"],
        "originAlertId": f"storm-{n}",
        "firedDateTime": fired,
        "description": "CPU above 90% for 5 minutes",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if resolved is not None:
        essentials["resolvedDateTime"] = resolved
    context = {
        "properties": None,
        "conditionType": "SingleResourceMultipleMetricCriteria",
        "condition": {
            "windowSize": "PT5M",
            "allOf": [
                {
                    "metricName": "Percentage CPU",
                    "metricNamespace": "Microsoft.Compute/virtualMachines",
                    "operator": "GreaterThan",
                    "threshold": "90",
                    "timeAggregation": "Average",
                    "dimensions": [],
                    "metricValue": 97.5 if condition == "Fired" else 42.0,
                }
            ],
            "windowStartTime": fired,
            "windowEndTime": resolved or fired,
        },
    }
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": context, "customProperties": None},
    }
