"""Property-based tests: mutated samples either normalize to a valid message or raise
SchemaError, never anything else.

Mutations: dropped keys, nulls, swapped types, keys in other casing, unicode and huge
strings, deep nesting, NaN/Infinity, numbers beyond float range and Python's int digit
limit, extra fields, raw byte damage.

Field payloads (issue 19), built from scratch for every monitoringService: essentials
null, missing or mistyped, zone-less and locale-formatted times, dimensions that name
resources and hosts. Always a valid message or a documented 400 (never a 5xx), a
stateless service's missing condition always Fired.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.alerts import SchemaError, normalize, parse_payload, timestamps
from shared.alerts import errors as codes
from shared.alerts.summaries import SUMMARY_TYPES
from tests.alert_samples import context_samples, envelope_samples, load, load_bytes, wrap_context

SAMPLES: list[dict[str, Any]] = [load(n) for n in envelope_samples()] + [
    wrap_context(n) for n in context_samples()
]
ERROR_CODES = {v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
HUGE_INT = "9" * 5000  # past Python's 4300-digit int limit: json.loads raises ValueError
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the document, deepest first: Hypothesis favours
    early choices, and the envelope's own keys (schemaId...) are the least interesting."""
    found: list[tuple[Any, Any]] = []
    queue = [doc]
    while queue:
        node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            found.append((node, key))
            if isinstance(value, dict | list):
                queue.append(value)
    return found[::-1]


def _nested_text(value: Any, depth: int, as_dict: bool) -> str:
    """`value` wrapped `depth` levels deep, as JSON text (json.dumps itself would recurse)."""
    inner = json.dumps(value, allow_nan=True)
    if as_dict:
        return '{"n":' * depth + inner + "}" * depth
    return "[" * depth + inner + "]" * depth


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    splices: dict[str, str] = {'"__HUGE_INT__"': HUGE_INT}
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        slots = _slots(doc)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(
            st.sampled_from(
                [
                    "drop",
                    "null",
                    "swap",
                    "recase",
                    "unicode",
                    "huge",
                    "nest",
                    "special",
                    "extra",
                    "any",
                ]
            )
        )
        value = container[key]
        if op == "drop":
            del container[key]
        elif op == "null":
            container[key] = None
        elif op == "swap":
            container[key] = draw(
                st.sampled_from([str(value), 0, 1.5, -7, True, [value], {"v": value}, [], {}])
            )
        elif op == "recase" and isinstance(container, dict):
            new = draw(st.sampled_from([key.upper(), key.lower(), key.swapcase(), key.title()]))
            container[new] = container.pop(key)
        elif op == "unicode":
            container[key] = draw(st.text(min_size=1, max_size=200))
        elif op == "huge":
            container[key] = draw(st.sampled_from(["x", "é", "😀", "\x00", "/"])) * draw(
                st.integers(min_value=10_000, max_value=300_000)
            )
        elif op == "nest":
            marker = f"__NEST_{len(splices)}__"
            depth = draw(st.sampled_from([5, 50, 500, 3000]))
            splices[f'"{marker}"'] = _nested_text(value, depth, draw(st.booleans()))
            container[key] = marker
        elif op == "special":
            container[key] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, "__HUGE_INT__"])
            )
        elif op == "extra" and isinstance(container, dict):
            container[draw(st.text(max_size=20))] = draw(json_values)
        else:
            container[key] = draw(json_values)
    body = json.dumps(doc, allow_nan=True)
    for marker, replacement in reversed(splices.items()):  # later markers may sit in earlier
        body = body.replace(marker, replacement)
    return body.encode("utf-8", "surrogatepass")


ESSENTIAL_TIMES = ("firedDateTime", "resolvedDateTime")


def _outside_time_range(value: object) -> bool:
    """A readable time outside the accepted range, which ingest refuses naming the field."""
    parsed = timestamps.parse_timestamp(value)
    return parsed is not None and not timestamps.EARLIEST <= parsed <= timestamps.LATEST


