"""Stored times (issue 14): one formatter with 4-digit years, and a documented accepted range.

An alert fired in year 1 used to be accepted, stored as "1-01-01T..." and then missing from
every listing. Now every stored time goes through ``format_timestamp`` (fixed width), and
an alert whose firedDateTime/resolvedDateTime is outside 1970..9999 is refused at ingest
with a 400 naming the field; the ends of the range list like any other time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from shared.alert_events import iso, to_micros
from shared.alerts.timestamps import EARLIEST, LATEST, essential_time, format_micros, timestamp
from tests import alert_factory as af
from tests.alert_samples import load_bytes
from tests.api_support import Api, api_session, ids
from tests.harness import FunctionsHost
from tests.test_alerts_http import _queue_is_empty, post_alert
from tests.tokens import Mint


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC), "0999-03-04T05:06:07.000008Z"),
        (EARLIEST, "1970-01-01T00:00:00.000000Z"),
        (LATEST, "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_every_stored_time_has_a_four_digit_year(when: datetime, text: str) -> None:
    micros = to_micros(when.isoformat())
    assert micros is not None
    assert iso(micros) == text
    assert format_micros(micros) == text


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "0999-01-01T00:00:00Z"]
)
def test_times_outside_the_range_are_refused_for_essentials(value: str) -> None:
    assert timestamp(value) is None  # elsewhere: treated like an unreadable time
    with pytest.raises(Exception, match="must be between 1970-01-01") as caught:
        essential_time(value, "data.essentials.firedDateTime")
    assert getattr(caught.value, "field", None) == "data.essentials.firedDateTime"
    assert essential_time("not a time", "x") is None  # unreadable stays tolerated


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("firedDateTime", "0001-01-01T00:00:00Z"),
        ("firedDateTime", "1969-12-31T23:59:59Z"),
        ("resolvedDateTime", "0001-01-01T00:00:00.0000000Z"),
    ],
)
def test_ingest_answers_400_naming_the_field(
    host: FunctionsHost, storage: str, mint: Mint, field: str, value: str
) -> None:
    body = json.loads(load_bytes("metric-alert-static-fired"))
    body["data"]["essentials"][field] = value
    status, answer = post_alert(host, mint(), json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error"] == "invalid_field"
    assert answer["field"] == f"data.essentials.{field}"
    assert "1970" in answer["detail"]
    assert _queue_is_empty(storage)


def test_ingest_accepts_the_ends_of_the_range(host: FunctionsHost, mint: Mint) -> None:
    for value in ("1970-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z"):
        body = json.loads(load_bytes("metric-alert-static-fired"))
        body["data"]["essentials"]["firedDateTime"] = value
        status, answer = post_alert(host, mint(), json.dumps(body).encode())
        assert status == 202, answer


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def test_items_at_the_ends_of_the_range_are_listed(api: Api) -> None:
    first, last = format_micros(0), "9999-12-31T23:59:59.999999Z"
    made = api.alerts(
        af.fired("epoch", firedAt=first, occurredAt=first, receivedAt=first),
        af.fired("last", firedAt=last, occurredAt=last, cis=[af.VM.replace("vm-web-01", "vm-x")]),
    )
    assert len(made) == 2
    listed = ids(api.list_all())
    assert set(made) <= set(listed)
    assert ids(api.list_all(since="1971-01-01")) == [made[1]]
    assert made[0] in ids(api.list_all(until="1971-01-01"))
    for item_id in made:
        assert api.item(item_id).body["firedAt"][:4] in ("1970", "9999")
