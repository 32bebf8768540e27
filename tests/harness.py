"""The Functions host, played in-process around the real Python worker.

Core Tools cannot be installed here, so tests, benchmarks and the local host
(`FunctionsHost.request` / `run_queue`) drive the functions through this harness. It
plays the host's part and leaves the worker's part to the worker's own library:

- The worker: every function is indexed, loaded and invoked by `azure-functions-runtime`
  (tests/worker_rpc.py) through `worker_init_request`, `functions_metadata_request`,
  `function_load_request` and `invocation_request`, with the gRPC message classes of the
  worker's FunctionRpc.proto. Routes, methods, auth levels, queue names and data types come
  from the metadata the worker answers (its raw bindings), as the host reads them. The
  worker converts the inputs, runs the function in its thread pool and encodes the answer
  (an HttpResponse gets its `content-type` there, charset only for text/*).
- The host, played here (tests/host_rpc.py for the conversions, each after the host code):
  HTTP: route templates under `routePrefix` matched against the unescaped path (so route
  values are unescaped), 404 for no match, method filtering, function keys for
  non-anonymous functions, 413 over the host's 100 MB limit; the request converted as
  ToRpcHttp does: a repeated header joined with ",", empty query values dropped and a
  repeated key's values joined with ",", and the body forwarded only when Content-Length
  is positive (a chunked request reaches the function without its body); a failed
  invocation answers 500; output bindings written after the function returned (a failure
  there answers 500 too).
  Queues (WebJobs QueueProcessor): messages leased in batches of `batchSize`, at most
  batchSize + newBatchThreshold in flight, decoded per `messageEncoding`, passed as str
  (bytes when the binding declares dataType binary) with the binding data (Id, PopReceipt,
  DequeueCount as JSON, the times); success deletes, failure makes the message visible
  again after `visibilityTimeout`, and after `maxDequeueCount` failed attempts the message
  is copied to `<queue>-poison` (same encoding) and deleted. At most the worker's thread
  pool (`PYTHON_THREADPOOL_THREAD_COUNT`, default min(32, CPUs + 4)) runs at once, as in
  Azure. Other triggers (e.g. timers) are listed in `other_triggers`; a runner for one
  calls `invoke()` with the inputs the host would send.

Not played, and why (none of it changes what our functions see):
- HTTP framing: `request()` takes the request as parsed. Like an HTTP client, it adds
  `Content-Length` when a body is given without Content-Length or Transfer-Encoding, and
  `Host: localhost:7071` when there is none. A Content-Length that is no number, or that
  disagrees with the body, is passed on as given (Kestrel would answer 400 or read
  another length before the host ever ran): an unusable one counts as absent, so the body
  is dropped; the URL the worker sees always names localhost:7071.
- Identities and cookies of the request (our functions read neither), the invocation's
  trace and retry context, the worker's logs to the host (they stay in this process's
  logging), HTTP proxying (`HttpUri`, which this worker version does not ask for).
- The worker runs in this process rather than its own, so the test's monkeypatched
  environment and loggers are the worker's too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from tests import host_rpc
from tests.worker_rpc import Worker, worker

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("harness")

# The host's default request size limit (maxRequestBodySize, 100 MB).
MAX_REQUEST_BODY = 100 * 1024 * 1024
HOST = "localhost:7071"

# The invocation id `run_queue` is about to use, set while its `on_message` hook runs. The
# function itself runs on a worker thread, where the worker's own
# `azure_functions_runtime.invocation_id_cv` holds the same id: together they let a test tie
# what it decides in the hook to what the function then does (tests/fault_injection.py).
current_invocation: ContextVar[str | None] = ContextVar("harness_invocation", default=None)


def _timespan_seconds(value: str) -> float:
    """host.json TimeSpan "hh:mm:ss[.fff]" → seconds."""
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@dataclass(frozen=True)
class QueueSettings:
    message_encoding: str = "base64"
    max_dequeue_count: int = 5
    batch_size: int = 16
    new_batch_threshold: int = 8
    visibility_timeout: float = 0.0

    @classmethod
    def from_host_json(cls, host: Mapping[str, Any]) -> QueueSettings:
        q = host.get("extensions", {}).get("queues", {})
        batch = int(q.get("batchSize", 16))
        return cls(
            message_encoding=str(q.get("messageEncoding", "base64")).lower(),
            max_dequeue_count=int(q.get("maxDequeueCount", 5)),
            batch_size=batch,
            new_batch_threshold=int(q.get("newBatchThreshold", batch // 2)),
            visibility_timeout=_timespan_seconds(q.get("visibilityTimeout", "00:00:00")),
        )

    def encode(self, text: str) -> str:
        if self.message_encoding == "base64":
            return base64.b64encode(text.encode("utf-8")).decode("ascii")
        return text

    def encode_bytes(self, data: bytes) -> str:
        if self.message_encoding == "base64":
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8")

    def decode(self, content: str) -> bytes:
        if self.message_encoding == "base64":
            return base64.b64decode(content)
        return content.encode("utf-8")


@dataclass(frozen=True)
class WorkerFunction:
    """A function as the host knows it after indexing: the worker's metadata and bindings."""

    name: str
    metadata: Any  # RpcFunctionMetadata
    bindings: tuple[dict[str, Any], ...]

    @property
    def trigger(self) -> dict[str, Any]:
        return next(b for b in self.bindings if b["type"].endswith("Trigger"))

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [
            b for b in self.bindings if b["direction"].upper() == "OUT" and b["name"] != "$return"
        ]


