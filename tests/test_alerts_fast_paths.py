"""The normalizer's fast paths give exactly what the general paths give.

Each fast path (issue #4: normalization at most ~2x json.loads) skips work for the usual
input; these tests pin it to the slow path it shortcuts, on the usual input and on the
edges where the shortcut must step aside.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.alerts import SchemaError, normalize, parse_payload
from shared.alerts.configuration_items import parse_resource_id, subscription_id
from shared.alerts.links import MAX_SEARCH_LINKS, SEARCH_LINKS_BUDGET, safe_url, search_links
from shared.alerts.summaries import headline
from shared.alerts.timestamps import format_timestamp
from shared.alerts.values import Budget, Keys, decode_embedded_json, plain
from tests.alert_samples import load, wrap_context

RECEIVED_AT = datetime(2025, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None)


def _normalize(payload: dict[str, Any]) -> dict[str, Any]:
    return normalize(
        parse_payload(json.dumps(payload).encode()),
        tenant_id="tenant",
        correlation_id="corr",
        received_at=RECEIVED_AT,
    )


def _metric() -> dict[str, Any]:
    return copy.deepcopy(load("metric-alert-static-fired"))


# --- plain(): isascii() and isprintable(), cheaper on long strings --------------------------


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 500])
@pytest.mark.parametrize("odd", [None, *map(chr, range(32)), "\x7f", "\x80", "é", "\u2028", "😀"])
def test_plain_is_ascii_and_printable(length: int, odd: str | None) -> None:
    base = "a" * length
    for s in (base, *(() if odd is None else (odd + base, base + odd, base[:30] + odd + base))):
        assert plain(s) is (s.isascii() and s.isprintable()), repr(s)


@SETTINGS
@given(st.text(max_size=200), st.integers(min_value=0, max_value=3))
def test_plain_agrees_with_isprintable_on_any_text(s: str, repeat: int) -> None:
    s = s * (repeat + 1)
    assert plain(s) is (s.isascii() and s.isprintable())


# --- subscription_id(): only the subscription of an ARM id ----------------------------------

SEGMENTS = ["subscriptions", "SubScriptions", "resourceGroups", "providers", "", " ", "rg"]
SEGMENTS += ["Microsoft.Compute", "virtualMachines", "vm", "ABC-Def", "AΣ", "İx", "\u212a"]


@pytest.mark.parametrize(
    "resource_id",
    [
        "/subscriptions/ABC/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
        "/SUBSCRIPTIONS/ABC/providers/Microsoft.AlertsManagement/alerts/a",
        "/subscriptions/ABC",
        "/subscriptions/ABC/",
        "/subscriptions/ABC ",
        "/subscriptions//ABC/x",
        "/subscriptions/",
        "subscriptions/ABC/x",
        "  /subscriptions/ABC/x",
        "/subscriptions/ /x",
        "/providers/Microsoft.Authorization/policyDefinitions/p",
        "budgets",
        "",
    ],
)
def test_subscription_id_is_the_one_parse_resource_id_gives(resource_id: str) -> None:
    parts = parse_resource_id(resource_id)
    assert subscription_id(resource_id) == (None if parts is None else parts["subscriptionId"])


@SETTINGS
@given(
    st.sampled_from(["", "/", " /", "  "]),
    st.lists(st.sampled_from(SEGMENTS) | st.text(max_size=6), max_size=10),
    st.sampled_from(["", "/", " ", "//"]),
)
def test_subscription_id_agrees_with_the_full_parse(head: str, parts: list[str], tail: str) -> None:
    resource_id = head + "/".join(parts) + tail
    parsed = parse_resource_id(resource_id)
    assert subscription_id(resource_id) == (None if parsed is None else parsed["subscriptionId"])


# --- Budget.copy(): flat string objects are checked in bulk -----------------------------------


def _item_by_item(budget: Budget, value: object, **kwargs: Any) -> Any:
    """Budget.copy with the bulk path switched off: the reference it must agree with."""

    class ItemByItem(Budget):
        __slots__ = ()

        def _flat_strings(self, obj: dict[str, Any], cap: int) -> dict[str, Any] | None:
            return None

    reference = ItemByItem(budget.left)
    copied = reference.copy(value, **kwargs)
    return copied, reference.left


flat_keys = st.sampled_from(["k", "key", "Ké", "k\n", "K" * 129, ""]) | st.text(max_size=12)
flat_texts = st.sampled_from(["", "v", "value", "é", "\x00", "a b", "x" * 130, "y" * 600])
flat_texts |= st.text(alphabet="abc XYZ-_./:", max_size=40) | st.text(max_size=40)


usual_text = st.text(alphabet=[chr(c) for c in range(32, 127)], max_size=40)


@SETTINGS
@given(
    st.dictionaries(usual_text, usual_text, min_size=4, max_size=20)  # mostly the bulk path
    | st.dictionaries(flat_keys, flat_texts, min_size=4, max_size=25)
    | st.dictionaries(flat_keys, flat_texts | st.integers() | st.none(), max_size=25),
    st.integers(min_value=0, max_value=4000) | st.just(3072),
    st.sampled_from([8, 64, 256, 512]),
    st.sampled_from([4, 20, 20]),
    st.integers(min_value=1, max_value=4) | st.just(0),
)
def test_bulk_copy_equals_the_item_by_item_copy(
    obj: dict[str, Any], size: int, cap: int, max_items: int, depth: int
) -> None:
    kwargs = {"depth": depth, "max_items": max_items, "cap": cap}
    expected, expected_left = _item_by_item(Budget(size), obj, **kwargs)
    budget = Budget(size)
    assert budget.copy(obj, **kwargs) == expected
    assert budget.left == expected_left


def test_bulk_copy_takes_the_usual_claims_and_charges_them_in_full() -> None:
    claims = {f"claim{i}": f"value {i}" for i in range(14)} | {"empty": ""}
    assert Budget(3072)._flat_strings(claims, 256) is not None  # the bulk path is taken
    budget = Budget(3072)
    copied = budget.copy(claims, depth=2)
    assert copied == {**claims, "empty": None}  # "" is null, as item by item
    assert budget.left == 3072 - 2 - sum(len(k) + len(v) + 6 for k, v in claims.items())
    assert _item_by_item(Budget(3072), claims, depth=2) == (copied, budget.left)


# --- decode_embedded_json(): raw_decode for the usual string ------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        '{"a": 1}',
        "[1, 2]",
        '{"a": 1} \n',
        ' {"a": 1}',
        "\n[1]\t",
        '\u00a0{"a": 1}',  # not JSON whitespace: json.loads refuses it, so it stays text
        '{"a": 1}x',
        '{"a": 1}{"b": 2}',
        '{"a": NaN, "b": Infinity}',
        '{"a": 1',
        "[" * 100_000,
        "{",
        "plain",
        "",
    ],
)
def test_embedded_json_decodes_exactly_what_json_loads_accepts(value: str) -> None:
    try:
        expected: object = json.loads(value)
    except (ValueError, RecursionError):
        expected = value
    decoded = decode_embedded_json(value)
    if isinstance(expected, dict) and any(isinstance(v, float) for v in expected.values()):
        assert isinstance(decoded, dict)
        assert decoded.keys() == expected.keys()
        assert all(math.isnan(v) or math.isinf(v) for v in decoded.values())
    else:
        assert decoded == expected


# --- parse_payload(): raw_decode, the general path for anything unusual ------------------------


def test_surrounding_whitespace_is_still_accepted() -> None:
    body = json.dumps(_metric())
    for text in (body, body + "\n", body + " \r\n\t", "\n " + body, "\ufeff" + body + "\n"):
        assert parse_payload(text.encode()) == _metric()


@pytest.mark.parametrize("tail", ["x", "{}", ' "more"', "\u00a0"])
def test_trailing_data_is_still_invalid_json_with_json_s_message(tail: str) -> None:
    body = json.dumps(_metric()) + tail
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body)
    with pytest.raises(SchemaError) as caught:
        parse_payload(body.encode())
    assert caught.value.code == "invalid_json"
    assert expected.value.msg in caught.value.message
    assert f"column {expected.value.colno}" in caught.value.message


def test_leading_whitespace_errors_report_the_original_position() -> None:
    with pytest.raises(SchemaError) as caught:
        parse_payload(b'\n\n  {"a": 1,}')
    assert caught.value.message.endswith("(line 3, column 11).")


def test_huge_integers_still_survive_the_fast_path() -> None:
    payload = parse_payload(
        b'{"schemaId": "azureMonitorCommonAlertSchema", "n": ' + b"9" * 5000 + b"}"
    )
    assert payload["n"] == "9" * 5000


# --- timestamps ----------------------------------------------------------------------------------


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05.000000Z"),
        (datetime(2025, 1, 2, 3, 4, 5, 7, tzinfo=UTC), "2025-01-02T03:04:05.000007Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999999), "9999-12-31T23:59:59.999999Z"),
        (
            datetime(2025, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            "2025-01-01T23:00:00.000000Z",
        ),
        (datetime(2025, 1, 2, tzinfo=timezone(timedelta(0))), "2025-01-02T00:00:00.000000Z"),
        (datetime(2025, 1, 2, tzinfo=_NoOffset()), "2025-01-02T00:00:00.000000Z"),
    ],
)
def test_format_timestamp_in_every_timezone(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


@pytest.mark.parametrize(
    ("sent", "field", "occurred"),
    [
        (
            "2019-08-25T11:11:34.2269098+00:00",
            "2019-08-25T11:11:34.226909Z",
            "2019-08-25T11:11:34.226909Z",
        ),
        ("3/22/2019 1:36:33 PM", "2019-03-22T13:36:33.000000Z", "2019-03-22T13:36:33.000000Z"),
        ("yesterday", "yesterday", None),  # kept as sent for display; firedAt orders it
        (1566711094, "1566711094", None),
        (None, None, None),
    ],
)
def test_activity_event_time_is_parsed_once_for_both_uses(
    sent: object, field: str | None, occurred: str | None
) -> None:
    payload = wrap_context("context-activity-log-administrative")
    payload["data"]["alertContext"]["eventTimestamp"] = sent
    alert = _normalize(payload)
    assert alert["summary"]["fields"]["eventTimestamp"] == field
    assert alert["occurredAt"] == (occurred or alert["firedAt"])


# --- case-insensitive keys: the view is the object itself when spelled as documented -------------


def test_documented_spelling_is_read_without_a_copy() -> None:
    keys = Keys("alertId", "alertRuleId")
    for same in ({}, {"alertId": 1}, {"alertId": 1, "alertRuleId": None}):
        assert keys.view(same) is same
    assert keys.view({"alertRuleID": 1}) == {"alertRuleId": 1}


@pytest.mark.parametrize(
    ("essentials", "expected"),
    [
        ({"alertRuleID": "/subscriptions/A/x"}, "/subscriptions/A/x"),
        ({"ALERTRULEID": "/subscriptions/A/x"}, "/subscriptions/A/x"),
        # both spellings: the first non-null value in the payload's order wins, as before
        (
            {"alertRuleID": "/subscriptions/A/x", "alertRuleId": "/subscriptions/B/x"},
            "/subscriptions/A/x",
        ),
        (
            {"alertRuleId": "/subscriptions/B/x", "alertRuleID": "/subscriptions/A/x"},
            "/subscriptions/B/x",
        ),
        ({"alertRuleID": None, "alertRuleId": "/subscriptions/B/x"}, "/subscriptions/B/x"),
        ({"alertRuleId": None, "alertruleid": "/subscriptions/C/x"}, "/subscriptions/C/x"),
        ({"alertRuleID": "", "alertRuleId": "/subscriptions/B/x"}, None),  # "" is a value
    ],
)
def test_alert_rule_id_in_any_casing_and_both_spellings(
    essentials: dict[str, Any], expected: str | None
) -> None:
    payload = _metric()
    payload["data"]["essentials"].pop("alertRuleId", None)
    payload["data"]["essentials"].update(essentials)
    alert = _normalize(payload)
    assert alert["alertRuleId"] == expected
    if expected is not None:
        assert alert["subscriptionId"] == expected.split("/")[2].lower()


def test_essentials_and_its_keys_in_mixed_casing_read_like_the_documented_ones() -> None:
    payload = _metric()
    documented = _normalize(payload)
    essentials = payload["data"].pop("essentials")
    payload["data"]["ESSENTIALS"] = {
        (key.upper() if i % 3 == 0 else key.swapcase() if i % 3 == 1 else key): value
        for i, (key, value) in enumerate(essentials.items())
    }
    assert _normalize(payload) == documented


# --- search links: a link repeated under several keys is checked once -----------------------


def _search_links_reference(contexts: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    """search_links as it was: every value through safe_url, then deduplicated."""
    found: list[str] = []
    used = 0
    for ctx in contexts:
        for key in keys:
            url = safe_url(ctx.get(key))
            if url is None or url in found:
                continue
            if len(found) >= MAX_SEARCH_LINKS:
                return found
            if used + len(url) > SEARCH_LINKS_BUDGET:
                continue
            found.append(url)
            used += len(url)
    return found


LINKS = ["https://a.example/x", " https://a.example/x ", "https://b.example/" + "y" * 1500]
LINKS += ["https://c.example/z", "javascript:x", "https://d.example/w", "https://e.example/v"]


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from("abcde"), st.sampled_from(LINKS)), max_size=4))
def test_search_links_skip_repeats_without_changing_the_result(
    contexts: list[dict[str, Any]],
) -> None:
    keys = tuple("abcde")
    assert search_links(contexts, keys) == _search_links_reference(contexts, keys)


# --- headline: the summary's own title first, fallbacks only when needed -----------------------


@pytest.mark.parametrize(
    ("title", "rule", "service", "expected"),
    [
        ("CPU > 80", "rule", "Platform", "CPU > 80"),
        ("", "rule", "Platform", "rule"),
        (None, None, "Platform", "Platform alert"),
        (None, None, None, "Azure Monitor alert"),
        ("two\nlines", "rule", None, "two lines"),
        ("x" * 300, None, None, "x" * 224 + "…[truncated 76 chars]"),
        (None, "r\u00e9gle", None, "r\u00e9gle"),
    ],
)
def test_headline(title: str | None, rule: str | None, service: str | None, expected: str) -> None:
    assert headline(title, rule, service) == expected
