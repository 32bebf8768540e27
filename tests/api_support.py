"""Helpers for the work item API tests: callers with minted tokens, work items made by the
real processor, and a check of every answer against shared/openapi.json.

    def test_x(api: Api) -> None:
        [item_id] = api.alerts(af.fired("a1"))
        answer = api.get(f"/api/workitems/{item_id}")               # WorkItems.ReadWrite app
        answer = api.get("/api/workitems", role=READ, user=True)    # a user with the read role

Every answer that goes through `Api.call` is validated against the OpenAPI document
(status documented, body matches its schema, required headers present).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from shared import alert_queue, processor, store
from shared.alert_events import event_from_alert
from shared.api.security import API_SCOPE, READ_ROLE, WRITE_ROLE
from shared.config import get_settings
from tests.harness import REPO, FunctionsHost
from tests.tokens import CLIENT_ID, OTHER_APP_ID, ROLE, Mint, bearer
from tests.workitem_fixtures import group_items

READ = READ_ROLE
WRITE = WRITE_ROLE
INGEST = ROLE
NONE = "none"
USER_OID = "5f1e2d3c-4b5a-4678-9abc-def012345678"
USER_UPN = "ada@contoso.example"

OPENAPI = json.loads((REPO / "shared" / "openapi.json").read_text())
_REGISTRY = Registry().with_resource(
    "urn:openapi", Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The OpenAPI path template and operation for a request path (`/api/...`)."""
    local = path.split("?")[0]
    if not local.startswith("/api/"):
        return None
    local = local[len("/api") :]
    for template, item in OPENAPI["paths"].items():
        t_parts, p_parts = template.strip("/").split("/"), local.strip("/").split("/")
        if len(t_parts) != len(p_parts):
            continue
        if all(t.startswith("{") or t == p for t, p in zip(t_parts, p_parts, strict=True)):
            op = item.get(method.lower())
            if op is not None:
                return template, op
    return None


def check_against_openapi(
    method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    found = operation(method, path)
    assert found is not None, f"{method} {path} is not in the OpenAPI document"
    template, op = found
    responses = op["responses"]
    assert str(status) in responses, (
        f"{method} {template} answered {status}, which the OpenAPI document does not list"
    )
    spec = responses[str(status)]
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, header in spec.get("headers", {}).items():
        resolved = header
        if "$ref" in header:
            resolved = OPENAPI["components"]["headers"][header["$ref"].rsplit("/", 1)[-1]]
        if resolved.get("required"):
            assert name.lower() in lowered, f"{status} of {method} {template} lacks {name}"
        if name.lower() in lowered:
            Draft202012Validator(resolved["schema"]).validate(lowered[name.lower()])
    content = spec.get("content", {})
    if "application/json" not in content:
        return
    assert "application/json" in lowered.get("content-type", ""), lowered
    pointer = _pointer(
        "paths",
        template,
        method.lower(),
        "responses",
        str(status),
        "content",
        "application/json",
        "schema",
    )
    schema = {"$ref": f"urn:openapi#/{pointer}"}
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(json.loads(body)), key=lambda e: list(e.path))
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors[:5]
    )


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def etag(self) -> str:
        return self.headers["ETag"]

    def __repr__(self) -> str:
        return f"Answer({self.status}, {json.dumps(self.body)[:400]})"


@dataclass
class Api:
    host: FunctionsHost
    mint: Mint
    monkeypatch: pytest.MonkeyPatch
    answers: list[tuple[str, str, int]] = field(default_factory=list)

    # -- tokens ---------------------------------------------------------------------------

    def token(
        self,
        role: str = WRITE,
        *,
        user: bool = False,
        version: str = "2.0",
        scp: str | None = API_SCOPE,
        **claims: Any,
    ) -> str:
        roles = [] if role == NONE else [role]
        base: dict[str, Any] = {"roles": roles, "app_id": OTHER_APP_ID}
        if version == "2.0":
            base["audience"] = CLIENT_ID
        if user:
            name_claim = "upn" if version == "1.0" else "preferred_username"
            base.update({"scp": scp, "oid": USER_OID, "name": "Ada Lovelace", name_claim: USER_UPN})
        base.update(claims)
        return self.mint(version, **base)

    # -- requests ---------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        role: str = WRITE,
        user: bool = False,
        token: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> Answer:
        all_headers = {"Authorization": bearer(token or self.token(role, user=user))}
        if token == "":
            all_headers = {}
        raw: bytes | None = None
        if body is not None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        if query:
            path = f"{path}?{urlencode(query)}"
        response = self.host.request(method, path, headers=all_headers, body=raw)
        answer_body = response.get_body()
        headers_out = dict(response.headers)
        if response.mimetype:  # the host turns mimetype and charset into Content-Type
            headers_out.setdefault("Content-Type", response.mimetype)
        self.answers.append((method, path.split("?")[0], response.status_code))
        assert response.status_code != 500, answer_body
        if check:
            check_against_openapi(method, path, response.status_code, headers_out, answer_body)
        return Answer(
            response.status_code,
            json.loads(answer_body) if answer_body else None,
            headers_out,
        )

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def patch(self, item_id: str, body: Any, etag: str | None = None, **kwargs: Any) -> Answer:
        headers = dict(kwargs.pop("headers", None) or {})
        if etag is not None:
            headers["If-Match"] = etag
        return self.call("PATCH", f"/api/workitems/{item_id}", body=body, headers=headers, **kwargs)

    def item(self, item_id: str) -> Answer:
        answer = self.get(f"/api/workitems/{item_id}")
        assert answer.status == 200, answer
        return answer

    def list(self, **query: Any) -> Answer:
        answer = self.get("/api/workitems", query=query)
        assert answer.status == 200, answer
        return answer

    def list_all(self, **query: Any) -> list[dict[str, Any]]:
        """Every page of a listing (continuation tokens followed)."""
        out: list[dict[str, Any]] = []
        token = None
        for _ in range(1000):
            q = dict(query, **({"continuationToken": token} if token else {}))
            page = self.list(**q).body
            out.extend(page["items"])
            token = page["continuationToken"]
            if token is None:
                return out
        raise AssertionError("no last page")

    # -- work items ---------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        for name, value in settings.items():
            self.monkeypatch.setenv(name, str(value))

    def alerts(self, *alerts: Mapping[str, Any]) -> list[str]:
        """Process each alert through the real processor; the work item ids they touched."""
        touched: list[str] = []
        for n, alert in enumerate(alerts):
            processor.handle(alert_queue.encode(alert, {"n": n}), 1, f"test-{uuid.uuid4()}")
            event = event_from_alert(alert, get_settings().correlation_mode)
            group = event.group
            cs = self.host.connection_string
            for item in group_items(cs, group.partition, group.hash[:16]):
                if str(item["id"]) not in touched:
                    touched.append(str(item["id"]))
        return touched

    @property
    def store(self) -> store.WorkItemStore:
        return store.store_for(get_settings())


def ids(items: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(i["id"]) for i in items]


def api_session(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The body of each test module's `api` fixture (host, mint, monkeypatch fixtures)."""
    for name in (
        "CORRELATION_MODE",
        "REOPEN_WINDOW_MINUTES",
        "FLAP_THRESHOLD",
        "FLAP_WINDOW_MINUTES",
    ):
        monkeypatch.delenv(name, raising=False)
    store.clear_caches()
    yield Api(host, mint, monkeypatch)
    store.clear_caches()


ROOT = Path(__file__).resolve().parent.parent
