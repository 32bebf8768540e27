"""Common alert schema payload -> the normalized alert (the queue message, see
docs/queue-message.md): one shape for every alert type, strict JSON, bounded in size.

Single pass, no deep copies, no JSON round trips: the HTTP handler runs this on every
delivery and Azure Monitor waits for the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.alerts import configuration_items, links
from shared.alerts.enums import FIRED, RESOLVED, monitor_condition, severity, signal_type
from shared.alerts.errors import INVALID_FIELD, MISSING_FIELD, SchemaError
from shared.alerts.payload import COMMON_SCHEMA_ID, check_common_schema
from shared.alerts.summaries import headline, never_resolves, summarize
from shared.alerts.timestamps import essential_time, format_timestamp
from shared.alerts.values import Budget, Keys, escaped_weight, plain, text
from shared.alerts.version import SCHEMA_VERSION

MAX_ALERT_ID = 1024  # escaped characters; real ones are ~100-300
CUSTOM_PROPERTIES_BUDGET = 1536

ENVELOPE = Keys("schemaId", "data")
DATA = Keys("essentials", "alertContext", "customProperties")
ESSENTIALS = Keys(
    "alertId",
    "alertRule",
    "alertRuleId",
    "severity",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "alertTargetIDs",
    "configurationItems",
    "originAlertId",
    "firedDateTime",
    "resolvedDateTime",
    "description",
    "essentialsVersion",
    "alertContextVersion",
    "investigationLink",
    "targetResourceGroup",
    "targetResourceType",
)


def _object(value: object, keys: Keys, field: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return keys.view(value)
    if value is None:
        raise SchemaError(MISSING_FIELD, f"The alert has no {field} object.", field)
    raise SchemaError(INVALID_FIELD, f"{field} must be a JSON object.", field)


def _alert_id(value: object) -> str:
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ALERT_ID
        and plain(value)
        and not value.isspace()
    ):
        return value  # the usual case, checked in one go
    field = "data.essentials.alertId"
    if value is None:
        raise SchemaError(MISSING_FIELD, "The alert has no essentials.alertId.", field)
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(INVALID_FIELD, "essentials.alertId must be a non-empty string.", field)
    if len(value) > MAX_ALERT_ID or escaped_weight(value) > MAX_ALERT_ID:
        raise SchemaError(
            INVALID_FIELD, f"essentials.alertId is longer than {MAX_ALERT_ID} characters.", field
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError(
                INVALID_FIELD, "essentials.alertId contains an unpaired surrogate.", field
            ) from None
    return value


def _default_condition(value: object, service: str | None, summary_type: str) -> str:
    """Fired for a stateless service that sent no condition (budgets send null); else the
    SchemaError for a missing or unusable `monitorCondition`."""
    field = "data.essentials.monitorCondition"
    absent = value is None or (isinstance(value, str) and not value.strip())
    if absent and never_resolves(service, summary_type):
        return FIRED
    if value is None:
        raise SchemaError(MISSING_FIELD, "The alert has no essentials.monitorCondition.", field)
    raise SchemaError(
        INVALID_FIELD, 'essentials.monitorCondition must be "Fired" or "Resolved".', field
    )


def _subscription_id(
    alert_rule_id: str | None, cis: list[dict[str, Any]], alert_id: str
) -> str | None:
    """The subscription from the ARM ids: rule, targets and CIs (in CI order), alert."""
    if alert_rule_id is not None:
        sub = configuration_items.subscription_id(alert_rule_id)
        if sub is not None:
            return sub
    for ci in cis:
        if ci["subscriptionId"] is not None:
            return str(ci["subscriptionId"])
    return configuration_items.subscription_id(alert_id)


def normalize(
    payload: Mapping[str, Any],
    *,
    tenant_id: str | None,
    correlation_id: str,
    received_at: datetime,
) -> dict[str, Any]:
    """The normalized alert for a parsed payload; SchemaError when it cannot be one.

    Rejected: not the common schema, no `data`/`essentials` object, no usable `alertId`,
    `monitorCondition` other than Fired/Resolved (any casing; a stateless service's
    missing or null one is Fired). Everything else is tolerated: missing or null fields,
    wrong types, key casing, unknown services.
    """
    if not isinstance(payload, dict):
        raise SchemaError(INVALID_FIELD, "The alert must be a JSON object.", None)
    if payload.get("schemaId") != COMMON_SCHEMA_ID:
        check_common_schema(payload)  # other casing passes, anything else raises
    data = payload.get("data")
    data = _object(ENVELOPE.view(payload).get("data") if data is None else data, DATA, "data")
    e = _object(data.get("essentials"), ESSENTIALS, "data.essentials")
    alert_id = _alert_id(e.get("alertId"))
    condition = monitor_condition(e.get("monitorCondition"))

    service = text(e.get("monitoringService"), 128)
    alert_rule = text(e.get("alertRule"), 512)
    alert_rule_id = text(e.get("alertRuleId"), 1024)
    extract = summarize(service, data.get("alertContext"))
    if condition is None:
        condition = _default_condition(e.get("monitorCondition"), service, extract.type)
    cis, omitted, primary = configuration_items.collect(
        e.get("configurationItems"), e.get("alertTargetIDs"), extract.ci_values
    )

    target_type = text(e.get("targetResourceType"), 256)
    target_group = text(e.get("targetResourceGroup"), 256)
    if target_type is None or target_group is None:
        # Not sent by most services: take them from the first target resource.
        for ci in cis:
            if ci["kind"] == configuration_items.AZURE_RESOURCE:
                target_type = target_type or ci["resourceType"]
                target_group = target_group or ci["resourceGroup"]
                break

    fired_at = essential_time(e.get("firedDateTime"), "data.essentials.firedDateTime")
    resolved_at = essential_time(e.get("resolvedDateTime"), "data.essentials.resolvedDateTime")
    occurred_at = resolved_at if condition == RESOLVED else extract.event_time or fired_at

    custom = data.get("customProperties")

    return {
        "schemaVersion": SCHEMA_VERSION,
        "correlationId": correlation_id,
        "receivedAt": format_timestamp(received_at),
        "tenantId": tenant_id,
        "alertId": alert_id,
        "originAlertId": text(e.get("originAlertId"), 512),
        "alertRule": alert_rule,
        "alertRuleId": alert_rule_id,
        "subscriptionId": _subscription_id(alert_rule_id, cis, alert_id),
        "monitorCondition": condition,
        "firedAt": fired_at,
        "resolvedAt": resolved_at,
        "occurredAt": occurred_at,
        "severity": severity(e.get("severity")),
        "signalType": signal_type(e.get("signalType")),
        "monitoringService": service,
        "description": text(e.get("description"), 1024),
        "targetResourceType": target_type,
        "targetResourceGroup": target_group,
        "configurationItems": cis,
        "configurationItemsOmitted": omitted,
        "primaryTarget": primary,
        "summary": {
            "type": extract.type,
            "title": headline(extract.title, alert_rule, service),
            "fields": extract.fields,
        },
        "lifecycle": extract.lifecycle,
        "links": links.build(e.get("investigationLink"), alert_id, extract.search_links),
        "customProperties": Budget(CUSTOM_PROPERTIES_BUDGET).copy(custom, depth=4)
        if isinstance(custom, dict)
        else None,
    }
