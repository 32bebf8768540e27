"""The OpenAPI document itself, its agreement with function_app.py, and hostile requests.

Every answer the API tests receive through `Api.call` is validated against the document
(tests/api_support.py); here: the document is a valid OpenAPI 3.1 / JSON Schema 2020-12
description, it lists exactly the routes the app serves, it is served and deployed, and no
request, however malformed, gets an answer it does not describe (in particular no 500).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests import alert_factory as af
from tests.api_support import OPENAPI, Api, api_session
from tests.harness import REPO, FunctionsHost
from tests.tokens import Mint


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_document_is_openapi_3_1_with_valid_schemas() -> None:
    assert OPENAPI["openapi"] == "3.1.0"
    assert OPENAPI["info"]["title"]
    assert OPENAPI["info"]["version"]
    for schema in OPENAPI["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
    )
    resolver = registry.resolver("urn:openapi")
    refs = set(_refs(OPENAPI))
    assert refs, "no $ref at all?"
    for ref in refs:
        resolver.lookup(ref)  # raises if it points nowhere
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["operationId"], (path, method)
            assert op["responses"], (path, method)
            for status, response in op["responses"].items():
                assert response["description"], (path, method, status)
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    Draft202012Validator.check_schema(schema)


def test_document_lists_exactly_the_apps_http_routes(host: FunctionsHost) -> None:
    served = set()
    for function in host.functions.values():  # as the worker indexed them
        for binding in function.bindings:
            route = binding.get("route", "")
            # Under the document's server URL /api, less the webhook (the board's files and
            # its redirect at / are not API routes).
            if (
                binding["type"] == "httpTrigger"
                and route.startswith("api/")
                and route != "api/alerts"
            ):
                for method in binding["methods"]:
                    served.add((method.upper(), "/" + route.removeprefix("api/")))
    documented = {
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == served


def test_document_is_served_without_a_token(api: Api) -> None:
    answer = api.call("GET", "/api/openapi.json", token="")
    assert answer.status == 200
    assert answer.body == OPENAPI
    assert answer.headers["Content-Type"].startswith("application/json")


def test_document_is_deployed() -> None:
    """`func azure functionapp publish` packs everything .funcignore does not exclude."""
    patterns = [
        line.strip()
        for line in (REPO / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    path = "shared/openapi.json"
    for pattern in patterns:
        bare = pattern.rstrip("/")
        assert not fnmatch.fnmatch(path, bare), pattern
        assert not path.startswith(bare + "/"), pattern


# -- hostile requests: never an undocumented answer, never a 500 -----------------------------

HOSTILE_GETS = [
    "/api/workitems?state=" + "open," * 600,
    "/api/workitems?ci=" + "%2F" * 3000,
    "/api/workitems?" + "&".join(f"p{i}=1" for i in range(100)),
    "/api/workitems?since=2024-03-01T08:00:00%2B99:99",
    "/api/workitems?since=9999-12-31T23:59:59Z",
    "/api/workitems?until=1970-01-01",
    "/api/workitems?top=1e3",
    "/api/workitems?top=%00",
    "/api/workitems?continuationToken=" + "e30",  # base64url of {}
    "/api/workitems?continuationToken=eyJ2IjoxLCJxIjoieCIsImEiOjF9",
    "/api/workitems?rule=' or 1 eq 1 or '",
    "/api/workitems?ci=CI-' or PartitionKey ne '",
    "/api/workitems?state=%E2%80%AEopen",
    "/api/workitems?%ZZ=1",
    "/api/workitems/WI-%00%00",
    "/api/workitems/" + "W" * 5000,
    "/api/workitems/WI-0123456789?x=%FF",
    "/api/cis?query=%00",
    "/api/cis?query=' or 1 eq 1",
    "/api/cis?type=Microsoft.Compute/virtualMachines'%20or%20'1",
    "/api/cis/CI-%27%27%27",
    "/api/cis/" + "C" * 3000,
]


@pytest.mark.parametrize("path", HOSTILE_GETS, ids=range(len(HOSTILE_GETS)))
def test_hostile_gets(api: Api, path: str) -> None:
    api.alerts(af.fired("hostile", 0))
    answer = api.get(path)  # validated against the document, 500 refused
    assert answer.status in (200, 400, 404), answer


HOSTILE_BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b"\x00" * 100, {}),
    (b'{"state": "Closed"}' + b" " * 70_000, {}),
    (b'{"note": "' + "é".encode() * 4001 + b'"}', {}),
    (b'{"note": "\\ud800"}', {}),
    (b'{"state": {"$ne": null}}', {}),
    (b'{"priority": 1e400}', {}),
    (b'{"priority": 99999999999999999999999999}', {}),
    (b'{"assignee": "' + b"a" * 300 + b'"}', {}),
    (b'{"__proto__": {"state": "Closed"}}', {}),
    (b'{"state": "Closed"}', {"Content-Type": "application/xml"}),
    (b'{"state": "Closed"}', {"Content-Length": "999999999"}),
    (b'{"state": "Closed"}', {"If-Match": '"' + "A" * 600 + '"'}),
    (b'{"state": "Closed"}', {"If-Match": ", , ,"}),
]


@pytest.mark.parametrize(("body", "headers"), HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_patches_change_nothing(api: Api, body: bytes, headers: dict[str, str]) -> None:
    [item_id] = api.alerts(af.fired("hostile", 0))
    before = api.item(item_id)
    all_headers = {"If-Match": before.etag, **headers}
    answer = api.patch(item_id, body, headers=all_headers)
    assert answer.status in (400, 412, 413, 415, 428), answer
    after = api.item(item_id)
    assert after.etag == before.etag
    assert after.body["history"] == before.body["history"]
