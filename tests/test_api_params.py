"""Request parsing of the work item API (shared/api/params.py): pure, no storage."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared import ci_names, workitem_index
from shared.api import params
from shared.api.params import UNSET, BadRequest
from shared.workitem_index import OPEN_STATES, STATES, ItemFilter

URL = "http://localhost:7071/api/workitems"
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


def lst(query: str = "") -> params.ListRequest:
    return params.list_request(f"{URL}?{query}" if query else URL, TENANT)


def bad(fn: Any, *args: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        fn(*args)
    assert caught.value.detail
    assert caught.value.code
    return caught.value


def test_defaults_are_open_items_fifty_per_page() -> None:
    request = lst()
    assert request.filter == ItemFilter(tenant=TENANT)
    assert request.filter.states == OPEN_STATES
    assert request.top == 50
    assert request.after is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("open", OPEN_STATES),
        ("all", STATES),
        ("resolved", ("Resolved",)),
        ("Closed,NEW", ("New", "Closed")),
        ("open,closed", (*OPEN_STATES, "Closed")),
        ("inprogress", ("InProgress",)),
    ],
)
def test_states(raw: str, expected: tuple[str, ...]) -> None:
    assert lst(f"state={raw}").filter.states == expected


@pytest.mark.parametrize(
    "query",
    [
        "state=opened",
        "state=",
        "state=New,,Closed",
        "severity=Sev5",
        "severity=high",
        "priority=0",
        "priority=6",
        "priority=1.5",
        "since=yesterday",
        "since=2024-13-01",
        "since=2024-03-01T08:00:00",  # no time zone
        "since=1969-12-31",
        "until=2024-03-01T25:00Z",
        "flapping=yes",
        "top=0",
        "top=501",
        "top=-1",
        "top=ten",
        "ci=",
        "rule=%20",
        "unknown=1",
        "Top=5",
        "top=5&top=6",
        "since=2024-03-02&until=2024-03-01",
        "continuationToken=abc",
        "continuationToken=" + "A" * 3000,
        "state=%00",
    ],
)
def test_malformed_list_queries_say_what_is_wrong(query: str) -> None:
    err = bad(lst, query)
    assert err.code in (
        "invalid_parameter",
        "unknown_parameter",
        "repeated_parameter",
        "invalid_continuation_token",
        "parameter_too_long",
        "invalid_query",
    )


def test_too_many_parameters() -> None:
    err = bad(lst, "&".join(f"state=open{i}" for i in range(40)))
    assert err.code == "invalid_query"


def test_filters() -> None:
    request = lst(
        "severity=sev1,Sev0&priority=2,1&since=2024-03-01&until=2024-03-02T00:00:00%2B01:00"
        "&flapping=TRUE&rule=CPU%20High&top=500"
    )
    flt = request.filter
    assert flt.severities == (0, 1)
    assert flt.priorities == (1, 2)
    assert flt.since == 1709251200 * 1_000_000
    assert flt.until == (1709251200 + 23 * 3600) * 1_000_000
    assert flt.flapping is True
    assert flt.rule == workitem_index.rule_hash("cpu high")
    assert request.top == 500


def test_ci_by_id_or_key() -> None:
    key = "/subscriptions/x/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM1"
    by_key = lst("ci=" + key.replace("/", "%2F")).filter.ci
    assert by_key == workitem_index.ci_hash(key.lower(), TENANT)
    ci_id = workitem_index.ci_id(by_key)
    assert lst(f"ci={ci_id.lower()}").filter.ci == by_key
    assert lst("ci=VM-WEB-01").filter.ci == workitem_index.ci_hash("vm-web-01", TENANT)


def test_continuation_tokens_round_trip_and_bind_to_their_query() -> None:
    flt = lst("severity=Sev1").filter
    position = workitem_index.sort_key(1_700_000_000_000_000, "WI-0123456789")
    token = params.make_token(flt.fingerprint(), position)
    assert lst(f"severity=Sev1&top=7&continuationToken={token}").after == position
    err = bad(lst, f"severity=Sev2&continuationToken={token}")
    assert "other filters" in err.detail
    forged = base64.urlsafe_b64encode(
        json.dumps({"v": 1, "q": flt.fingerprint(), "a": "x' or PartitionKey ne '"}).encode()
    ).decode()
    assert bad(lst, f"severity=Sev1&continuationToken={forged.rstrip('=')}").field == (
        "continuationToken"
    )


@pytest.mark.parametrize(
    "raw",
    ["", "WI-", "WI-0123456789A", "WI-012345678I", "XX-0123456789", "WI-01234/6789", "x" * 500],
)
def test_bad_item_ids(raw: str) -> None:
    assert bad(params.item_id, raw).code == "invalid_id"


def test_item_ids_are_case_insensitive() -> None:
    assert params.item_id(" wi-7k3f9q2mxa ") == "WI-7K3F9Q2MXA"


def test_ci_ids() -> None:
    assert params.ci_id("ci-0123456789abcdefghjk") == "0123456789ABCDEFGHJK"
    for raw in (
        "CI-0123",
        "0123456789ABCDEFGHJK",
        "CI-0123456789ABCDEFGHJKL",
        "CI-I123456789ABCDEFGHJ",
    ):
        assert bad(params.ci_id, raw).code == "invalid_id"


# -- PATCH bodies --------------------------------------------------------------------------


def change(body: Any) -> params.ItemChange:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return params.item_change(params.json_body(raw))


def test_patch_fields() -> None:
    c = change({"state": "acknowledged", "note": " on it \n", "priority": 1})
    assert c == params.ItemChange(state="Acknowledged", priority=1, note="on it")
    c = change({"assignee": None, "assignmentGroup": "Web Ops"})
    assert c.assignee is None
    assert c.assignment_group == "Web Ops"
    assert c.priority is UNSET
    assert c.state is None
    assert c.note is None
    assert change({"priority": None}).priority is None
    assert change({"state": "New"}).state == "New"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"[]",
        b'"state"',
        b"\xff\xfe",
        b'{"state": "Closed", "state": "New"}',
        b'{"priority": NaN}',
        b"[" * 60_000,
        {},
        {"status": "Closed"},
        {"state": "Done"},
        {"state": 3},
        {"state": None},
        {"priority": 0},
        {"priority": "1"},
        {"priority": True},
        {"priority": 2.5},
        {"assignee": ""},
        {"assignee": 5},
        {"assignee": "x" * 257},
        {"assignee": "bob\x00"},
        {"note": None},
        {"note": "x" * 4001},
        {"assignmentGroup": []},
    ],
)
def test_bad_patch_bodies(body: Any) -> None:
    err = bad(change, body)
    assert err.code in ("invalid_body", "unknown_field", "invalid_field")


def test_unknown_fields_are_named() -> None:
    err = bad(change, {"state": "Closed", "colour": "red"})
    assert err.code == "unknown_field"
    assert err.field == "colour"


def test_oversized_body() -> None:
    with pytest.raises(params.PayloadTooLarge):
        params.json_body(b" " * (params.MAX_BODY_BYTES + 1))


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "multipart/form-data; x=1"])
def test_non_json_media_types(ctype: str) -> None:
    with pytest.raises(params.UnsupportedMediaType):
        params.media_type(ctype)


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "",
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/merge-patch+json",
    ],
)
def test_json_media_types(ctype: str | None) -> None:
    params.media_type(ctype)


def test_etags_round_trip() -> None:
    table_etag = "W/\"datetime'2024-03-01T08%3A00%3A00.1234567Z'\""
    header = params.etag_header(table_etag)
    assert header.startswith('"')
    assert header.endswith('"')
    assert "W/" not in header
    assert params.if_match(header) == (table_etag,)
    listed = params.if_match(f'"b3RoZXI", {header}')
    assert isinstance(listed, tuple)
    assert listed == ("other", table_etag)
    assert params.if_match("*") == params.ANY
    assert params.if_match(None) is None
    assert params.if_match("W/" + header) == ()
    assert params.if_match("garbage") == ()


# -- issue 14: requests that answered 500 ------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "high"),
    [("vm\U0010ffff", "vn"), ("a\ud7ff", "a\ue000"), ("ab", "ac"), ("\U0010ffff", None)],
)
def test_name_prefix_bounds_are_encodable(prefix: str, high: str | None) -> None:
    clause = ci_names.name_prefix_range(prefix)
    clause.encode("utf-8")  # the Tables SDK sends the filter as UTF-8
    if high is None:
        assert " lt " not in clause
    else:
        assert clause.endswith(f"RowKey lt '{high}'")


def test_a_ci_position_with_a_lone_surrogate_is_refused() -> None:
    fingerprint = params.ci_search("http://x/api/cis", TENANT).fingerprint()
    token = params.make_token(fingerprint, "vm\ud800")
    assert bad(params.ci_search, f"http://x/api/cis?continuationToken={token}", TENANT).code == (
        "invalid_continuation_token"
    )


@pytest.mark.parametrize(
    "query", ["since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:59:59-01:00"]
)
def test_dates_beyond_the_calendar_in_utc_are_400(query: str) -> None:
    assert bad(lst, query).field == query.split("=")[0]
