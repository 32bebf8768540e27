"""Alerts as they arrive in the field (issue 19): payload shapes seen in real deliveries
that the published samples do not show. Each fixture is built here, in the shape Azure
sends it; none is a copy of a published sample.

1. Stateless services (budgets, activity log, Service Health, Resource Health, smart
   detection) can send a null `monitorCondition`: accepted as Fired, never a 400 (Azure
   Monitor does not retry a 4xx, so the alert would be lost).
2. Metric alert dimensions that name a resource or a host become CIs.
3. The work item title names the primary target, not the first CI by key.
4. A child resource's display name keeps its parent (`vmss/212`).
5. A Resource Health event titled "Unknown" (or nothing) is named by its type or cause.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.alert_events import event_from_alert
from shared.alerts import SchemaError, normalize, parse_payload
from shared.workitem_rows import title
from tests.harness import FunctionsHost
from tests.test_alerts_http import _queue_is_empty, _queued, post_alert
from tests.tokens import Mint

SUB = "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-ops"
WORKSPACE = f"{RG}/providers/Microsoft.OperationalInsights/workspaces/law-ops"
AKS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-prod-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
AMW = f"/subscriptions/{SUB}/resourceGroups/rg-amw/providers/Microsoft.Monitor/accounts/amw-ops"
VMSS_INSTANCE = (
    f"{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/vmss-web/virtualMachines/212"
)
VM = f"{RG}/providers/Microsoft.Compute/virtualMachines/vm-app-01"
RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def envelope(essentials: dict[str, Any], context: object) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/field-1",
        "alertRule": "field-rule",
        "severity": "Sev2",
        "signalType": "Metric",
        "monitorCondition": "Fired",
        "monitoringService": "Platform",
        "alertTargetIDs": [VM],
        "configurationItems": ["vm-app-01"],
        "originAlertId": "origin-field-1",
        "firedDateTime": "2026-01-02T03:00:00.1234567Z",
        "description": "",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    base.update(essentials)
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": base, "alertContext": context, "customProperties": None},
    }


def run(payload: dict[str, Any]) -> dict[str, Any]:
    return normalize(
        parse_payload(json.dumps(payload).encode()),
        tenant_id="tenant",
        correlation_id="corr",
        received_at=RECEIVED_AT,
    )


def work_item_title(alert: dict[str, Any], mode: str = "alert") -> str:
    return title(alert, event_from_alert(alert, mode))


# --- 1. a null condition from a stateless service is Fired ---------------------------------

BUDGET_CONTEXT = {
    "AlertCategory": "budgets",
    "AlertData": {
        "Scope": f"/subscriptions/{SUB}/",
        "ThresholdType": "Actual",
        "BudgetType": "Cost",
        "BudgetThreshold": "$1,000.00",
        "NotificationThresholdAmount": "$800.00",
        "BudgetName": "ops-monthly",
        "BudgetId": f"/subscriptions/{SUB}/providers/Microsoft.Consumption/budgets/ops-monthly",
        "BudgetStartDate": "2026-01-01",
        "BudgetCreator": "ops@example.com",
        "Unit": "USD",
        "SpentAmount": "$812.40",
    },
}


def budget(**essentials: Any) -> dict[str, Any]:
    """A CostAlerts delivery as it arrives: null condition, rule, severity, signal, targets."""
    return envelope(
        {
            "alertId": f"/subscriptions/{SUB}/providers/Microsoft.CostManagement/alerts/ops-1",
            "alertRule": None,
            "severity": None,
            "signalType": None,
            "monitorCondition": None,
            "monitoringService": "CostAlerts",
            "alertTargetIDs": None,
            "configurationItems": ["budgets"],
            "originAlertId": None,
            "firedDateTime": "2026-01-02T02:59:00.000Z",
            **essentials,
        },
        BUDGET_CONTEXT,
    )


ACTIVITY_CONTEXT = {
    "eventSource": "Administrative",
    "operationName": "Microsoft.Compute/virtualMachines/delete",
    "status": "Succeeded",
    "eventTimestamp": "2026-01-02T02:58:00.000+00:00",
}
RESOURCE_HEALTH_CONTEXT = {
    "eventSource": "ResourceHealth",
    "operationName": "Microsoft.Resourcehealth/healthevent/Activated/action",
    "status": "Active",
    "eventTimestamp": "2026-01-02T02:58:00.000+00:00",
    "properties": {
        "title": "Unknown",
        "details": None,
        "currentHealthStatus": "Unavailable",
        "previousHealthStatus": "Available",
        "type": "Downtime",
        "cause": "PlatformInitiated",
    },
}
SERVICE_HEALTH_CONTEXT = {
    "eventSource": "ServiceHealth",
    "operationName": "Microsoft.ServiceHealth/incident/action",
    "properties": {"title": "Storage incident", "trackingId": "ABCD-123", "stage": "Active"},
}
SMART_CONTEXT = {"DetectionSummary": "Failure anomalies", "SmartDetectorName": "Failure Anomalies"}

STATELESS = {
    "CostAlerts": BUDGET_CONTEXT,
    "Activity Log - Administrative": ACTIVITY_CONTEXT,
    "Activity Log - Policy": ACTIVITY_CONTEXT,
    "ServiceHealth": SERVICE_HEALTH_CONTEXT,
    "Resource Health": RESOURCE_HEALTH_CONTEXT,
    "SmartDetector": SMART_CONTEXT,
}


def test_budget_with_null_condition_and_null_essentials_is_accepted_as_fired() -> None:
    alert = run(budget())
    assert alert["monitorCondition"] == "Fired"
    assert (alert["alertRule"], alert["severity"], alert["signalType"]) == (None, None, None)
    assert alert["originAlertId"] is None
    assert [ci["key"] for ci in alert["configurationItems"]] == ["budgets"]
    assert alert["summary"]["type"] == "budget"
    assert alert["occurredAt"] == "2026-01-02T02:59:00.000000Z"
    assert work_item_title(alert).startswith("Budget ops-monthly: spent $812.40 of $1,000.00")


@pytest.mark.parametrize("service", sorted(STATELESS))
@pytest.mark.parametrize("condition", [None, "", "  ", "absent"])
def test_stateless_services_without_a_condition_are_fired(service: str, condition: Any) -> None:
    payload = envelope({"monitoringService": service}, STATELESS[service])
    essentials = payload["data"]["essentials"]
    if condition == "absent":
        del essentials["monitorCondition"]
    else:
        essentials["monitorCondition"] = condition
    assert run(payload)["monitorCondition"] == "Fired"


def test_a_stateless_context_without_a_service_is_fired() -> None:
    payload = budget(monitoringService=None)
    assert run(payload)["monitorCondition"] == "Fired"
    # ...and a known stateless service whose context is missing altogether
    payload = budget()
    payload["data"]["alertContext"] = None
    assert run(payload)["monitorCondition"] == "Fired"


def test_a_stateless_service_still_reports_resolved_and_rejects_junk() -> None:
    assert run(budget(monitorCondition="resolved"))["monitorCondition"] == "Resolved"
    with pytest.raises(SchemaError) as caught:
        run(budget(monitorCondition="Activated"))
    assert (caught.value.code, caught.value.field) == (
        "invalid_field",
        "data.essentials.monitorCondition",
    )


@pytest.mark.parametrize(
    ("service", "context"),
    [
        ("Platform", {"condition": {"allOf": []}}),
        ("Log Alerts V2", {"conditionType": "LogQueryCriteria", "condition": {"allOf": []}}),
        ("Prometheus", {"expression": "up == 0", "labels": {}}),
        ("Some New Service", {"anything": 1}),
        (None, None),
    ],
)
def test_stateful_services_without_a_condition_are_still_a_400(
    service: str | None, context: object
) -> None:
    """Fired or Resolved matters for these: guessing would open or close the wrong item."""
    payload = envelope({"monitoringService": service, "monitorCondition": None}, context)
    with pytest.raises(SchemaError) as caught:
        run(payload)
    assert (caught.value.code, caught.value.field) == (
        "missing_field",
        "data.essentials.monitorCondition",
    )


def test_budget_with_null_condition_is_queued_over_http(
    host: FunctionsHost, storage: str, mint: Mint
) -> None:
    status, answer = post_alert(host, mint(), json.dumps(budget()).encode())
    assert status == 202, answer
    alert = _queued(storage).alert
    assert alert["monitorCondition"] == "Fired"
    assert alert["summary"]["type"] == "budget"


def test_stateful_alert_with_null_condition_is_a_400_over_http(
    host: FunctionsHost, storage: str, mint: Mint
) -> None:
    body = json.dumps(envelope({"monitorCondition": None}, {"condition": {}})).encode()
    status, answer = post_alert(host, mint(), body)
    assert status == 400
    assert (answer["error"], answer["field"]) == (
        "missing_field",
        "data.essentials.monitorCondition",
    )
    assert _queue_is_empty(storage)


# --- 2. metric dimensions that name a resource or host become CIs --------------------------


def metric_on_workspace(dimensions: object, **essentials: Any) -> dict[str, Any]:
    """A platform metric alert (metrics from logs) on a workspace, split by a dimension."""
    return envelope(
        {
            "alertRule": "Service Stopped",
            "alertTargetIDs": [WORKSPACE.lower()],
            "configurationItems": [WORKSPACE.lower()],
            **essentials,
        },
        {
            "properties": None,
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "Average_% Processor Time",
                        "metricNamespace": "Microsoft.OperationalInsights/workspaces",
                        "operator": "GreaterThan",
                        "threshold": "90",
                        "timeAggregation": "Average",
                        "dimensions": dimensions,
                        "metricValue": 97.5,
                    }
                ],
            },
        },
    )


def test_metric_alert_split_by_computer_binds_the_computer() -> None:
    alert = run(
        metric_on_workspace(
            [{"name": "Computer", "value": "web-07"}, {"name": "ObjectName", "value": "Processor"}]
        )
    )
    keys = [ci["key"] for ci in alert["configurationItems"]]
    assert keys == [WORKSPACE.lower(), "web-07"]
    assert alert["primaryTarget"] == "web-07"
    assert work_item_title(alert) == "Service Stopped on web-07 (+1 more)"


@pytest.mark.parametrize(
    ("dimensions", "expected"),
    [
        ([{"name": "_ResourceId", "value": VM}, {"name": "Computer", "value": "x"}], VM.lower()),
        ({"Computer": "web-08"}, "web-08"),  # dimensions as an object
        ([{"name": "host", "value": "aks-nodepool1-0"}], "aks-nodepool1-0"),
        ([{"name": "node", "value": "aks-nodepool1-1"}], "aks-nodepool1-1"),
        ([{"name": "VMName", "value": "vmss-web_3"}], "vmss-web_3"),
        ([{"name": "cloud/roleInstance", "value": "RD0003FF"}], "rd0003ff"),
        ([{"NAME": "COMPUTER", "VALUE": "web-09"}], "web-09"),
        # host dimensions by documented priority, not by position
        ([{"name": "VMName", "value": "vm_1"}, {"name": "Computer", "value": "c-1"}], "c-1"),
        # a resource dimension without an ARM id gives way to the host
        ([{"name": "ResourceId", "value": "3efad9dc"}, {"name": "Node", "value": "n1"}], "n1"),
    ],
)
def test_metric_dimensions_naming_a_resource_or_host(dimensions: object, expected: str) -> None:
    alert = run(metric_on_workspace(dimensions))
    assert expected in [ci["key"] for ci in alert["configurationItems"]]
    assert alert["primaryTarget"] == expected


@pytest.mark.parametrize(
    "dimensions",
    [
        [{"name": "ResourceId", "value": "3efad9dc-3d50-4eac-9c87-8b3fd6f97e4e"}],  # VM's GUID
        [{"name": "InstanceName", "value": "_Total"}],
        [{"name": "ApiName", "value": "GetBlob"}],
        [{"name": "Computer", "value": ""}, {"name": "Computer", "value": None}],
        [{"name": "Computer", "value": {"nested": 1}}],
        [],
        None,
        "Computer",
    ],
)
def test_other_metric_dimensions_are_not_cis(dimensions: object) -> None:
    alert = run(metric_on_workspace(dimensions))
    assert [ci["key"] for ci in alert["configurationItems"]] == [WORKSPACE.lower()]
    assert alert["primaryTarget"] == WORKSPACE.lower()


# --- 3. titles name the primary target -------------------------------------------------------


def test_prometheus_title_names_the_cluster_from_alert_target_ids() -> None:
    payload = envelope(
        {
            "alertRule": "KubePodCrashLooping",
            "monitoringService": "Prometheus",
            "alertTargetIDs": [AKS],
            "configurationItems": [AMW],  # sorts before the cluster by key
        },
        {
            "interval": "PT1M",
            "expression": "max_over_time(kube_pod_container_status_waiting_reason[5m]) >= 1",
            "expressionValue": "1",
            "for": "PT15M",
            "labels": {"alertname": "KubePodCrashLooping", "cluster": "aks-prod"},
            "annotations": {"description": "Pod is crash looping"},
            "ruleGroup": f"{RG}/providers/Microsoft.AlertsManagement/prometheusRuleGroups/g",
        },
    )
    alert = run(payload)
    assert alert["primaryTarget"] == AKS.lower()
    assert sorted(ci["key"] for ci in alert["configurationItems"])[0] == AMW.lower()
    assert work_item_title(alert) == "KubePodCrashLooping on aks-prod (+1 more)"
    assert work_item_title(alert, "rule") == "KubePodCrashLooping on aks-prod (+1 more)"


def test_log_analytics_service_stopped_title_names_the_computer() -> None:
    """A V1 log alert on a workspace: configurationItems hold the computer, the target the
    workspace (whose ARM id sorts first)."""
    payload = envelope(
        {
            "alertRule": "Service Stopped",
            "signalType": "Log",
            "monitoringService": "Log Analytics",
            "alertTargetIDs": [WORKSPACE],
            "configurationItems": ["sql-02.contoso.local"],
        },
        {
            "SearchQuery": 'Event | where EventID == 7036 and RenderedDescription has "stopped"',
            "SearchIntervalStartTimeUtc": "1/2/2026 2:45:00 AM",
            "SearchIntervalEndtimeUtc": "1/2/2026 3:00:00 AM",
            "ResultCount": 1,
            "AffectedConfigurationItems": ["sql-02.contoso.local"],
            "AlertType": "Number of results",
        },
    )
    alert = run(payload)
    assert alert["primaryTarget"] == "sql-02.contoso.local"
    assert work_item_title(alert) == "Service Stopped on sql-02.contoso.local (+1 more)"


def test_log_alert_v2_title_names_the_dimension_computer() -> None:
    payload = envelope(
        {
            "alertRule": "Service Stopped",
            "signalType": "Log",
            "monitoringService": "Log Alerts V2",
            "alertTargetIDs": [WORKSPACE],
            "configurationItems": [WORKSPACE],
        },
        {
            "conditionType": "LogQueryCriteria",
            "condition": {
                "allOf": [
                    {
                        "searchQuery": "Event | where EventID == 7036",
                        "dimensions": [{"name": "Computer", "value": "sql-03"}],
                    }
                ]
            },
        },
    )
    alert = run(payload)
    assert alert["primaryTarget"] == "sql-03"
    assert work_item_title(alert) == "Service Stopped on sql-03 (+1 more)"


def test_without_dimensions_or_targets_the_first_ci_is_primary() -> None:
    alert = run(envelope({"alertTargetIDs": None, "configurationItems": ["b-host", "a-host"]}, {}))
    assert alert["primaryTarget"] == "b-host"
    assert work_item_title(alert) == "field-rule on b-host (+1 more)"
    alert = run(envelope({"alertTargetIDs": None, "configurationItems": None}, {}))
    assert alert["primaryTarget"] is None
    assert work_item_title(alert) == "field-rule"


def test_a_computer_named_like_the_target_folds_into_the_target() -> None:
    alert = run(metric_on_workspace([{"name": "Computer", "value": "LAW-OPS"}]))
    assert [ci["kind"] for ci in alert["configurationItems"]] == ["azureResource"]
    assert alert["primaryTarget"] == WORKSPACE.lower()


def test_title_of_a_message_without_primary_target_uses_the_first_ci() -> None:
    """Schema 1.0 messages (queued before the upgrade) have no primaryTarget."""
    alert = run(metric_on_workspace([{"name": "Computer", "value": "web-07"}]))
    del alert["primaryTarget"]
    alert["schemaVersion"] = "1.0"
    for ci in alert["configurationItems"]:
        del ci["displayName"]
    assert work_item_title(alert) == "Service Stopped on law-ops (+1 more)"


# --- 4. a child resource keeps its parent in its display name -------------------------------


def test_scale_set_instance_display_name_keeps_the_scale_set() -> None:
    alert = run(
        envelope(
            {
                "alertRule": "High CPU",
                "alertTargetIDs": [VMSS_INSTANCE],
                "configurationItems": ["212"],
            },
            {},
        )
    )
    [ci] = alert["configurationItems"]  # "212" folds into the instance
    assert ci["key"] == VMSS_INSTANCE.lower()
    assert ci["name"] == "212"
    assert ci["displayName"] == "vmss-web/212"
    assert ci["resourceType"] == "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"
    assert work_item_title(alert) == "High CPU on vmss-web/212"


@pytest.mark.parametrize(
    ("resource_id", "display_name"),
    [
        (VM, "vm-app-01"),
        (f"{RG}/providers/Microsoft.Sql/servers/sql-1/databases/orders", "sql-1/orders"),
        (
            f"{RG}/providers/Microsoft.Storage/storageAccounts/st1/blobServices/default/containers/c",
            "st1/default/c",
        ),
        (f"{VM}/providers/Microsoft.Insights/diagnosticSettings/ds", "ds"),  # extension
        (f"/subscriptions/{SUB}", SUB),
        (RG, "rg-ops"),
        ("web-01", "web-01"),
    ],
)
def test_display_names(resource_id: str, display_name: str) -> None:
    alert = run(envelope({"alertTargetIDs": [resource_id], "configurationItems": None}, {}))
    assert alert["configurationItems"][0]["displayName"] == display_name


# --- 5. Resource Health without a title -------------------------------------------------------


def resource_health(**properties: Any) -> dict[str, Any]:
    context = json.loads(json.dumps(RESOURCE_HEALTH_CONTEXT))
    context["properties"].update(properties)
    return envelope({"monitoringService": "Resource Health", "signalType": "Activity Log"}, context)


@pytest.mark.parametrize("empty", ["Unknown", "unknown", "", "  ", None])
def test_resource_health_without_a_title_is_named_by_its_type(empty: str | None) -> None:
    alert = run(resource_health(title=empty))
    assert alert["summary"]["title"] == "Downtime: Available to Unavailable"


def test_resource_health_without_title_or_type_is_named_by_its_cause() -> None:
    alert = run(resource_health(title="Unknown", type="Unknown"))
    assert alert["summary"]["title"] == "PlatformInitiated: Available to Unavailable"
    alert = run(resource_health(title=None, type=None, cause=None))
    assert alert["summary"]["title"] == "Resource health: Available to Unavailable"


def test_resource_health_with_a_title_keeps_it() -> None:
    alert = run(resource_health(title="Rebooted by user"))
    assert alert["summary"]["title"] == "Rebooted by user: Available to Unavailable"
    assert alert["summary"]["fields"]["title"] == "Rebooted by user"
