"""No 5xx from any client input (issue 14): Hypothesis drives every API path and parameter.

Every path (listing, item, PATCH, CI search, CI detail), every query parameter, forged and
truncated continuation tokens, and PATCH bodies, with odd values: dates at and beyond the
calendar's ends and with offsets that cross them, surrogates and the last code points
(U+D7FF, U+10FFFF), control characters, huge numbers, quotes. Each answer must be a 2xx or a
4xx with a JSON error body, never a 5xx, and every answer is checked against the OpenAPI
document by ``Api.call``. Examples are derandomized so a run is repeatable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api import params
from tests import alert_factory as af
from tests.api_support import Answer, Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import Mint

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
LISTING = "http://localhost/api/workitems"
CIS = "http://localhost/api/cis"

EDGES = [
    "",
    " ",
    "'",
    "''",
    "\\",
    "%",
    "%ZZ",
    "\x00",
    "\x7f",
    "\r\nERROR forged",
    "\ud7ff",
    "vm\ud7ff",
    "\U0010ffff",
    "vm-web\U0010ffff",
    "\U0010ffff\U0010ffff",
    "\ud800",
    "a\udfff",
    "\ufffd",
    "\u202e",
    "0" * 5000,
    "-1",
    "0",
    "1e309",
    str(10**40),
    "NaN",
    "Infinity",
    "true",
    "null",
    "0001-01-01",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31",
    "0000-01-01",
    "1970-01-01T00:00:00+14:00",
    "2024-02-30",
    "2024-01-01T24:00:00Z",
    "CI-" + "0" * 32,
    "WI-" + "0" * 26,
    "/subscriptions/\U0010ffff",
    "/subscriptions/" + "x" * 2000,
]

odd_text = st.one_of(
    st.sampled_from(EDGES),
    st.text(st.characters(codec=None, categories=None), max_size=30),
    st.text(st.characters(min_codepoint=0xD700, max_codepoint=0xE010), max_size=6),
    st.text(st.characters(min_codepoint=0x10FF00, max_codepoint=0x10FFFF), max_size=6),
)
offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
dates = st.builds(
    lambda d, tz: d.replace(tzinfo=tz).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
) | st.sampled_from([e for e in EDGES if e[:1].isdigit()])
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
value = st.one_of(odd_text, dates, numbers)


def _query(pairs: dict[str, str]) -> str:
    # errors="surrogatepass": a lone surrogate reaches the server as the bytes a sloppy
    # client would send (CESU-8), which the server must refuse as a 400, not crash on.
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}" for k, v in pairs.items()
    )


def _id(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass") or "%20"


def _assert_no_5xx(answer: Answer) -> None:
    assert answer.status < 500, answer
    if answer.status >= 400:
        assert isinstance(answer.body, dict), answer
        assert isinstance(answer.body.get("error"), str), answer
        assert answer.body["error"], answer


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


@pytest.fixture
def items(api: Api) -> list[str]:
    """Three open items with a CI each, so listings and CI searches have pages to turn."""
    other = af.VM.replace("vm-web-01", "vm-web-02")
    third = af.VM.replace("vm-web-01", "vm-db-01")
    return api.alerts(
        af.fired("fuzz-1"),
        af.fired("fuzz-2", target=other),
        af.fired("fuzz-3", target=third),
    )


def _token(answer: Answer) -> str | None:
    token = answer.body.get("continuationToken") if isinstance(answer.body, dict) else None
    return token if isinstance(token, str) else None


def test_the_requests_named_in_issue_14_answer_400(api: Api, items: list[str]) -> None:
    for query in ("vm\U0010ffff", "vm\ud7ff", "\U0010ffff", "\ud7ff\U0010ffff"):
        answer = api.get(f"/api/cis?query={quote(query, safe='')}")
        assert answer.status in (200, 400), answer
    forged = params.make_token(params.ci_search(CIS, af.TENANT).fingerprint(), "vm\ud800")
    answer = api.get(f"/api/cis?continuationToken={forged}")
    assert (answer.status, answer.body["error"]) == (400, "invalid_continuation_token")
    for name, date in (
        ("since", "0001-01-01T00:00:00+01:00"),
        ("until", "9999-12-31T23:59:59-01:00"),
    ):
        answer = api.get(f"/api/workitems?{name}={quote(date)}")
        assert (answer.status, answer.body["field"]) == (400, name), answer


@SETTINGS
@given(query=st.dictionaries(st.sampled_from([*params.LIST_PARAMS, "bogus"]), value, max_size=4))
def test_listing_parameters(api: Api, items: list[str], query: dict[str, str]) -> None:
    _assert_no_5xx(api.get(f"/api/workitems?{_query(query)}"))


@SETTINGS
@given(
    query=st.dictionaries(st.sampled_from([*params.CI_SEARCH_PARAMS, "bogus"]), value, max_size=3)
)
def test_ci_search_parameters(api: Api, items: list[str], query: dict[str, str]) -> None:
    _assert_no_5xx(api.get(f"/api/cis?{_query(query)}"))


@SETTINGS
@given(text=odd_text)
def test_ids_in_paths(api: Api, items: list[str], text: str) -> None:
    _assert_no_5xx(api.get(f"/api/workitems/{_id(text)}"))
    _assert_no_5xx(api.get(f"/api/cis/{_id(text)}"))
    _assert_no_5xx(api.patch(_id(text), {"note": "n"}, etag='W/"x"'))


@SETTINGS
@given(
    position=odd_text, cut=st.integers(min_value=0, max_value=200), top=st.sampled_from(["1", "2"])
)
def test_forged_and_truncated_continuation_tokens(
    api: Api, items: list[str], position: str, cut: int, top: str
) -> None:
    listing = params.list_request(LISTING, af.TENANT).filter.fingerprint()
    search = params.ci_search(CIS, af.TENANT).fingerprint()
    for path, fingerprint in (("/api/workitems", listing), ("/api/cis", search)):
        forged = params.make_token(fingerprint, position)
        _assert_no_5xx(api.get(f"{path}?top={top}&continuationToken={forged}"))
        first = api.get(f"{path}?top={top}")
        _assert_no_5xx(first)
        real = _token(first)
        if real:
            truncated = real[: max(1, len(real) - cut)]
            _assert_no_5xx(api.get(f"{path}?top={top}&continuationToken={truncated}"))
            doc = json.dumps({"v": params.TOKEN_VERSION, "q": fingerprint, "a": position})
            raw = base64.urlsafe_b64encode(doc.encode("utf-8", "surrogatepass")).decode()
            _assert_no_5xx(api.get(f"{path}?top={top}&continuationToken={raw.rstrip('=')}"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | odd_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3)
    ),
    max_leaves=8,
)
patch_bodies = st.one_of(
    st.dictionaries(st.sampled_from([*params.PATCH_FIELDS, "bogus"]), json_values, max_size=4),
    st.dictionaries(
        st.sampled_from(params.PATCH_FIELDS),
        st.one_of(
            st.sampled_from(["New", "Acknowledged", "InProgress", "Resolved", "Closed", "open"]),
            st.integers(min_value=-(10**20), max_value=10**20),
            odd_text,
        ),
        min_size=1,
        max_size=3,
    ),
    json_values,
)


@SETTINGS
@given(body=patch_bodies, fresh_etag=st.booleans())
def test_patch_bodies(api: Api, items: list[str], body: Any, fresh_etag: bool) -> None:
    item_id = items[0]
    etag = api.item(item_id).etag if fresh_etag else None
    try:
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
    except ValueError:  # NaN and friends: sent as Python writes them
        raw = repr(body).encode("utf-8", "surrogatepass")
    headers = {"If-Match": etag} if etag else {}
    _assert_no_5xx(api.call("PATCH", f"/api/workitems/{item_id}", body=raw, headers=headers))


def test_dates_at_the_calendar_ends_never_overflow(api: Api, items: list[str]) -> None:
    ends = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    for end in ends:
        for hours in (-23, -1, 0, 1, 23):
            text = end.replace(tzinfo=timezone(timedelta(hours=hours))).isoformat()
            for name in ("since", "until"):
                _assert_no_5xx(api.get(f"/api/workitems?{name}={quote(text)}"))
