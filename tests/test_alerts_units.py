"""The building blocks: timestamps, configuration items, vocabularies, bounded values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.alerts.configuration_items import collect, log_dimension_value, parse_resource_id
from shared.alerts.enums import (
    event_level,
    monitor_condition,
    operator_symbol,
    severity,
    signal_type,
)
from shared.alerts.links import portal_link, safe_url
from shared.alerts.summaries import summarize
from shared.alerts.timestamps import format_timestamp, parse_timestamp, timestamp
from shared.alerts.values import Budget, Keys, decode_embedded_json, number, text

# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2021-10-26T12:34:56Z", "2021-10-26T12:34:56.000000Z"),
        ("2021-10-26T12:34:56.1Z", "2021-10-26T12:34:56.100000Z"),
        ("2025-04-15T18:17:12.851Z", "2025-04-15T18:17:12.851000Z"),
        ("2021-10-26T12:34:56.123456Z", "2021-10-26T12:34:56.123456Z"),
        # .NET's 7 digits (and more) are truncated, never rounded up into the next second
        ("2019-03-22T13:58:24.3713213Z", "2019-03-22T13:58:24.371321Z"),
        ("2021-10-26T12:34:56.9999999Z", "2021-10-26T12:34:56.999999Z"),
        ("2021-10-26T12:34:56.123456789Z", "2021-10-26T12:34:56.123456Z"),
        ("2019-03-22T13:56:31.2917159+00:00", "2019-03-22T13:56:31.291715Z"),
        ("2019-06-24T15:42:54.074+00:00", "2019-06-24T15:42:54.074000Z"),
        ("2021-10-26T14:34:56.5+02:00", "2021-10-26T12:34:56.500000Z"),
        ("2021-10-26T10:04:56-0230", "2021-10-26T12:34:56.000000Z"),
        ("2021-10-26T12:34:56+00", "2021-10-26T12:34:56.000000Z"),
        ("2021-10-26 12:34:56", "2021-10-26T12:34:56.000000Z"),  # naive: UTC
        ("2021-10-26t12:34:56z", "2021-10-26T12:34:56.000000Z"),
        ("2021-10-26T12:34", "2021-10-26T12:34:00.000000Z"),
        ("2021-10-26T12:34:56,5Z", "2021-10-26T12:34:56.500000Z"),
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000Z"),
        ("2021-10-01T00:30:00+01:00", "2021-09-30T23:30:00.000000Z"),  # crosses a day
        ("3/22/2019 1:36:33 PM", "2019-03-22T13:36:33.000000Z"),  # log alerts V1
        ("3/22/2019 12:05:00 AM", "2019-03-22T00:05:00.000000Z"),
        ("12/31/2019 12:00:00 PM", "2019-12-31T12:00:00.000000Z"),
        ("Wed, 21 Aug 2019 16:17:47 GMT", "2019-08-21T16:17:47.000000Z"),  # autoscale
        ("21 Aug 2019 18:17:47 +0200", "2019-08-21T16:17:47.000000Z"),
    ],
)
def test_timestamps_are_normalized(raw: str, expected: str) -> None:
    assert timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "now",
        1634567890,
        1634567890.5,
        True,
        ["2021-10-26T12:34:56Z"],
        "2021-02-29T00:00:00Z",
        "2021-04-31T00:00:00Z",
        "2021-13-01T00:00:00Z",
        "2021-10-26T24:00:00Z",
        "2021-10-26T23:60:00Z",
        "2021-10-26T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:30:00-01:00",  # after year 9999 once in UTC
        "2021-10-26T12:34:56+25:00",
        "13/22/2019 1:36:33 PM",
        "3/22/2019 13:36:33 PM",
        "Wed, 21 Foo 2019 16:17:47 GMT",
        "2021-10-26T12:34:56Z" + " " * 100,
        "2" * 10_000,
        "2021-10-26T12:34:56.1234567890123456789Z" * 3,
    ],
)
def test_unparseable_timestamps_are_none(raw: object) -> None:
    assert timestamp(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "\u0662\u0660\u0661\u0669-03-22T13:58:24Z",  # Arabic-Indic digits
        "2019-03-22T13:\uff15\uff18:24Z",  # fullwidth digits
    ],
)
def test_timestamps_with_other_digits_come_out_in_ascii(raw: str) -> None:
    """The documented format is fixed width ASCII: no text is ever passed through as sent."""
    out = timestamp(raw)
    assert out == "2019-03-22T13:58:24.000000Z"
    assert out.isascii()


def test_output_format_sorts_like_time() -> None:
    raws = ["2021-10-26T12:34:56.1Z", "2021-10-26T12:34:56Z", "2021-10-26T14:34:55+02:00"]
    moments = {raw: parse_timestamp(raw) for raw in raws}
    ordered = sorted(raws, key=lambda raw: moments[raw] or datetime.min.replace(tzinfo=UTC))
    rendered = [timestamp(raw) or "" for raw in raws]
    assert sorted(rendered) == [timestamp(raw) for raw in ordered]


def test_format_timestamp() -> None:
    assert (
        format_timestamp(datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2021-01-02T03:04:05.000000Z"
    )
    assert format_timestamp(datetime(2021, 1, 2, 3, 4, 5, 6)) == "2021-01-02T03:04:05.000006Z"


# --- configuration items --------------------------------------------------------------------

VM = (
    "/subscriptions/AAAA0A0A-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/Test-RG"
    "/providers/Microsoft.Compute/virtualMachines/Test-VM"
)


def test_arm_ids_in_different_casing_deduplicate_first_spelling_wins() -> None:
    items, omitted, _ = collect(
        [VM.lower() + "/"],
        [VM, VM.upper(), " " + VM + " "],
        [VM.replace("/providers", "//providers")],
    )
    assert omitted == 0
    assert len(items) == 1
    item = items[0]
    assert item["key"] == VM.lower()
    assert item["display"] == VM.lower() + "/"
    assert item["kind"] == "azureResource"


def test_arm_id_parts() -> None:
    assert parse_resource_id(VM) == {
        "subscriptionId": "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e",
        "resourceGroup": "Test-RG",
        "provider": "Microsoft.Compute",
        "resourceType": "Microsoft.Compute/virtualMachines",
        "name": "Test-VM",
    }


@pytest.mark.parametrize(
    ("resource_id", "rg", "resource_type", "name"),
    [
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/srv/databases/db",
            "rg",
            "Microsoft.Sql/servers/databases",
            "db",
        ),
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default/",
            "rg",
            "Microsoft.Network/virtualNetworks/subnets",
            "default",
        ),
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.AlertsManagement/alerts/a1",
            "rg",
            "Microsoft.AlertsManagement/alerts",
            "a1",
        ),
        (
            "/subscriptions/s/providers/Microsoft.CostManagement/alerts/Test_Alert",
            None,
            "Microsoft.CostManagement/alerts",
            "Test_Alert",
        ),
        ("/subscriptions/s", None, "Microsoft.Resources/subscriptions", "s"),
        ("/subscriptions/s/", None, "Microsoft.Resources/subscriptions", "s"),
        ("/subscriptions/s/resourcegroups/rg", "rg", "Microsoft.Resources/resourceGroups", "rg"),
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites",
            "rg",
            "Microsoft.Web/sites",
            None,
        ),
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/providers",
            "rg",
            "Microsoft.Web/sites",
            "providers",
        ),
        ("/subscriptions/s/resourceGroups/rg/something/else", "rg", None, "else"),
        (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/café#1",
            "rg",
            "Microsoft.Web/sites",
            "café#1",
        ),
        (
            "/SUBSCRIPTIONS/s/RESOURCEGROUPS/rg/PROVIDERS/Microsoft.Web/sites/x",
            "rg",
            "Microsoft.Web/sites",
            "x",
        ),
    ],
)
def test_arm_id_shapes(
    resource_id: str, rg: str | None, resource_type: str | None, name: str | None
) -> None:
    parts = parse_resource_id(resource_id)
    assert parts is not None
    assert parts["subscriptionId"] == "s"
    assert (parts["resourceGroup"], parts["resourceType"], parts["name"]) == (
        rg,
        resource_type,
        name,
    )


@pytest.mark.parametrize(
    "value",
    [
        "test-VM",
        "budgets",
        "/subscriptions",
        "/subscriptions/",
        "subscriptionsx/a",
        "/providers/Microsoft.Management/managementGroups/mg",
        "ünïcödé-ħost",
        "a/b#c?d",
    ],
)
def test_other_values_are_plain_names(value: str) -> None:
    items, _, _ = collect([value], None, [])
    assert len(items) == 1
    item = items[0]
    assert (item["kind"], item["key"], item["display"], item["name"]) == (
        "name",
        value.lower(),
        value,
        value,
    )
    assert item["subscriptionId"] is None
    assert item["resourceType"] is None


def test_names_dedupe_case_insensitively_and_skip_junk() -> None:
    items, omitted, _ = collect(
        ["WEB01", "web01", " web01 ", "", "  ", None, {"a": 1}, ["x"], True], "web01", [42, "42"]
    )
    assert [i["key"] for i in items] == ["web01", "42"]
    assert omitted == 0


def test_the_target_short_name_folds_into_the_target_resource() -> None:
    items, _, _ = collect(["test-vm", "other-computer"], [VM], [])
    assert [i["kind"] for i in items] == ["name", "azureResource"]
    assert items[0]["key"] == "other-computer"


def test_source_order_is_kept() -> None:
    items, _, _ = collect(
        ["ci"], ["/subscriptions/s/resourceGroups/rg"], ["dimension-computer", "affected"]
    )
    assert [i["display"] for i in items] == [
        "ci",
        "/subscriptions/s/resourceGroups/rg",
        "dimension-computer",
        "affected",
    ]


def test_too_many_or_too_long_items_are_counted_not_kept() -> None:
    items, omitted, _ = collect([f"computer-{i:03d}" for i in range(60)], None, [])
    assert len(items) == 20
    assert omitted == 40
    items, omitted, _ = collect(["x" * 1025, "y" * 1000, "z" * 1000, "v" * 1000, "w"], None, [])
    assert [len(i["key"]) for i in items] == [1000, 1000]  # then the keys budget is spent
    assert omitted == 3


def test_a_single_string_where_a_list_was_documented() -> None:
    items, _, _ = collect("web01", VM, [])
    assert [i["kind"] for i in items] == ["name", "azureResource"]


@pytest.mark.parametrize(
    ("dimensions", "expected"),
    [
        (
            [
                {"name": "Computer", "value": "c1"},
                {"name": "_ResourceId", "value": "/subscriptions/s/x"},
            ],
            "/subscriptions/s/x",
        ),
        ([{"name": "Computer", "value": "c1"}, {"name": "Resource", "value": "r1"}], "r1"),
        ([{"name": "resourceid", "value": "rid"}, {"name": "RESOURCE", "value": "r1"}], "rid"),
        ([{"Name": "Computer", "Value": "c1"}], "c1"),
        ([{"name": "_ResourceId", "value": ""}, {"name": "Computer", "value": "c1"}], "c1"),
        ([{"name": "IP", "value": "1.1.1.1"}], None),
        (None, None),
        ("Computer=c1", None),
        ([None, 1, {"name": 5}], None),
    ],
)
def test_log_alert_dimension_priority(dimensions: object, expected: object) -> None:
    assert log_dimension_value(dimensions) == expected


# --- vocabularies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sev0", "Sev0"),
        ("Sev4", "Sev4"),
        ("sev2", "Sev2"),
        ("SEV 3", "Sev3"),
        (" Sev1 ", "Sev1"),
        ("2", "Sev2"),
        (2, "Sev2"),
        (0, "Sev0"),
        (3.0, "Sev3"),
        ("Critical", "Sev0"),
        ("warning", "Sev2"),
        ("Verbose", "Sev4"),
        ("Sev5", None),
        (5, None),
        (-1, None),
        (2.5, None),
        (True, None),
        (None, None),
        ("", None),
        ("high", None),
        (float("nan"), None),
        ([2], None),
        ("Sev2" * 50, None),
    ],
)
def test_severity(raw: object, expected: str | None) -> None:
    assert severity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Metric", "Metric"),
        ("Log", "Log"),
        ("Activity Log", "ActivityLog"),
        ("ActivityLog", "ActivityLog"),
        ("activity log", "ActivityLog"),
        ("ACTIVITY_LOG", "ActivityLog"),
        ("metric", "Metric"),
        ("Activity-Log", "ActivityLog"),
        ("Prometheus", None),
        ("", None),
        (None, None),
        (1, None),
    ],
)
def test_signal_type(raw: object, expected: str | None) -> None:
    assert signal_type(raw) == expected


def test_monitor_condition() -> None:
    assert [monitor_condition(v) for v in ("Fired", "fired", "RESOLVED", " resolved ")] == [
        "Fired",
        "Fired",
        "Resolved",
        "Resolved",
    ]
    assert [monitor_condition(v) for v in ("Active", "", None, 1, "Fired" * 10)] == [None] * 5


def test_event_level_numbers_and_names() -> None:
    assert [event_level(v) for v in (0, 3, "3", 4, "Informational", 9, None, True)] == [
        "Critical",
        "Informational",
        "Informational",
        "Verbose",
        "Informational",
        "9",
        None,
        None,
    ]


def test_operator_symbols() -> None:
    spelled = (
        "GreaterThan",
        "Greater Than",
        "LowerThan",
        "Less Than",
        "LessThanOrEqual",
        "Equals",
        "GreaterOrLessThan",
    )
    assert [operator_symbol(v) for v in spelled] == [">", ">", "<", "<", "<=", "=", "outside"]
    assert operator_symbol("Between") is None
    assert operator_symbol(None) is None


# --- bounded values -------------------------------------------------------------------------


def test_text_coerces_scalars_and_refuses_containers() -> None:
    assert [text(v, 64) for v in ("a", "", 1, 2.5, True, None, [1], {"a": 1}, float("inf"))] == [
        "a",
        None,
        "1",
        "2.5",
        "true",
        None,
        None,
        None,
        None,
    ]


def test_text_truncates_by_escaped_size_with_a_marker() -> None:
    out = text("x" * 1000, 100)
    assert out is not None
    assert out.endswith("…[truncated 932 chars]")
    assert len(out) <= 100
    for s in ("\x00" * 1000, "é" * 1000, "😀" * 1000, "a\nb" * 500):
        cut = text(s, 256)
        assert cut is not None
        assert len(json.dumps(cut)) - 2 <= 256
        assert "truncated" in cut


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25", 25),
        ("007", 7),
        (" 25 ", 25),
        ("-4", -4),
        ("+4", 4),
        ("0.3", 0.3),
        (" 0.3 ", 0.3),
        ("1e3", 1000.0),
        ("2.50", 2.5),
        (7, 7),
        (7.5, 7.5),
        ("12345678901234567890", "12345678901234567890"),  # an id, not a quantity: exact
        ("$50.00", "$50.00"),
        ("0.45 sec", "0.45 sec"),
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("1e999", "1e999"),
        ("١٢", "١٢"),
        ("1_000", "1_000"),
        (float("nan"), None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_number_parses_numeric_text_only(raw: object, expected: object) -> None:
    assert number(raw) == expected
    assert type(number(raw)) is type(expected)


def test_keys_view_respells_only_when_needed() -> None:
    keys = Keys("alertId", "alertRuleId")
    same = {"alertId": 1}
    assert keys.view(same) is same
    assert keys.view({"ALERTID": 1, "alertRuleID": 2, "extra": 3}) == {
        "alertId": 1,
        "alertRuleId": 2,
        "extra": 3,
    }
    assert keys.view({"alertruleid": None, "alertRuleID": "x"}) == {"alertRuleId": "x"}


def test_budget_copy_is_bounded_and_strict() -> None:
    deep: object = "leaf"
    for _ in range(50):
        deep = {"k": [deep]}
    wide = {f"key{i}": {"n": float("nan"), "s": "v" * 10_000} for i in range(1000)}
    for value in (deep, wide, [[[]]] * 10_000):
        budget = Budget(2000)
        copied = budget.copy(value)
        assert len(json.dumps(copied, allow_nan=False)) < 2600


def test_embedded_json_is_decoded_when_it_is_json() -> None:
    assert decode_embedded_json('{"a": 1}') == {"a": 1}
    assert decode_embedded_json(" [1]") == [1]
    for same in ("{not json", "plain", "", 5, None, "[" * 100_000):
        assert decode_embedded_json(same) == same


# --- links ----------------------------------------------------------------------------------


def test_only_http_links_survive() -> None:
    assert safe_url("https://portal.azure.com/#blade/x") == "https://portal.azure.com/#blade/x"
    assert safe_url("HTTP://example.com/a") == "HTTP://example.com/a"
    for bad in (
        "javascript:alert(1)",
        "data:text/html,x",
        "//evil",
        "https://a b",
        "https://x\n",
        "ftp://x/y",
        5,
        None,
        "https://" + "a" * 5000,
    ):
        assert safe_url(bad) is None


def test_portal_link_encodes_the_alert_id() -> None:
    link = portal_link("/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a b#c")
    assert link == (
        "https://portal.azure.com/#view/Microsoft_Azure_Monitoring_Alerts/AlertDetails.ReactView"
        "/alertId~/%2Fsubscriptions%2Fs%2Fproviders%2FMicrosoft.AlertsManagement%2Falerts%2Fa%20b%23c"
    )
    assert portal_link("not-an-arm-id") is None


# --- summaries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "context", "expected"),
    [
        ("Platform", {}, "metric"),
        ("platform", {}, "metric"),
        ("Log Alerts V2", {}, "logV2"),
        (
            "Activity Log - Recommendation",
            {"properties": {"recommendationName": "n"}},
            "recommendation",
        ),
        ("Activity Log - Something New", {}, "activityLog"),
        ("Cost Alerts", {}, "budget"),
        ("Brand New Service", {"a": 1, "b": {"nested": 1}}, "generic"),
        (None, {"condition": {"allOf": []}, "conditionType": "LogQueryCriteria"}, "logV2"),
        (None, {"condition": {"allOf": []}}, "metric"),
        (None, {"SearchQuery": "x"}, "logV1"),
        (None, {"AlertData": {}}, "budget"),
        (None, {"operationName": "x", "eventSource": "ResourceHealth"}, "resourceHealth"),
        (None, {"expression": "up", "labels": {}}, "prometheus"),
        (None, {"SmartDetectorId": "x"}, "smartDetector"),
    ],
)
def test_builder_choice(service: str | None, context: dict[str, object], expected: str) -> None:
    assert summarize(service, context).type == expected


def test_generic_summary_keeps_top_level_scalars() -> None:
    extract = summarize(
        "Brand New Service", {"a": 1, "b": {"nested": 1}, "c": "x" * 5000, "d": None}
    )
    assert extract.fields["a"] == 1
    assert "b" not in extract.fields
    assert extract.fields["d"] is None
    assert len(extract.fields["c"]) <= 256
