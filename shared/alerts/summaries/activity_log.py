"""Activity log alerts: Administrative, Policy, Autoscale, Security, Recommendation, and
the two health services that arrive as activity log events (Service and Resource Health).

Activity log alerts are stateless: every event is its own alert (its own alertId) and is
always `Fired`. Service Health and Resource Health carry their lifecycle in the context.
"""

from __future__ import annotations

from typing import Any

from shared.alerts.enums import event_level
from shared.alerts.summaries.common import FREE_FORM_BUDGET, Extract, moment, one_line, show
from shared.alerts.timestamps import timestamp
from shared.alerts.values import Budget, Keys, as_list, ci_get, decode_embedded_json, number, text

MAX_SERVICES = 10
MAX_REGIONS = 20

CONTEXT = Keys(
    "authorization",
    "channels",
    "claims",
    "caller",
    "correlationId",
    "eventSource",
    "eventTimestamp",
    "httpRequest",
    "eventDataId",
    "level",
    "operationName",
    "operationId",
    "properties",
    "status",
    "subStatus",
    "submissionTimestamp",
    "ResourceType",
    "Activity Log Event Description",
)
AUTHORIZATION = Keys("action", "scope")
POLICY = Keys(
    "isComplianceCheck", "resourceLocation", "ancestors", "policies", "hierarchy", "eventCategory"
)
POLICY_ITEM = Keys("policyDefinitionEffect", "policyAssignmentName", "policyDefinitionName")
AUTOSCALE = Keys(
    "description",
    "resourceName",
    "oldInstancesCount",
    "newInstancesCount",
    "activeAutoscaleProfile",
    "lastScaleActionTime",
)
PROFILE = Keys("Name", "Capacity", "Rules")
CAPACITY = Keys("Minimum", "Maximum", "Default")
SECURITY = Keys(
    "threatStatus",
    "category",
    "threatID",
    "threatName",
    "filePath",
    "protectionType",
    "actionTaken",
    "resourceType",
    "severity",
    "compromisedEntity",
    "remediationSteps",
    "attackedResourceType",
)
RECOMMENDATION = Keys(
    "recommendationSchemaVersion",
    "recommendationCategory",
    "recommendationImpact",
    "recommendationName",
    "recommendationResourceLink",
    "recommendationType",
)
SERVICE_HEALTH = Keys(
    "title",
    "service",
    "region",
    "communication",
    "incidentType",
    "trackingId",
    "impactStartTime",
    "impactMitigationTime",
    "impactedServices",
    "impactedServicesTableRows",
    "defaultLanguageTitle",
    "defaultLanguageContent",
    "stage",
    "communicationId",
    "maintenanceId",
    "isHIR",
    "IsSynthetic",
    "impactType",
    "version",
)
RESOURCE_HEALTH = Keys(
    "title", "details", "currentHealthStatus", "previousHealthStatus", "type", "cause"
)


