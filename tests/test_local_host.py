"""The built-in local host (tests/local_host.py) over real HTTP, against Azurite."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.api.security import READ_ROLE
from tests.alert_samples import load_bytes
from tests.local_host import LocalHost, load_local_settings
from tests.tokens import OTHER_APP_ID, Mint, bearer


@pytest.fixture
def local(storage: str, app_env: dict[str, str]) -> Iterator[LocalHost]:
    import function_app

    with LocalHost(function_app.app, storage, port=0) as server:
        yield server


def _call(
    url: str, method: str = "GET", *, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def _wait_for(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


def test_posted_alert_is_processed_by_the_listener_and_listed(local: LocalHost, mint: Mint) -> None:
    assert local.url.startswith("http://127.0.0.1:")
    assert not local.url.endswith(":0")
    fired = load_bytes("metric-alert-static-fired")
    status, headers, body = _call(
        f"{local.url}/api/alerts",
        "POST",
        headers={"Authorization": bearer(mint()), "Content-Type": "application/json"},
        body=fired,
    )
    assert status == 202, body
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["monitorCondition"] == "Fired"

    reader = {"Authorization": bearer(mint(roles=[READ_ROLE], app_id=OTHER_APP_ID))}

    def listed() -> list[dict[str, Any]]:
        _status, _headers, page = _call(f"{local.url}/api/workitems?state=all", headers=reader)
        items: list[dict[str, Any]] = json.loads(page)["items"]
        return items

    # Nobody calls run_queue here: the local host's own listener must pick the message up.
    [item] = _wait_for(listed)
    alert_id = json.loads(fired)["data"]["essentials"]["alertId"]
    status, headers, body = _call(f"{local.url}/api/workitems/{item['id']}", headers=reader)
    assert status == 200
    assert "ETag" in headers
    assert alert_id.lower() in json.dumps(json.loads(body)).lower()


def test_answers_carry_status_headers_and_json_errors(local: LocalHost) -> None:
    status, _headers, body = _call(f"{local.url}/api/workitems")
    assert status == 401
    assert "error" in json.loads(body)
    status, _headers, _body = _call(f"{local.url}/api/no-such-function")
    assert status == 404
    status, _headers, body = _call(f"{local.url}/api/openapi.json")
    assert status == 200
    assert json.loads(body)["openapi"].startswith("3.1")


def test_repeated_headers_and_chunked_bodies_reach_the_function(
    local: LocalHost, mint: Mint
) -> None:
    parts = urlsplit(local.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    fired = load_bytes("metric-alert-static-fired")
    # Two Authorization headers are joined into one value, which no scheme parses: 401.
    connection.putrequest("POST", "/api/alerts")
    connection.putheader("Authorization", bearer(mint()))
    connection.putheader("Authorization", bearer(mint()))
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(fired)))
    connection.endheaders(fired)
    answer = connection.getresponse()
    assert answer.status == 401, answer.read()
    answer.read()
    # A chunked body is read whole, on the same (kept-alive) connection.
    connection.request(
        "POST",
        "/api/alerts",
        body=iter([fired[:100], fired[100:]]),
        headers={"Authorization": bearer(mint()), "Content-Type": "application/json"},
        encode_chunked=True,
    )
    answer = connection.getresponse()
    assert answer.status == 202, answer.read()
    assert json.loads(answer.read())["monitorCondition"] == "Fired"
    connection.close()


def test_stop_closes_the_port_and_the_listener(storage: str, app_env: dict[str, str]) -> None:
    import function_app

    local = LocalHost(function_app.app, storage, port=0)
    local.start()
    url = local.url
    assert _call(f"{url}/api/openapi.json")[0] == 200
    started = time.monotonic()
    local.stop()
    # The listener's run ends within maxPollingInterval (2 s) plus the work in flight.
    assert time.monotonic() - started < 10
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/api/openapi.json", timeout=5)


def test_local_settings_load_like_core_tools(tmp_path: Any) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"A": "from-file", "B": "from-file", "C": "x"}}))
    env = {"A": "from-env", "C": ""}
    skipped = load_local_settings(settings, env)
    # A variable already set wins; an empty one is filled (Core Tools checks IsNullOrEmpty).
    assert skipped == ["A"]
    assert env == {"A": "from-env", "B": "from-file", "C": "x"}
