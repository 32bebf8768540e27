"""Bad request bodies: every one is a SchemaError with a code, a message and a field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.alerts import SchemaError, is_supported, major_version, normalize, parse_payload
from tests.alert_samples import load, load_bytes

RECEIVED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def _normalize(payload: dict[str, Any]) -> dict[str, Any]:
    return normalize(payload, tenant_id=None, correlation_id="corr", received_at=RECEIVED_AT)


def _roundtrip(payload: object) -> dict[str, Any]:
    return _normalize(parse_payload(json.dumps(payload).encode()))


def _error(body: bytes) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        _normalize(parse_payload(body))
    assert caught.value.message
    assert str(caught.value) == caught.value.message
    return caught.value


def _metric() -> dict[str, Any]:
    return copy.deepcopy(load("metric-alert-static-fired"))


# --- the body as a whole --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"", "empty_body", "empty"),
        (b"  \r\n\t", "empty_body", "empty"),
        (b"\xef\xbb\xbf", "empty_body", "empty"),  # a BOM and nothing else
        (b"\xff\xfe{}", "invalid_utf8", "UTF-8"),
        (b'{"schemaId": "\xc3\x28"}', "invalid_utf8", "UTF-8"),
        (b"{not json", "invalid_json", "not valid JSON"),
        (b'{"a": 1,}', "invalid_json", "line 1"),
        (b"[1, 2]", "not_an_object", "array"),
        (b'"azureMonitorCommonAlertSchema"', "not_an_object", "string"),
        (b"42", "not_an_object", "number"),
        (b"null", "not_an_object", "null"),
        (b"[" * 10_000 + b"]" * 10_000, "nesting_too_deep", "nested too deeply"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nesting_too_deep", "nested too deeply"),
    ],
)
def test_unusable_bodies(body: bytes, code: str, says: str) -> None:
    error = _error(body)
    assert error.code == code
    assert says in error.message
    assert error.field is None


def test_a_utf8_bom_is_tolerated() -> None:
    assert parse_payload(b"\xef\xbb\xbf" + load_bytes("metric-alert-static-fired"))


def test_bytearray_memoryview_and_str_bodies() -> None:
    body = load_bytes("metric-alert-static-fired")
    for variant in (bytearray(body), memoryview(body), body.decode()):
        assert parse_payload(variant)["schemaId"] == "azureMonitorCommonAlertSchema"


@pytest.mark.parametrize(
    "schema_id",
    [None, "AzureMonitorMetricAlert", "Microsoft.Insights/activityLogs", "", 42, ["x"]],
)
def test_other_schemas_are_told_to_enable_the_common_schema(schema_id: object) -> None:
    payload = _metric()
    if schema_id is None:
        del payload["schemaId"]
    else:
        payload["schemaId"] = schema_id
    error = _error(json.dumps(payload).encode())
    assert (error.code, error.field) == ("not_common_schema", "schemaId")
    assert '"Enable the common alert schema" to Yes' in error.message


def test_log_alert_v1_without_schema_id_is_not_common_schema() -> None:
    legacy = {"SubscriptionId": "s", "AlertRuleName": "r", "SearchQuery": "Heartbeat"}
    assert _error(json.dumps(legacy).encode()).code == "not_common_schema"


@pytest.mark.parametrize(
    "schema_id",
    [
        "azureMonitorCommonAlertSchema",
        "AZUREMONITORCOMMONALERTSCHEMA",
        " azuremonitorcommonalertschema ",
    ],
)
def test_schema_id_is_compared_case_insensitively(schema_id: str) -> None:
    payload = _metric()
    payload["schemaId"] = schema_id
    assert _roundtrip(payload)["alertId"]


def test_envelope_keys_in_other_casing() -> None:
    payload = _metric()
    payload = {"SchemaID": payload["schemaId"], "DATA": payload["data"]}
    payload["DATA"]["Essentials"] = payload["DATA"].pop("essentials")
    assert _roundtrip(payload)["monitorCondition"] == "Fired"


# --- required fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (lambda p: p.pop("data"), "missing_field", "data"),
        (lambda p: p.update(data=[1]), "invalid_field", "data"),
        (lambda p: p["data"].pop("essentials"), "missing_field", "data.essentials"),
        (lambda p: p["data"].update(essentials=None), "missing_field", "data.essentials"),
        (lambda p: p["data"].update(essentials="x"), "invalid_field", "data.essentials"),
        (
            lambda p: p["data"]["essentials"].pop("alertId"),
            "missing_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId=None),
            "missing_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId=""),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId="  "),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId=42),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId={"id": 1}),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId="a" * 1025),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].update(alertId="\ud800x"),
            "invalid_field",
            "data.essentials.alertId",
        ),
        (
            lambda p: p["data"]["essentials"].pop("monitorCondition"),
            "missing_field",
            "data.essentials.monitorCondition",
        ),
        (
            lambda p: p["data"]["essentials"].update(monitorCondition="Active"),
            "invalid_field",
            "data.essentials.monitorCondition",
        ),
        (
            lambda p: p["data"]["essentials"].update(monitorCondition=1),
            "invalid_field",
            "data.essentials.monitorCondition",
        ),
        (
            lambda p: p["data"]["essentials"].update(monitorCondition=""),
            "invalid_field",
            "data.essentials.monitorCondition",
        ),
    ],
)
def test_required_fields(mutate: Any, code: str, field: str) -> None:
    payload = _metric()
    mutate(payload)
    error = _error(json.dumps(payload).encode())
    assert (error.code, error.field) == (code, field)


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [("fired", "Fired"), ("RESOLVED", "Resolved"), (" Resolved ", "Resolved")],
)
def test_monitor_condition_in_any_casing(sent: str, canonical: str) -> None:
    payload = _metric()
    payload["data"]["essentials"]["monitorCondition"] = sent
    assert _roundtrip(payload)["monitorCondition"] == canonical


def test_normalize_rejects_a_non_object_payload() -> None:
    with pytest.raises(SchemaError):
        normalize([], tenant_id=None, correlation_id="c", received_at=RECEIVED_AT)  # type: ignore[arg-type]


# --- tolerated: everything else --------------------------------------------------------


def test_minimal_alert() -> None:
    payload = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": {"alertId": "a-1", "monitorCondition": "Fired"}},
    }
    alert = _roundtrip(payload)
    assert alert["alertId"] == "a-1"
    assert alert["summary"] == {"type": "generic", "title": "Azure Monitor alert", "fields": {}}
    assert alert["configurationItems"] == []
    assert alert["subscriptionId"] is None
    assert alert["links"] == {"investigation": None, "portal": None, "searchResults": []}


def test_nulls_and_swapped_types_everywhere() -> None:
    payload = _metric()
    essentials = payload["data"]["essentials"]
    for key in list(essentials):
        if key not in ("alertId", "monitorCondition"):
            essentials[key] = None
    payload["data"]["alertContext"] = {"condition": {"allOf": [None, 1, "x", {"metricName": 5}]}}
    payload["data"]["customProperties"] = ["not", "an", "object"]
    alert = _roundtrip(payload)
    assert alert["summary"]["fields"]["conditions"][0]["metricName"] == "5"
    assert alert["customProperties"] is None
    assert alert["severity"] is None
    assert alert["firedAt"] is None


def test_alert_rule_id_in_either_spelling() -> None:
    for key in ("alertRuleId", "alertRuleID", "ALERTRULEID"):
        payload = _metric()
        payload["data"]["essentials"][key] = (
            "/subscriptions/ABC/resourceGroups/rg/providers/microsoft.insights/metricAlerts/r"
        )
        alert = _roundtrip(payload)
        assert alert["alertRuleId"].endswith("/metricAlerts/r")
        assert alert["subscriptionId"] == "abc"  # the rule's subscription wins, lowercased


def test_same_key_in_two_casings_prefers_the_non_null_value() -> None:
    payload = _metric()
    payload["data"]["essentials"]["alertRuleId"] = None
    payload["data"]["essentials"]["alertRuleID"] = "/subscriptions/s/providers/x/y/z"
    assert _roundtrip(payload)["alertRuleId"] == "/subscriptions/s/providers/x/y/z"


def test_non_finite_numbers_are_kept_as_text_and_everything_stays_strict_json() -> None:
    body = load_bytes("metric-alert-static-fired")
    body = body.replace(b'"metricValue": 100', b'"metricValue": NaN')
    body = body.replace(b'"threshold": "0"', b'"threshold": 1e999999')
    body = body.replace(b'"customKey1": "value1"', b'"customKey1": -Infinity')
    payload = parse_payload(body)
    json.dumps(payload, allow_nan=False)  # the raw copy the queue keeps
    alert = _normalize(payload)
    condition = alert["summary"]["fields"]["conditions"][0]
    assert (condition["metricValue"], condition["threshold"]) == ("NaN", "1e999999")
    assert alert["customProperties"]["customKey1"] == "-Infinity"
    json.dumps(alert, allow_nan=False)


def test_integers_beyond_pythons_digit_limit_are_kept_as_text() -> None:
    huge = "9" * 100_000
    body = load_bytes("metric-alert-static-fired").replace(
        b'"metricValue": 100', f'"metricValue": {huge}'.encode()
    )
    payload = parse_payload(body)
    json.dumps(payload, allow_nan=False)
    alert = _normalize(payload)
    value = alert["summary"]["fields"]["conditions"][0]["metricValue"]
    assert isinstance(value, str)
    assert value.startswith("999")
    assert "truncated" in value
    json.dumps(alert, allow_nan=False)


def test_lone_surrogates_become_replacement_characters() -> None:
    payload = _metric()
    payload["data"]["essentials"]["description"] = "bad \ud800 half"
    payload["data"]["essentials"]["configurationItems"] = ["vm-\udfff"]
    alert = _roundtrip(payload)
    assert alert["description"] == "bad \ufffd half"
    json.dumps(alert, ensure_ascii=False).encode("utf-8")


def test_received_at_in_any_timezone_is_rendered_in_utc() -> None:
    payload = parse_payload(load_bytes("metric-alert-static-fired"))
    plus_two = timezone(timedelta(hours=2))
    for received in (datetime(2025, 1, 1, 14, 0, tzinfo=plus_two), datetime(2025, 1, 1, 12, 0)):
        alert = normalize(payload, tenant_id="t", correlation_id="c", received_at=received)
        assert alert["receivedAt"] == "2025-01-01T12:00:00.000000Z"


def test_normalize_does_not_modify_the_payload() -> None:
    payload = parse_payload(load_bytes("log-alert-v2"))
    before = copy.deepcopy(payload)
    _normalize(payload)
    assert payload == before


# --- versioning ----------------------------------------------------------------------------


def test_versions() -> None:
    alert = _normalize(parse_payload(load_bytes("metric-alert-static-fired")))
    assert major_version(alert) == 1
    assert is_supported(alert)
    assert is_supported({**alert, "schemaVersion": "1.7"})  # minor bumps only add fields
    assert not is_supported({**alert, "schemaVersion": "2.0"})
    for bad in (None, "", "x.1", 1, "1.x", "١.0"):
        assert not is_supported({"schemaVersion": bad})
        with pytest.raises(SchemaError) as caught:
            major_version({"schemaVersion": bad})
        assert caught.value.code == "unsupported_version"