def _common(ctx: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The activity fields, and the event's own time (None when it does not parse)."""
    authorization = AUTHORIZATION.of(ctx.get("authorization"))
    raw_time = ctx.get("eventTimestamp")
    # Parsed once for both the field (as moment() would give it: kept as sent, for display,
    # when it does not parse) and Extract.event_time (None then).
    event_time = timestamp(raw_time)
    fields = {
        "operationName": text(ctx.get("operationName"), 256),
        "status": text(ctx.get("status"), 64),
        "subStatus": text(ctx.get("subStatus"), 128),
        "caller": text(ctx.get("caller"), 256),
        "level": event_level(ctx.get("level")),
        "eventSource": text(ctx.get("eventSource"), 64),
        "channels": text(ctx.get("channels"), 64),
        "correlationId": text(ctx.get("correlationId"), 128),
        "eventDataId": text(ctx.get("eventDataId"), 128),
        "operationId": text(ctx.get("operationId"), 128),
        "eventTimestamp": event_time if event_time is not None else text(raw_time, 64),
        "submissionTimestamp": moment(ctx.get("submissionTimestamp")),
        "authorization": None
        if authorization is None
        else {
            "action": text(authorization.get("action"), 256),
            "scope": text(authorization.get("scope"), 512),
        },
    }
    return fields, event_time


def _claims(value: object, b: Budget) -> Any:
    """The caller's token claims, a JSON string in the payload."""
    claims = decode_embedded_json(value)
    if isinstance(claims, dict):
        return b.copy(claims, depth=2, max_items=20, cap=256) or None
    return text(claims, 256)


def _copy(value: object, b: Budget, decode: tuple[str, ...] = ()) -> Any:
    if not isinstance(value, dict):
        return None
    if decode:
        value = {k: decode_embedded_json(v) if k in decode else v for k, v in value.items()}
    return b.copy(value, depth=4, max_items=20, cap=512)


def build_administrative(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    b = Budget(FREE_FORM_BUDGET)
    fields, event_time = _common(ctx)
    fields["properties"] = _copy(ctx.get("properties"), b)
    fields["claims"] = _claims(ctx.get("claims"), b)
    title = f"{fields['operationName'] or 'Activity log event'}"
    if fields["caller"]:
        title += f" by {fields['caller']}"
    if fields["status"]:
        title += f": {fields['status']}"
    return Extract("activityLog", title, fields, event_time=event_time)


def build_policy(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    b = Budget(FREE_FORM_BUDGET)
    fields, event_time = _common(ctx)
    properties = POLICY.of(ctx.get("properties")) or {}
    policies = decode_embedded_json(properties.get("policies"))
    policy_list = as_list(policies)
    first = POLICY_ITEM.of(policy_list[0]) if policy_list else None
    fields["isComplianceCheck"] = text(properties.get("isComplianceCheck"), 16)
    fields["resourceLocation"] = text(properties.get("resourceLocation"), 64)
    fields["policies"] = b.copy(policies, depth=3, max_items=20, cap=256)
    fields["claims"] = _claims(ctx.get("claims"), b)
    title = "Policy"
    if first is not None:
        effect = text(first.get("policyDefinitionEffect"), 64)
        name = first.get("policyAssignmentName") or first.get("policyDefinitionName")
        title += f" {effect or 'event'}: {text(name, 128) or '?'}"
    if fields["operationName"]:
        title += f" ({fields['operationName']})"
    return Extract("policy", title, fields, event_time=event_time)


def build_autoscale(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    fields, event_time = _common(ctx)
    properties = AUTOSCALE.of(ctx.get("properties")) or {}
    profile = PROFILE.of(decode_embedded_json(properties.get("activeAutoscaleProfile")))
    capacity = CAPACITY.of(profile.get("Capacity")) if profile else None
    resource = text(properties.get("resourceName"), 512)
    old = number(properties.get("oldInstancesCount"))
    new = number(properties.get("newInstancesCount"))
    fields.update(
        {
            "resourceName": resource,
            "oldInstancesCount": old,
            "newInstancesCount": new,
            "description": text(properties.get("description"), 512),
            "lastScaleActionTime": moment(properties.get("lastScaleActionTime")),
            "profileName": text(profile.get("Name"), 256) if profile else None,
            "capacity": None
            if capacity is None
            else {
                "minimum": number(capacity.get("Minimum")),
                "maximum": number(capacity.get("Maximum")),
                "default": number(capacity.get("Default")),
            },
        }
    )
    short = resource.rstrip("/").rsplit("/", 1)[-1] if resource else "resource"
    title = f"Autoscale of {short or resource}: {show(old)} to {show(new)} instances"
    return Extract("autoscale", title, fields, event_time=event_time)


def build_security(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    b = Budget(FREE_FORM_BUDGET)
    fields, event_time = _common(ctx)
    properties = SECURITY.of(ctx.get("properties")) or {}
    fields["properties"] = _copy(properties, b, decode=("remediationSteps",))
    what = text(properties.get("category") or properties.get("threatName"), 128)
    where = text(properties.get("compromisedEntity"), 128)
    state = text(properties.get("threatStatus") or properties.get("actionTaken"), 64)
    title = f"Security alert: {what or fields['operationName'] or 'threat'}"
    if where:
        title += f" on {where}"
    if state:
        title += f" ({state})"
    return Extract("security", title, fields, event_time=event_time)


def build_recommendation(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    b = Budget(FREE_FORM_BUDGET)
    fields, event_time = _common(ctx)
    properties = RECOMMENDATION.of(ctx.get("properties")) or {}
    fields["properties"] = _copy(properties, b)
    category = text(properties.get("recommendationCategory"), 64)
    impact = text(properties.get("recommendationImpact"), 64)
    name = text(properties.get("recommendationName"), 256)
    title = "Advisor recommendation"
    details = [x for x in (category, impact and f"{impact} impact") if x]
    if details:
        title += f" ({', '.join(details)})"
    title += f": {name or fields['operationName'] or '?'}"
    return Extract("recommendation", title, fields, event_time=event_time)


def _impacted_services(value: object) -> list[dict[str, Any]]:
    """`impactedServices`: an array in one sample, a JSON string in the other."""
    services: list[dict[str, Any]] = []
    regions_left = MAX_REGIONS
    for raw in as_list(decode_embedded_json(value))[:MAX_SERVICES]:
        if not isinstance(raw, dict):
            continue
        regions = []
        for region in as_list(ci_get(raw, "ImpactedRegions"))[:regions_left]:
            name = text(ci_get(region, "RegionName") if isinstance(region, dict) else region, 64)
            if name is not None:
                regions.append(name)
        regions_left -= len(regions)
        services.append({"serviceName": text(ci_get(raw, "ServiceName"), 128), "regions": regions})
    return services


def build_service_health(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    fields, event_time = _common(ctx)
    p = SERVICE_HEALTH.of(ctx.get("properties")) or {}
    tracking_id = text(p.get("trackingId"), 128)
    stage = text(p.get("stage"), 64)
    incident_type = text(p.get("incidentType"), 64)
    title_text = text(p.get("title") or p.get("defaultLanguageTitle"), 512)
    fields.update(
        {
            "title": title_text,
            "service": text(p.get("service"), 128),
            "region": text(p.get("region"), 256),
            "incidentType": incident_type,
            "trackingId": tracking_id,
            "stage": stage,
            "communicationId": text(p.get("communicationId"), 128),
            "maintenanceId": text(p.get("maintenanceId"), 128),
            "impactType": text(p.get("impactType"), 64),
            "isHIR": text(p.get("isHIR"), 16),
            "impactStartTime": moment(p.get("impactStartTime")),
            "impactMitigationTime": moment(p.get("impactMitigationTime")),
            "impactedServices": _impacted_services(p.get("impactedServices")),
            "communication": text(p.get("defaultLanguageContent") or p.get("communication"), 1024),
        }
    )
    title = f"{incident_type or 'Service Health'}: {one_line(title_text, 160) or '?'}"
    if stage:
        title += f" ({stage})"
    lifecycle = {"kind": "serviceHealth", "trackingId": tracking_id, "stage": stage}
    return Extract("serviceHealth", title, fields, lifecycle, event_time=event_time)


def build_resource_health(raw: dict[str, Any]) -> Extract:
    ctx = CONTEXT.view(raw)
    fields, event_time = _common(ctx)
    p = RESOURCE_HEALTH.of(ctx.get("properties")) or {}
    current = text(p.get("currentHealthStatus"), 64)
    previous = text(p.get("previousHealthStatus"), 64)
    title_text = text(p.get("title"), 512)
    fields.update(
        {
            "title": title_text,
            "details": text(p.get("details"), 1024),
            "currentHealthStatus": current,
            "previousHealthStatus": previous,
            "type": text(p.get("type"), 64),
            "cause": text(p.get("cause"), 64),
        }
    )
    headline = one_line(_resource_health_headline(title_text, fields), 160) or "Resource health"
    title = f"{headline}: {previous or '?'} to {current or '?'}"
    lifecycle = {
        "kind": "resourceHealth",
        "currentHealthStatus": current,
        "previousHealthStatus": previous,
    }
    return Extract("resourceHealth", title, fields, lifecycle, event_time=event_time)


# Titles Resource Health sends when it has none to give.
_NO_TITLE = frozenset(("", "unknown", "none", "null", "n/a"))


def _resource_health_headline(title: str | None, fields: dict[str, Any]) -> str | None:
    """The event's title, else its type ("Downtime"), else its cause ("PlatformInitiated")."""
    if title is not None and title.strip().lower() not in _NO_TITLE:
        return title
    for fallback in (fields["type"], fields["cause"]):
        if fallback is not None and fallback.strip().lower() not in _NO_TITLE:
            return str(fallback)
    return None