@dataclass
class HttpRoute:
    function: WorkerFunction
    arg_name: str
    methods: tuple[str, ...]
    auth_level: str
    pattern: re.Pattern[str]


@dataclass
class QueueRunStats:
    succeeded: int = 0
    failed_attempts: int = 0
    poisoned: int = 0
    errors: list[str] = field(default_factory=list)


def _route_regex(template: str) -> re.Pattern[str]:
    """Functions route templates: literal segments and {name}, {name?}, {*name} (optional, as
    in ASP.NET routing), {name:constraint} (of the constraints only maxlength(n) is checked)."""
    parts = []
    for segment in template.strip("/").split("/"):
        m = re.fullmatch(r"\{(\*?)(\w+)(?::([^}?]*))?(\?)?\}", segment)
        if m:
            catch_all, name, constraint, optional = m.groups()
            body = ".+" if catch_all else "[^/]+"
            limit = re.fullmatch(r"maxlength\((\d+)\)", constraint or "")
            if limit:
                body = f"[^/]{{1,{limit.group(1)}}}" if int(limit.group(1)) else "(?!)"
            if optional or catch_all:
                parts.append(f"(?:/(?P<{name}>{body}))?")
            else:
                parts.append(f"/(?P<{name}>{body})")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


class FunctionsHost:
    def __init__(
        self,
        app: func.FunctionApp,
        connection_string: str,
        host_json: Path = REPO / "host.json",
        function_keys: Iterable[str] = (),
    ) -> None:
        self.host_config = json.loads(host_json.read_text())
        self.queue_settings = QueueSettings.from_host_json(self.host_config)
        self.route_prefix = (
            self.host_config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        )
        self.connection_string = connection_string
        self.function_keys = set(function_keys)
        self.app = app
        self.worker: Worker = worker()
        self.http_routes: list[HttpRoute] = []
        self.queue_functions: dict[str, tuple[WorkerFunction, str, str]] = {}
        # Triggers this harness does not drive itself yet, by type (e.g. timerTrigger): a
        # runner for them calls invoke() with the inputs the host would send.
        self.other_triggers: dict[str, list[WorkerFunction]] = {}
        self.timer_functions: dict[str, tuple[WorkerFunction, str, str]] = {}  # arg, cron
        self.functions: dict[str, WorkerFunction] = {}
        for metadata in self.worker.load_app(app):  # indexed by the worker, once per app
            function = WorkerFunction(
                name=metadata.name,
                metadata=metadata,
                bindings=tuple(json.loads(b) for b in metadata.raw_bindings),
            )
            self.functions[function.name] = function
            self._register(function)

    # -- metadata -------------------------------------------------------------------

    def _register(self, function: WorkerFunction) -> None:
        trigger = function.trigger
        if trigger["type"] == "httpTrigger":
            route = trigger.get("route") or function.name
            prefix = f"/{self.route_prefix.strip('/')}" if self.route_prefix else ""
            self.http_routes.append(
                HttpRoute(
                    function=function,
                    arg_name=trigger["name"],
                    methods=tuple(m.upper() for m in trigger.get("methods") or ()),
                    auth_level=str(trigger.get("authLevel", "FUNCTION")).upper(),
                    pattern=re.compile(re.escape(prefix) + _route_regex(route).pattern, re.I),
                )
            )
        elif trigger["type"] == "queueTrigger":
            self.queue_functions[trigger["queueName"]] = (
                function,
                trigger["name"],
                trigger.get("connection", "AzureWebJobsStorage"),
            )
        elif trigger["type"] == "timerTrigger":
            self.timer_functions[function.name] = (
                function,
                trigger["name"],
                str(trigger["schedule"]),
            )
        else:
            self.other_triggers.setdefault(trigger["type"], []).append(function)

    def queue_client(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, name)

    def invoke(
        self,
        function: WorkerFunction,
        inputs: Mapping[str, Any],
        trigger_metadata: Mapping[str, Any],
        invocation_id: str | None = None,
    ) -> Any:
        """One invocation through the worker: `inputs` maps binding names to TypedData.
        Returns the worker's InvocationResponse; on success, output bindings are written
        (as the host does, after the function returned)."""
        p = self.worker.protos
        bindings = [p.ParameterBinding(name=name, data=data) for name, data in inputs.items()]
        answer = self.worker.invoke(
            self.app, function.metadata, bindings, trigger_metadata, invocation_id
        )
        if answer.result.status == p.StatusResult.Success:
            outputs = {b.name: b.data for b in answer.output_data}
            for binding in function.outputs:
                if binding["name"] in outputs:
                    self._write_output(binding, outputs[binding["name"]])
        return answer

    def succeeded(self, answer: Any) -> bool:
        return bool(answer.result.status == self.worker.protos.StatusResult.Success)

    # -- HTTP -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
    ) -> func.HttpResponse:
        """One HTTP request as a client sends it; the answer as the host gives it."""
        split = urlsplit(url)
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        raw_body = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        names = {name.lower() for name, _ in pairs}
        if raw_body and not names & {"content-length", "transfer-encoding"}:
            pairs.append(("Content-Length", str(len(raw_body))))  # as any HTTP client does
        if "host" not in names:
            pairs.insert(0, ("Host", HOST))
        joined = host_rpc.join_headers(pairs)
        if len(raw_body) > MAX_REQUEST_BODY:
            return func.HttpResponse(status_code=413)
        path = host_rpc.unescaped_path(split.path)
        for route in self.http_routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.methods and method.upper() not in route.methods:
                continue
            query = host_rpc.query_values(split.query)
            if route.auth_level != "ANONYMOUS" and not self._has_key(joined, query):
                return func.HttpResponse(status_code=401)
            return self._invoke_http(
                route,
                method=method.upper(),
                url=f"http://{HOST}{path}" + (f"?{split.query}" if split.query else ""),
                headers=joined,
                body=raw_body,
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
            )
        return func.HttpResponse(status_code=404)

    def fire_timer(self, name: str, *, past_due: bool = False) -> None:
        """Run a timer-triggered function once, as the host does when its schedule is due:
        the TimerInfo as JSON through the worker.

        A failure raises: the host logs a failed timer run and fires again at the next
        occurrence, so a test sees the failure here.
        """
        function, arg_name, _schedule = self.timer_functions[name]
        data = host_rpc.timer_trigger(self.worker.protos, past_due=past_due)
        answer = self.invoke(function, {arg_name: data}, {})
        if not self.succeeded(answer):
            raise RuntimeError(f"timer {name} failed: {answer.result.exception.message}")

    def _has_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        code = next((v for k, v in query.items() if k.lower() == "code"), None)
        key = headers.get("x-functions-key") or code
        return key is not None and key in self.function_keys

    def _invoke_http(
        self,
        route: HttpRoute,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        route_params: Mapping[str, str],
    ) -> func.HttpResponse:
        p = self.worker.protos
        data, metadata = host_rpc.http_request(
            p,
            self.worker.capabilities,
            method=method,
            url=url,
            headers=headers,
            body=body,
            route_params=route_params,
        )
        try:
            answer = self.invoke(route.function, {route.arg_name: data}, metadata)
        except Exception:
            # Output bindings are written after the function returned: a failure there
            # turns the answer into a 500.
            log.exception("function %s: output binding failed", route.function.name)
            return func.HttpResponse(status_code=500)
        if not self.succeeded(answer):
            log.error(
                "function %s failed: %s\n%s",
                route.function.name,
                answer.result.exception.message,
                answer.result.exception.stack_trace,
            )
            return func.HttpResponse(status_code=500)
        return host_rpc.http_response(p, answer)

    def _write_output(self, binding: Mapping[str, Any], data: Any) -> None:
        if binding["type"] != "queue":
            raise NotImplementedError(f"harness does not write {binding['type']} outputs")
        client = self.queue_client(binding["queueName"])
        for item in host_rpc.output_messages(data):
            if isinstance(item, bytes):
                self._send(client, self.queue_settings.encode_bytes(item))
            else:
                self._send(client, self.queue_settings.encode(item))

    @staticmethod
    def _send(client: QueueClient, content: str) -> None:
        try:
            client.send_message(content)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            client.send_message(content)

    # -- queues ---------------------------------------------------------------------

    def run_queue(
        self,
        queue_name: str,
        *,
        timeout: float = 120,
        visibility_timeout: float | None = None,
        on_message: Callable[[QueueMessage], None] | None = None,
    ) -> QueueRunStats:
        """Process `queue_name` until it is empty and nothing is in flight.

        `visibility_timeout` overrides host.json's retry delay for tests that only care
        about outcomes (the retry count and poison behaviour stay the host's).
        `on_message` sees each leased message (as an azure.functions QueueMessage) before
        the worker is invoked with it, with `current_invocation` set to that invocation.
        """
        function, arg_name, _connection = self.queue_functions[queue_name]
        binary = function.metadata.bindings[arg_name].data_type == (
            self.worker.protos.BindingInfo.binary
        )
        settings = self.queue_settings
        delay = settings.visibility_timeout if visibility_timeout is None else visibility_timeout
        client = self.queue_client(queue_name)
        poison = self.queue_client(f"{queue_name}-poison")
        stats = QueueRunStats()
        lock = threading.Lock()
        max_in_flight = settings.batch_size + settings.new_batch_threshold
        in_flight: set[Future[None]] = set()
        deadline = time.monotonic() + timeout

        def handle(message: Any) -> None:
            body = settings.decode(message.content)
            invocation_id = str(uuid.uuid4())
            if on_message is not None:
                token = current_invocation.set(invocation_id)
                try:
                    on_message(
                        QueueMessage(
                            id=message.id,
                            body=body,
                            dequeue_count=message.dequeue_count,
                            expiration_time=message.expires_on,
                            insertion_time=message.inserted_on,
                            time_next_visible=message.next_visible_on,
                            pop_receipt=message.pop_receipt,
                        )
                    )
                finally:
                    current_invocation.reset(token)
            if message.dequeue_count > settings.max_dequeue_count:
                self._poison(client, poison, message, stats, lock)
                return
            data, metadata = host_rpc.queue_trigger(
                self.worker.protos, message, body, binary=binary
            )
            try:
                answer = self.invoke(function, {arg_name: data}, metadata, invocation_id)
                error = None if self.succeeded(answer) else answer.result.exception.message
            except Exception as exc:  # an output binding the host could not write
                error = f"{type(exc).__name__}: {exc}"
            if error is not None:
                with lock:
                    stats.failed_attempts += 1
                    stats.errors.append(error)
                if message.dequeue_count >= settings.max_dequeue_count:
                    self._poison(client, poison, message, stats, lock)
                else:
                    client.update_message(
                        message.id, message.pop_receipt, visibility_timeout=round(delay)
                    )
                return
            client.delete_message(message.id, message.pop_receipt)
            with lock:
                stats.succeeded += 1

        with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
            while time.monotonic() < deadline:
                in_flight = {f for f in in_flight if not f.done()}
                room = max_in_flight - len(in_flight)
                # Like the host, fetch a new batch once in-flight work drops to the threshold.
                if room >= settings.batch_size or (not in_flight and room > 0):
                    batch = self._receive(client, min(settings.batch_size, room))
                else:
                    batch = []
                for message in batch:
                    in_flight.add(pool.submit(handle, message))
                if batch:
                    continue
                if not in_flight and self._empty(client):
                    break
                time.sleep(0.05)
            else:
                raise TimeoutError(f"queue {queue_name} not drained in {timeout}s: {stats}")
            for future in in_flight:
                future.result()
        return stats

    @staticmethod
    def _receive(client: QueueClient, count: int) -> list[Any]:
        """Lease up to `count` messages; a queue nobody created yet is just empty (the
        host's listener waits for it rather than failing)."""
        try:
            return list(
                client.receive_messages(
                    messages_per_page=min(count, 32), visibility_timeout=600, max_messages=count
                )
            )
        except ResourceNotFoundError:
            return []

    @staticmethod
    def _empty(client: QueueClient) -> bool:
        try:
            return client.get_queue_properties().approximate_message_count == 0
        except ResourceNotFoundError:
            return True

    def _poison(
        self,
        client: QueueClient,
        poison: QueueClient,
        message: Any,
        stats: QueueRunStats,
        lock: threading.Lock,
    ) -> None:
        self._send(poison, message.content)
        client.delete_message(message.id, message.pop_receipt)
        with lock:
            stats.poisoned += 1
