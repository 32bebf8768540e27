"""The harness behaves like the Functions host on a small app of its own.

If these fail, end-to-end results mean nothing, so the harness is checked against
a throwaway app rather than trusted.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient

from tests.harness import FunctionsHost, QueueSettings

calls: list[tuple[str, int | None]] = []


def _app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="things/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def get_thing(req: func.HttpRequest) -> func.HttpResponse:
        body = {
            "id": req.route_params["id"],
            "q": req.params.get("q"),
            "hdr": req.headers.get("x-dup"),
        }
        return func.HttpResponse(json.dumps(body), status_code=200)

    @app.route(route="secret", methods=["POST"])
    def secret(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.route(route="boom", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    @app.queue_output(arg_name="out", queue_name="outq", connection="AzureWebJobsStorage")
    def boom(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        out.set(req.get_body().decode())
        if req.params.get("fail"):
            raise RuntimeError("handler failed")
        return func.HttpResponse(status_code=202)

    @app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
    def work(msg: func.QueueMessage) -> None:
        text = msg.get_body().decode()
        calls.append((text, msg.dequeue_count))
        if text.startswith("fail"):
            raise RuntimeError("always fails")

    return app


def _host(storage: str, tmp_path: Path, encoding: str) -> FunctionsHost:
    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {
                        "messageEncoding": encoding,
                        "maxDequeueCount": 3,
                        "batchSize": 4,
                        "visibilityTimeout": "00:00:00",
                    }
                },
            }
        )
    )
    return FunctionsHost(_app(), storage, host_json=host_json, function_keys={"k1"})


def test_http_routing_auth_and_headers(storage: str, tmp_path: Path) -> None:
    host = _host(storage, tmp_path, "base64")
    ok = host.request("GET", "/api/things/42?q=x", headers=[("X-Dup", "a"), ("x-dup", "b")])
    assert ok.status_code == 200
    # The host joins a repeated header's values with "," (Kestrel's StringValues).
    assert json.loads(ok.get_body()) == {"id": "42", "q": "x", "hdr": "a,b"}
    # The worker adds Content-Type from the response's mimetype (charset for text/* only).
    assert ok.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert host.request("POST", "/api/things/42").status_code == 404  # method not allowed
    assert host.request("GET", "/api/nothing").status_code == 404
    assert host.request("GET", "/things/42").status_code == 404  # route prefix applies
    assert host.request("POST", "/api/secret").status_code == 401  # function key needed
    assert host.request("POST", "/api/secret?code=k1").status_code == 200
    assert host.request("POST", "/api/secret", headers={"x-functions-key": "k1"}).status_code == 200


@pytest.mark.parametrize("encoding", ["base64", "none"])
def test_output_binding_written_after_return_with_encoding(
    storage: str, tmp_path: Path, encoding: str
) -> None:
    host = _host(storage, tmp_path, encoding)
    assert host.request("POST", "/api/boom", body="héllo").status_code == 202
    assert host.request("POST", "/api/boom?fail=1", body="lost").status_code == 500
    got = [
        m.content for m in QueueClient.from_connection_string(storage, "outq").receive_messages()
    ]
    expected = base64.b64encode("héllo".encode()).decode() if encoding == "base64" else "héllo"
    assert got == [expected]


@pytest.mark.parametrize("encoding", ["base64", "none"])
def test_queue_retries_then_poison_with_real_dequeue_count(
    storage: str, tmp_path: Path, encoding: str
) -> None:
    calls.clear()
    host = _host(storage, tmp_path, encoding)
    queue = QueueClient.from_connection_string(storage, "work")
    queue.create_queue()
    settings = QueueSettings(message_encoding=encoding)
    for text in ["ok-1", "fail-1", "ok-2"]:
        queue.send_message(settings.encode(text))
    stats = host.run_queue("work", timeout=60)
    assert stats.succeeded == 2
    assert stats.failed_attempts == 3
    assert stats.poisoned == 1
    assert sorted(c for c in calls if c[0].startswith("ok")) == [("ok-1", 1), ("ok-2", 1)]
    assert [c[1] for c in calls if c[0] == "fail-1"] == [1, 2, 3]
    poison = QueueClient.from_connection_string(storage, "work-poison")
    assert [settings.decode(m.content) for m in poison.receive_messages()] == [b"fail-1"]
    assert queue.get_queue_properties().approximate_message_count == 0


def test_host_settings_come_from_host_json() -> None:
    repo_host = json.loads((Path(__file__).parent.parent / "host.json").read_text())
    settings = QueueSettings.from_host_json(repo_host)
    q = repo_host["extensions"]["queues"]
    assert settings.message_encoding == q["messageEncoding"]
    assert settings.max_dequeue_count == q["maxDequeueCount"]
    assert settings.batch_size == q["batchSize"]