def _check(body: bytes) -> dict[str, Any] | None:
    """The normalized alert after checking the contract, or None after checking the error."""
    rejected: SchemaError | None = None
    try:
        payload = parse_payload(body)
        json.dumps(payload, allow_nan=False)  # the raw copy the queue keeps is strict JSON
        alert = normalize(
            payload,
            tenant_id="tenant",
            correlation_id="corr",
            received_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
    except SchemaError as error:  # anything else fails the test
        rejected = error
    if rejected is not None:
        assert rejected.code in ERROR_CODES
        assert isinstance(rejected.message, str)
        assert rejected.message
        assert rejected.field is None or isinstance(rejected.field, str)
        return None
    serialized = json.dumps(alert, allow_nan=False)  # what the HTTP handler does
    json.dumps(alert, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert len(serialized) < 32 * 1024
    assert isinstance(alert["alertId"], str)
    assert alert["alertId"].strip()
    assert alert["monitorCondition"] in ("Fired", "Resolved")
    assert alert["summary"]["type"] in SUMMARY_TYPES
    assert isinstance(alert["summary"]["title"], str)
    assert alert["summary"]["title"]
    assert alert["severity"] in (None, "Sev0", "Sev1", "Sev2", "Sev3", "Sev4")
    assert alert["signalType"] in (None, "Metric", "Log", "ActivityLog")
    for ci in alert["configurationItems"]:
        assert isinstance(ci["key"], str)
        assert ci["key"]
        assert ci["kind"] in ("azureResource", "name")
    return alert


@SETTINGS
@given(mutated_payloads())
def test_mutated_samples_normalize_or_raise_schema_error(body: bytes) -> None:
    _check(body)


@SETTINGS
@given(
    st.sampled_from(envelope_samples()),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=5000), st.binary(max_size=8)),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=0, max_value=5000),
)
def test_damaged_bytes_normalize_or_raise_schema_error(
    name: str, edits: list[tuple[int, bytes]], cut: int
) -> None:
    body = bytearray(load_bytes(name))
    for position, chunk in edits:
        position %= len(body) + 1
        body[position : position + len(chunk)] = chunk
    _check(bytes(body[: len(body) - cut % 50]))


def _recase_keys(value: Any, choose: Any) -> Any:
    if isinstance(value, dict):
        return {choose(k): _recase_keys(v, choose) for k, v in value.items()}
    if isinstance(value, list):
        return [_recase_keys(v, choose) for v in value]
    return value


@SETTINGS
@given(st.sampled_from(SAMPLES), st.randoms(use_true_random=False))
def test_key_casing_does_not_change_what_is_read(
    payload: dict[str, Any], rnd: random.Random
) -> None:
    """Keys are read case-insensitively everywhere: re-casing any of them changes nothing
    but the spelling of keys copied as sent (customProperties, free-form objects)."""

    def choose(key: str) -> str:
        return str(rnd.choice([key, key.upper(), key.lower(), key.swapcase()]))

    original = _check(json.dumps(payload).encode())
    recased = _check(json.dumps(_recase_keys(payload, choose)).encode())
    assert original is not None
    assert recased is not None
    for alert in (original, recased):
        alert.pop("customProperties")
        fields = alert["summary"].pop("fields")
        alert["summary"]["fieldNames"] = sorted(fields)
    assert recased == original


# --- Alerts as they arrive in the field (issue 19) ------------------------------------------
# Payloads built from scratch rather than mutated from samples: every essential may be
# missing, null, or of another type; times come zone-less and in locale formats; metric
# and log dimensions name resources and hosts the way real alerts do.

SERVICES = [
    "Platform",
    "Log Analytics",
    "Application Insights",
    "Log Alerts V2",
    "Simple Log Alert",
    "Activity Log - Administrative",
    "Activity Log - Policy",
    "Activity Log - Autoscale",
    "Activity Log - Security",
    "Activity Log - Recommendation",
    "ServiceHealth",
    "Resource Health",
    "SmartDetector",
    "Prometheus",
    "CostAlerts",
    "Some Future Service",
]
STATELESS_SERVICES = {
    "Activity Log - Administrative",
    "Activity Log - Policy",
    "Activity Log - Autoscale",
    "Activity Log - Security",
    "Activity Log - Recommendation",
    "ServiceHealth",
    "Resource Health",
    "SmartDetector",
    "CostAlerts",
}
ABSENT = object()  # a key left out of the payload altogether
SUB = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
RESOURCE_IDS = [
    f"/subscriptions/{SUB}",
    f"/subscriptions/{SUB}/resourceGroups/rg",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
    f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.compute/virtualmachinescalesets"
    "/vmss/virtualmachines/212",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.OperationalInsights"
    "/workspaces/law/",
    f"/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/RG//PROVIDERS/Microsoft.Sql/servers/s/databases/d",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    "/providers/Microsoft.Insights/diagnosticSettings/ds",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites",
    f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService"
    "/managedClusters/aks-ไทย",
    "/subscriptions/",
    "/providers/Microsoft.Management/managementGroups/mg",
]
HOSTS = ["web-01", "WEB-01.contoso.local", "aks-nodepool1-1234-vmss000000", "vm1", "เครื่อง-1", "42"]
DIMENSION_NAMES = [
    "Computer",
    "computer",
    "_ResourceId",
    "ResourceId",
    "Resource",
    "Microsoft.ResourceId",
    "Host",
    "host",
    "HostName",
    "Node",
    "node",
    "NodeName",
    "VMName",
    "cloud/roleInstance",
    "RoleInstance",
    "InstanceName",
    "ObjectName",
    "ApiName",
]

