"""The harness and the real worker agree, conversion by conversion and on the app itself.

Two paths run the same requests and queue messages:
- the harness: `FunctionsHost.request` / `run_queue`, i.e. its routing and queue handling and
  the host's conversions of tests/host_rpc.py, into the worker library;
- direct: the same worker library invoked with messages written out here by hand, each case
  stating literally what the Functions host sends the worker (ToRpcHttp): route values
  unescaped, a repeated header joined with ",", no empty query value, a repeated query key
  joined with ",", no body without a positive Content-Length; for a queue message: the body
  as str or bytes, Id, PopReceipt, DequeueCount as JSON.
A probe app echoes what its functions received, so each conversion is compared exactly; then
the real app runs one scenario over every route and the queue trigger on each path, and the
answers (status, headers, body), the queued message and the table rows must be the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from shared import store
from tests.alert_samples import load_bytes
from tests.api_support import READ, WRITE
from tests.conftest import wipe
from tests.harness import REPO, FunctionsHost
from tests.tokens import Mint, bearer
from tests.workitem_fixtures import diff_snapshots, snapshot

HOST = "localhost:7071"

# ------------------------------------------------------------------ the direct path


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def of(cls, response: func.HttpResponse) -> Answer:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return cls(response.status_code, headers, response.get_body() or b"")


class Direct:
    """The worker, driven with host messages written by the caller."""

    def __init__(self, host: FunctionsHost) -> None:
        self.host = host
        self.p = host.worker.protos

    def http(
        self,
        function: str,
        method: str,
        path: str,
        *,
        query_string: str = "",
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        """`path` unescaped and `headers` lower-cased and joined, as the host has them;
        `query` what the host sends (no empty values); `body` None when the host sends none."""
        p = self.p
        url = f"http://{HOST}{path}" + (f"?{query_string}" if query_string else "")
        http = p.RpcHttp(
            method=method, url=url, headers=headers, query=query or {}, params=params or {}
        )
        if body is not None:  # the worker asked for raw bytes (RawHttpBodyBytes)
            http.body.CopyFrom(p.TypedData(bytes=body))
        metadata = {
            "Query": p.TypedData(json=json.dumps(query or {})),
            "Headers": p.TypedData(json=json.dumps(dict(headers))),
            **{k: p.TypedData(string=v) for k, v in (params or {}).items()},
        }
        target = self.host.functions[function]
        answer = self.host.worker.invoke(
            self.host.app,
            target.metadata,
            [p.ParameterBinding(name=target.trigger["name"], data=p.TypedData(http=http))],
            metadata,
        )
        if answer.result.status != p.StatusResult.Success:
            return Answer(500, {}, b"")
        rpc = answer.return_value.http
        kind = rpc.body.WhichOneof("data")
        raw = getattr(rpc.body, kind) if kind else b""
        return Answer(
            int(rpc.status_code),
            {k.lower(): v for k, v in rpc.headers.items()},
            raw.encode() if isinstance(raw, str) else raw,
        )

    def drain(self, queue: str, function: str, *, as_bytes: Callable[[int], bool]) -> int:
        """Lease each message, send it as the host does (str, or bytes when as_bytes(n)),
        delete it on success. The number of successful invocations."""
        p = self.p
        client = QueueClient.from_connection_string(self.host.connection_string, queue)
        target = self.host.functions[function]
        done = 0
        while leased := list(client.receive_messages(max_messages=1, visibility_timeout=60)):
            message = leased[0]
            text = message.content  # messageEncoding none
            data = p.TypedData(bytes=text.encode()) if as_bytes(done) else p.TypedData(string=text)
            metadata = {
                "QueueTrigger": p.TypedData(string=text),
                "Id": p.TypedData(string=message.id),
                "PopReceipt": p.TypedData(string=message.pop_receipt),
                "DequeueCount": p.TypedData(json=str(message.dequeue_count)),
                "InsertionTime": p.TypedData(json=_dotnet_json(message.inserted_on)),
                "ExpirationTime": p.TypedData(json=_dotnet_json(message.expires_on)),
                "NextVisibleTime": p.TypedData(json=_dotnet_json(message.next_visible_on)),
            }
            answer = self.host.worker.invoke(
                self.host.app,
                target.metadata,
                [p.ParameterBinding(name=target.trigger["name"], data=data)],
                metadata,
            )
            assert answer.result.status == p.StatusResult.Success, answer.result.exception
            client.delete_message(message.id, message.pop_receipt)
            done += 1
        return done


def _dotnet_json(value: datetime) -> str:
    """A DateTimeOffset as Newtonsoft writes it (whole seconds here: storage's times)."""
    return json.dumps(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"))


# ------------------------------------------------------------------ the probe app

RECEIVED: list[dict[str, Any]] = []


def _probe_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="api/probe/{id}", methods=["GET", "POST"])
    def probe_echo(req: func.HttpRequest) -> func.HttpResponse:
        seen = {
            "method": req.method,
            "url": req.url,
            "headers": dict(req.headers),
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "body": req.get_body().decode("latin-1"),
        }
        return func.HttpResponse(json.dumps(seen), mimetype="application/json")

    @app.route(route="api/probe-text", methods=["GET"])
    def probe_text(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("plain", headers={"X-Probe": "1"})

    def record(msg: func.QueueMessage) -> None:
        RECEIVED.append(
            {
                "body": msg.get_body().decode(),
                "id": msg.id,
                "dequeue_count": msg.dequeue_count,
                "pop_receipt_set": bool(msg.pop_receipt),
                "insertion_time": msg.insertion_time,
            }
        )

    @app.queue_trigger(arg_name="msg", queue_name="probe", connection="AzureWebJobsStorage")
    def probe_queue(msg: func.QueueMessage) -> None:
        record(msg)

    @app.queue_trigger(
        arg_name="msg",
        queue_name="probe-binary",
        connection="AzureWebJobsStorage",
        data_type=func.DataType.BINARY,
    )
    def probe_queue_binary(msg: func.QueueMessage) -> None:
        record(msg)

    return app


PROBE = _probe_app()


@pytest.fixture
def probe(storage: str, tmp_path: Path) -> tuple[FunctionsHost, Direct]:
    host_json = tmp_path / "host.json"
    config = json.loads((REPO / "host.json").read_text())
    host_json.write_text(json.dumps(config))
    host = FunctionsHost(PROBE, storage, host_json=host_json)
    return host, Direct(host)


def _echo(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, answer
    seen: dict[str, Any] = json.loads(answer.body)
    return seen


def test_no_body_without_a_positive_content_length(probe: tuple[FunctionsHost, Direct]) -> None:
    host, direct = probe
    body = b'{"a": 1}'
    base = {"host": HOST, "content-type": "application/json"}
    cases = [
        # (headers the client sends, the host's headers, the body the host forwards)
        ([], {**base, "content-length": "8"}, body),  # a client adds Content-Length
        ([("Content-Length", "8")], {**base, "content-length": "8"}, body),
        ([("Transfer-Encoding", "chunked")], {**base, "transfer-encoding": "chunked"}, None),
        ([("Content-Length", "0")], {**base, "content-length": "0"}, None),
        ([("Content-Length", "abc")], {**base, "content-length": "abc"}, None),
    ]
    for sent, host_headers, forwarded in cases:
        ours = host.request(
            "POST",
            "/api/probe/1",
            headers=[("Content-Type", "application/json"), *sent],
            body=body,
        )
        theirs = direct.http(
            "probe_echo",
            "POST",
            "/api/probe/1",
            headers=host_headers,
            params={"id": "1"},
            body=forwarded,
        )
        assert Answer.of(ours) == theirs, sent
        assert _echo(theirs)["body"] == (forwarded or b"").decode(), sent


def test_route_values_and_path_are_unescaped(probe: tuple[FunctionsHost, Direct]) -> None:
    host, direct = probe
    ours = host.request("GET", "/api/probe/WI%2D00ab%20c%C3%A9")
    theirs = direct.http(
        "probe_echo",
        "GET",
        "/api/probe/WI-00ab cé",
        headers={"host": HOST},
        params={"id": "WI-00ab cé"},
    )
    assert Answer.of(ours) == theirs
    seen = _echo(theirs)
    assert seen["route_params"] == {"id": "WI-00ab cé"}
    assert seen["url"] == f"http://{HOST}/api/probe/WI-00ab cé"
    # %2F stays escaped: decoding it would change the route's segments.
    slash = host.request("GET", "/api/probe/a%2Fb")
    assert _echo(Answer.of(slash))["route_params"] == {"id": "a%2Fb"}


def test_repeated_headers_are_joined_with_a_comma(probe: tuple[FunctionsHost, Direct]) -> None:
    host, direct = probe
    ours = host.request(
        "GET",
        "/api/probe/1",
        headers=[("X-Dup", "a"), ("Accept", "text/html"), ("x-dup", " b "), ("X-DUP", "c")],
    )
    theirs = direct.http(
        "probe_echo",
        "GET",
        "/api/probe/1",
        headers={"host": HOST, "x-dup": "a,b,c", "accept": "text/html"},
        params={"id": "1"},
    )
    assert Answer.of(ours) == theirs
    assert _echo(theirs)["headers"]["x-dup"] == "a,b,c"


def test_query_drops_empty_values_and_joins_repeated_keys(
    probe: tuple[FunctionsHost, Direct],
) -> None:
    host, direct = probe
    query_string = "x=&top=5&Top=6&q=a+b%20c&flag&top=7"
    ours = host.request("GET", f"/api/probe/1?{query_string}")
    theirs = direct.http(
        "probe_echo",
        "GET",
        "/api/probe/1",
        query_string=query_string,
        headers={"host": HOST},
        query={"top": "5,6,7", "q": "a b c"},
        params={"id": "1"},
    )
    assert Answer.of(ours) == theirs
    seen = _echo(theirs)
    assert seen["params"] == {"top": "5,6,7", "q": "a b c"}
    assert seen["url"].endswith(f"?{query_string}")  # the raw query string travels as sent


def test_response_content_type_is_the_workers(probe: tuple[FunctionsHost, Direct]) -> None:
    host, direct = probe
    json_ours = host.request("GET", "/api/probe/1")
    json_theirs = direct.http(
        "probe_echo", "GET", "/api/probe/1", headers={"host": HOST}, params={"id": "1"}
    )
    assert Answer.of(json_ours) == json_theirs
    assert json_theirs.headers["content-type"] == "application/json"  # no charset: not text/*
    assert json_ours.mimetype == "application/json"
    text_ours = host.request("GET", "/api/probe-text")
    text_theirs = direct.http("probe_text", "GET", "/api/probe-text", headers={"host": HOST})
    assert Answer.of(text_ours) == text_theirs
    assert text_theirs.headers == {"content-type": "text/plain; charset=utf-8", "x-probe": "1"}
    assert text_theirs.body == b"plain"


@pytest.mark.parametrize("queue", ["probe", "probe-binary"])
def test_queue_input_str_and_bytes(probe: tuple[FunctionsHost, Direct], queue: str) -> None:
    """str (dataType undefined) or bytes (binary): the function gets the same message."""
    host, direct = probe
    function = {"probe": "probe_queue", "probe-binary": "probe_queue_binary"}[queue]
    client = QueueClient.from_connection_string(host.connection_string, queue)
    client.create_queue()
    texts = ['{"n": 1, "é": "x"}', '{"n": 2}', '{"n": 3}']
    RECEIVED.clear()
    for text in texts:
        client.send_message(text)
    stats = host.run_queue(queue, timeout=60)
    assert (stats.succeeded, stats.failed_attempts) == (3, 0), stats.errors
    ours = sorted(RECEIVED, key=lambda r: str(r["body"]))
    RECEIVED.clear()
    ids = [client.send_message(text).id for text in texts]
    assert direct.drain(queue, function, as_bytes=lambda n: n % 2 == 1) == 3
    theirs = sorted(RECEIVED, key=lambda r: str(r["body"]))
    assert [r["body"] for r in ours] == [r["body"] for r in theirs] == sorted(texts)
    assert sorted(r["id"] for r in theirs) == sorted(ids)  # the storage message id
    for record in ours + theirs:
        assert record["dequeue_count"] == 1  # JSON "1" from the host, an int here
        assert record["pop_receipt_set"]
        assert isinstance(record["insertion_time"], datetime)


# ------------------------------------------------------------------ the app, end to end

# Per-run values: correlation ids, receive, write and change times, ETags.
VOLATILE = re.compile(r"^(correlationId|receivedAt|createdAt|updatedAt|at|time|etag)$")


def _normalized(value: Any, within: str = "") -> Any:
    """JSON with per-run values (correlation ids, write times, ETags, the ids of history
    entries, which are made from their time) masked."""
    if isinstance(value, dict):
        return {
            k: "<v>"
            if VOLATILE.match(k) or (within == "history" and k == "id")
            else _normalized(v, k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalized(v, within) for v in value]
    return value


def _comparable(answer: Answer) -> tuple[int, dict[str, str], Any]:
    headers = {k: ("<v>" if k == "etag" else v) for k, v in answer.headers.items()}
    try:
        body: Any = _normalized(json.loads(answer.body))
    except ValueError:
        body = answer.body
    return answer.status, headers, body


@pytest.fixture
def app_host(host: FunctionsHost, storage: str) -> Iterator[FunctionsHost]:
    store.clear_caches()
    yield host
    store.clear_caches()


def _scenario(host: FunctionsHost, mint: Mint, *, direct: bool) -> dict[str, Any]:
    """Every route and the queue trigger, through the harness or directly; what came out."""
    run = Direct(host)
    ingest = bearer(mint())
    reader = bearer(mint(roles=[READ]))
    writer = bearer(mint(roles=[WRITE]))
    fired = load_bytes("metric-alert-static-fired")
    second = json.loads(fired)
    second["data"]["essentials"]["alertId"] += "-second"
    second_body = json.dumps(second).encode()
    out: dict[str, Any] = {}

    def post(label: str, sent: list[tuple[str, str]], body: bytes, host_view: dict[str, str]):
        fwd = None if "transfer-encoding" in host_view or not body else body
        if not direct:
            answer = Answer.of(host.request("POST", "/api/alerts", headers=sent, body=body))
        else:
            answer = run.http("receive_alert", "POST", "/api/alerts", headers=host_view, body=fwd)
        out[label] = _comparable(answer)
        return answer

    view = {"host": HOST, "authorization": ingest, "content-type": "application/json"}
    sent = [("Authorization", ingest), ("Content-Type", "application/json")]
    dup = [*sent, ("X-Correlation-Context", "first"), ("x-correlation-context", "second")]
    post(
        "alert, duplicated header",
        dup,
        fired,
        {**view, "x-correlation-context": "first,second", "content-length": str(len(fired))},
    )
    post("second alert", sent, second_body, {**view, "content-length": str(len(second_body))})
    post("empty body", [*sent, ("Content-Length", "0")], b"", {**view, "content-length": "0"})
    post(
        "chunked",
        [*sent, ("Transfer-Encoding", "chunked")],
        fired,
        {**view, "transfer-encoding": "chunked"},
    )
    queue = QueueClient.from_connection_string(host.connection_string, "alerts")
    out["queued"] = sorted(
        (_normalized(json.loads(m.content)) for m in queue.peek_messages(max_messages=32)),
        key=json.dumps,
    )
    if direct:  # one message as str, the other as bytes
        assert run.drain("alerts", "process_alert", as_bytes=lambda n: n == 1) == 2
    else:
        stats = host.run_queue("alerts", timeout=60)
        assert (stats.succeeded, stats.failed_attempts) == (2, 0), stats.errors
    # Rows as the queue trigger wrote them (what a person's PATCH adds carries its own time).
    out["tables"] = snapshot(host.connection_string)

    def get(label: str, function: str, target: str, host_view: dict[str, Any]) -> Answer:
        if not direct:
            answer = Answer.of(host.request("GET", target, headers={"Authorization": reader}))
        else:
            answer = run.http(
                function,
                "GET",
                host_view["path"],
                query_string=target.partition("?")[2],
                headers={"host": HOST, "authorization": reader},
                query=host_view.get("query"),
                params=host_view.get("params"),
            )
        out[label] = _comparable(answer)
        return answer

    listing = get(
        "list, empty and repeated query",
        "list_workitems",
        "/api/workitems?state=&top=5&top=6",
        {"path": "/api/workitems", "query": {"top": "5,6"}},
    )
    assert listing.status == 400, listing  # the API refuses a repeated parameter
    assert json.loads(listing.body)["field"] == "top"
    items = json.loads(
        get("list", "list_workitems", "/api/workitems", {"path": "/api/workitems"}).body
    )
    item_id = sorted(i["id"] for i in items["items"])[0]
    encoded = quote(item_id, safe="").replace("-", "%2D")
    item = get(
        "item, percent-encoded id",
        "get_workitem",
        f"/api/workitems/{encoded}",
        {"path": f"/api/workitems/{item_id}", "params": {"id": item_id}},
    )
    assert item.status == 200, item
    patch = json.dumps({"state": "Acknowledged", "note": "on it"}).encode()
    patch_view = {
        "host": HOST,
        "authorization": writer,
        "if-match": item.headers["etag"],
        "content-type": "application/json",
        "content-length": str(len(patch)),
    }
    if not direct:
        sent_patch = [(k.title(), v) for k, v in patch_view.items() if k != "host"]
        changed = Answer.of(
            host.request("PATCH", f"/api/workitems/{item_id}", headers=sent_patch, body=patch)
        )
    else:
        changed = run.http(
            "update_workitem",
            "PATCH",
            f"/api/workitems/{item_id}",
            headers=patch_view,
            params={"id": item_id},
            body=patch,
        )
    assert changed.status == 200, changed
    out["patch"] = _comparable(changed)
    ci_id = json.loads(item.body)["configurationItems"][0]["id"]
    get("cis", "search_cis", "/api/cis?query=&type=", {"path": "/api/cis"})
    get(
        "ci",
        "get_ci",
        f"/api/cis/{quote(ci_id, safe='')}",
        {"path": f"/api/cis/{ci_id}", "params": {"id": ci_id}},
    )
    get("openapi", "openapi", "/api/openapi.json", {"path": "/api/openapi.json"})
    return out


def test_app_answers_queue_and_tables_agree(
    app_host: FunctionsHost, storage: str, mint: Mint
) -> None:
    ours = _scenario(app_host, mint, direct=False)
    wipe(storage)
    store.clear_caches()
    theirs = _scenario(app_host, mint, direct=True)
    tables = (ours.pop("tables"), theirs.pop("tables"))
    assert tables[0], "the scenario wrote no rows"
    assert diff_snapshots(*tables) == ""
    for step in ours:
        assert ours[step] == theirs[step], step
    statuses = {step: ours[step][0] for step in ours if step != "queued"}
    assert statuses["alert, duplicated header"] == 202
    assert statuses["empty body"] == 400
    assert statuses["chunked"] == 411
    assert ours["chunked"][2]["error"] == "length_required"
    assert "Content-Length" in ours["chunked"][2]["detail"]
    assert len(ours["queued"]) == 2