resource_ids = st.sampled_from(RESOURCE_IDS)
hosts = st.sampled_from(HOSTS)
dimension_values = st.one_of(
    resource_ids,
    hosts,
    st.uuids().map(str),
    st.just(""),
    st.none(),
    st.integers(min_value=-5, max_value=10**6),
    st.text(max_size=40),
    json_values,
)
# The times Azure sends, and the ones people captured from real deliveries: zone-less,
# 7-digit fractions, offsets, US and other locale formats, Thai Buddhist-era years and
# digits, RFC 1123, epoch numbers, and text that is no time at all.
times = st.one_of(
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.1234567Z",
            "2026-01-02T03:04:05.1234567",
            "2026-01-02T03:04:05",
            "2026-01-02 03:04:05",
            "2026-01-02T03:04:05+07:00",
            "2026-01-02T03:04:05.123-0530",
            "1/2/2026 3:04:05 AM",
            "12/31/2025 11:59:59 PM",
            "31/12/2025 23:59:59",
            "31.12.2025 23:59:59",
            "2025/12/31 23:59:59",
            "2/1/2569 3:04:05",
            "๒๕๖๙-๐๑-๐๒T๐๓:๐๔:๐๕Z",
            "2 ม.ค. 2569 03:04:05",
            "Fri, 02 Jan 2026 03:04:05 GMT",
            "2. Januar 2026 03:04:05",
            "1767323045",
            "",
            "now",
            "2026-02-30T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
        ]
    ),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.integers(min_value=0, max_value=2**40),
    st.text(max_size=30),
)


def _maybe(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> Any:
    """A value, null, or ABSENT, for one essential."""
    return draw(st.one_of(values, st.none(), st.just(ABSENT)))


def _dimensions(draw: st.DrawFn) -> Any:
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(DIMENSION_NAMES) | st.text(max_size=12), dimension_values),
            max_size=5,
        )
    )
    shape = draw(st.sampled_from(["list", "object", "recased", "junk"]))
    if shape == "object":
        return {str(name): value for name, value in pairs}
    if shape == "recased":
        return [{"NAME": name, "Value": value} for name, value in pairs]
    if shape == "junk":
        return draw(json_values)
    return [{"name": name, "value": value} for name, value in pairs]


def _context(draw: st.DrawFn, service: Any) -> Any:
    kind = draw(st.sampled_from(["metric", "logV2", "logV1", "sample", "none", "junk"]))
    if kind == "metric":
        return {
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "Average_% Processor Time",
                        "operator": "GreaterThan",
                        "threshold": "90",
                        "dimensions": _dimensions(draw),
                        "metricValue": draw(json_scalars),
                    }
                    for _ in range(draw(st.integers(min_value=0, max_value=3)))
                ],
                "windowStartTime": draw(times),
                "windowEndTime": draw(times),
            },
        }
    if kind == "logV2":
        return {
            "conditionType": "LogQueryCriteria",
            "condition": {
                "allOf": [{"searchQuery": "Heartbeat", "dimensions": _dimensions(draw)}],
                "windowStartTime": draw(times),
            },
        }
    if kind == "logV1":
        return {
            "SearchQuery": "Event",
            "SearchIntervalStartTimeUtc": draw(times),
            "SearchIntervalEndtimeUtc": draw(times),
            "Dimensions": _dimensions(draw),
            "AffectedConfigurationItems": draw(st.lists(hosts | resource_ids, max_size=3)),
        }
    if kind == "sample":
        sample = draw(st.sampled_from(SAMPLES))
        return copy.deepcopy(sample["data"]["alertContext"])
    if kind == "none":
        return draw(st.sampled_from([None, {}, ABSENT]))
    return draw(json_values)


@st.composite
def field_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A common-schema alert as it may arrive from any service, essentials at random."""
    service = _maybe(draw, st.sampled_from(SERVICES))
    targets = draw(
        st.one_of(
            st.lists(resource_ids | hosts, max_size=3), resource_ids, st.none(), st.just(ABSENT)
        )
    )
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/"
        + draw(st.uuids()).hex,
        "alertRule": _maybe(draw, st.text(max_size=40)),
        "severity": _maybe(draw, st.sampled_from(["Sev0", "Sev4", "sev 2", 3, "Warning", "x"])),
        "signalType": _maybe(draw, st.sampled_from(["Metric", "Log", "Activity Log", "?"])),
        "monitorCondition": _maybe(
            draw, st.sampled_from(["Fired", "Resolved", "fired", "RESOLVED", "", " ", "Active"])
        ),
        "monitoringService": service,
        "alertTargetIDs": targets,
        "configurationItems": _maybe(draw, st.lists(hosts | resource_ids, max_size=3)),
        "originAlertId": _maybe(draw, st.text(max_size=40)),
        "firedDateTime": _maybe(draw, times),
        "resolvedDateTime": _maybe(draw, times),
        "description": _maybe(draw, st.text(max_size=40)),
        "essentialsVersion": _maybe(draw, st.just("1.0")),
        "alertContextVersion": _maybe(draw, st.just("1.0")),
    }
    data = {
        "essentials": {k: v for k, v in essentials.items() if v is not ABSENT},
        "alertContext": _context(draw, service),
        "customProperties": _maybe(draw, json_values),
    }
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {k: v for k, v in data.items() if v is not ABSENT},
    }


TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z"


@SETTINGS
@given(field_payloads())
def test_field_payloads_normalize_or_get_a_documented_400(payload: dict[str, Any]) -> None:
    """Always 202 (a valid message) or a documented 400, never anything else (a 5xx)."""
    alert = _check(json.dumps(payload).encode())
    essentials = payload["data"]["essentials"]
    condition = essentials.get("monitorCondition")
    no_condition = condition is None or (isinstance(condition, str) and not condition.strip())
    if alert is None:
        if any(_outside_time_range(essentials.get(f)) for f in ESSENTIAL_TIMES):
            return  # documented 400: alert times outside 1970..9999 (docs/queue-message.md)
        # otherwise the only thing such a payload can be rejected for is its condition
        assert condition not in ("Fired", "Resolved", "fired", "RESOLVED")
        if no_condition:
            assert essentials.get("monitoringService") not in STATELESS_SERVICES
        return
    if no_condition:
        assert alert["monitorCondition"] == "Fired"
    for field in ("firedAt", "resolvedAt", "occurredAt", "receivedAt"):
        assert alert[field] is None or re.fullmatch(TIMESTAMP, alert[field], re.ASCII)
    keys = [ci["key"] for ci in alert["configurationItems"]]
    if keys:
        assert alert["primaryTarget"] in keys
    else:
        assert alert["primaryTarget"] is None
    for ci in alert["configurationItems"]:
        assert isinstance(ci["displayName"], str)
        assert ci["displayName"].strip()
        if ci["kind"] == "azureResource" and ci["name"]:
            assert ci["displayName"].endswith(ci["name"])


@SETTINGS
@given(
    st.sampled_from(sorted(STATELESS_SERVICES)),
    st.sampled_from([None, "", "  ", ABSENT]),
    st.lists(
        st.sampled_from(
            [
                "alertRule",
                "severity",
                "signalType",
                "alertTargetIDs",
                "originAlertId",
                "configurationItems",
                "firedDateTime",
            ]
        )
    ),
    st.booleans(),
)
def test_stateless_services_without_a_condition_are_always_accepted_as_fired(
    service: str, condition: Any, nulled: list[str], drop_instead: bool
) -> None:
    payload = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUB}/providers/Microsoft.CostManagement/alerts/a",
                "monitoringService": service,
                "alertRule": "r",
                "severity": "Sev3",
                "signalType": "Activity Log",
                "alertTargetIDs": [RESOURCE_IDS[2]],
                "originAlertId": "o",
                "configurationItems": ["vm1"],
                "firedDateTime": "2026-01-02T03:04:05",
            },
            "alertContext": None,
        },
    }
    essentials = payload["data"]["essentials"]
    if condition is not ABSENT:
        essentials["monitorCondition"] = condition
    for field in nulled:
        if drop_instead:
            essentials.pop(field, None)
        else:
            essentials[field] = None
    alert = _check(json.dumps(payload).encode())
    assert alert is not None
    assert alert["monitorCondition"] == "Fired"


@SETTINGS
@given(
    st.sampled_from(
        ["Computer", "Host", "HostName", "Node", "NodeName", "VMName", "cloud/roleInstance"]
    ),
    st.sampled_from([str.lower, str.upper, str.title, lambda s: s]),
    st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
    st.sampled_from(["Platform", None]),
)
def test_a_host_dimension_of_a_metric_alert_is_its_primary_target(
    name: str, recase: Any, host: str, service: str | None
) -> None:
    payload = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/m",
                "monitorCondition": "Fired",
                "monitoringService": service,
                "alertTargetIDs": [RESOURCE_IDS[4]],
                "configurationItems": ["law"],
            },
            "alertContext": {
                "condition": {
                    "allOf": [
                        {
                            "metricName": "Heartbeat",
                            "dimensions": [
                                {"name": "InstanceName", "value": "_Total"},
                                {"name": recase(name), "value": host},
                            ],
                        }
                    ]
                }
            },
        },
    }
    alert = _check(json.dumps(payload).encode())
    assert alert is not None
    keys = [ci["key"] for ci in alert["configurationItems"]]
    expected = keys[0] if host == "law" else host  # a host named like the target folds
    assert expected in keys
    assert alert["primaryTarget"] == expected
