"""A small stand-in for the Functions host, driven by the app's own metadata.

Core Tools cannot be installed here, so tests drive the functions in-process. The
harness takes everything it does from what the real host would read: the triggers
and bindings `function_app.app.get_functions()` declares (route, methods, auth
level, queue names, connection names) and the queue settings in `host.json`
(messageEncoding, maxDequeueCount, batchSize, newBatchThreshold, visibilityTimeout).
It mirrors the host's behaviour where that matters to us:

- HTTP: route template matching under `routePrefix`, 404 for no match, method
  filtering, function keys for non-anonymous functions, duplicate headers joined
  with ", ", unhandled exceptions become 500, output bindings written after return.
- Queues: messages leased in batches of `batchSize`, at most batchSize +
  newBatchThreshold in flight, decoded per `messageEncoding`, the real dequeue count
  passed in; success deletes, failure makes the message visible again after
  `visibilityTimeout`, and after `maxDequeueCount` failed attempts the message is
  copied to `<queue>-poison` (same encoding) and deleted (WebJobs QueueProcessor).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("harness")

# The host's default request size limit (maxRequestBodySize, 100 MB).
MAX_REQUEST_BODY = 100 * 1024 * 1024


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

    def decode(self, content: str) -> bytes:
        if self.message_encoding == "base64":
            return base64.b64decode(content)
        return content.encode("utf-8")


@dataclass
class HttpRoute:
    function: func.Function
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
    """Functions route templates: literal segments and {name}, {name?}, {name:constraint}."""
    parts = []
    for segment in template.strip("/").split("/"):
        m = re.fullmatch(r"\{(\*?)(\w+)(?::[^}?]*)?(\?)?\}", segment)
        if m:
            catch_all, name, optional = m.groups()
            body = ".*" if catch_all else "[^/]+"
            parts.append(f"(?:/(?P<{name}>{body}))?" if optional else f"/(?P<{name}>{body})")
        else:
            parts.append("/" + re.escape(segment))
    return re.compile("".join(parts) + "/?", re.IGNORECASE)


_indexed: dict[int, tuple[func.FunctionApp, list[func.Function]]] = {}


def indexed_functions(app: func.FunctionApp) -> list[func.Function]:
    """The app's functions, indexed once per app object as the worker does at start-up
    (azure-functions refuses a second get_functions() on the same app)."""
    entry = _indexed.get(id(app))
    if entry is None or entry[0] is not app:
        entry = (app, app.get_functions())
        _indexed[id(app)] = entry
    return entry[1]


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
        self.http_routes: list[HttpRoute] = []
        self.queue_functions: dict[str, tuple[func.Function, str, str]] = {}
        self.timer_functions: dict[str, tuple[func.Function, str, str]] = {}  # name: fn, arg, cron
        self.outputs: dict[str, list[dict[str, Any]]] = {}  # by function name
        self.functions = {f.get_function_name(): f for f in indexed_functions(app)}
        for function in self.functions.values():
            self._register(function)

    # -- metadata -------------------------------------------------------------------

    def _register(self, function: func.Function) -> None:
        bindings = [json.loads(b) for b in function.get_raw_bindings()]
        self.outputs[function.get_function_name()] = [
            b for b in bindings if b["direction"].upper() == "OUT" and b["name"] != "$return"
        ]  # read once, as the host reads a function's metadata once at start-up
        trigger = next(b for b in bindings if b["type"].endswith("Trigger"))
        if trigger["type"] == "httpTrigger":
            route = trigger.get("route") or function.get_function_name()
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
            self.timer_functions[function.get_function_name()] = (
                function,
                trigger["name"],
                str(trigger["schedule"]),
            )
        else:
            raise NotImplementedError(f"harness does not play trigger {trigger['type']}")

    def _output_bindings(self, function: func.Function) -> list[dict[str, Any]]:
        return self.outputs[function.get_function_name()]

    def queue_client(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, name)

    # -- HTTP -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
    ) -> func.HttpResponse:
        """One HTTP request as the host would hand it to the worker."""
        split = urlsplit(url)
        joined: dict[str, str] = {}
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        raw_body = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        if len(raw_body) > MAX_REQUEST_BODY:
            return func.HttpResponse(status_code=413)
        for route in self.http_routes:
            match = route.pattern.fullmatch(split.path)
            if match is None:
                continue
            if route.methods and method.upper() not in route.methods:
                continue
            params = dict(parse_qsl(split.query, keep_blank_values=True))
            if route.auth_level != "ANONYMOUS" and not self._has_key(joined, params):
                return func.HttpResponse(status_code=401)
            request = func.HttpRequest(
                method=method.upper(),
                url=f"http://localhost:7071{split.path}"
                + (f"?{split.query}" if split.query else ""),
                headers=joined,
                params=params,
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
                body=raw_body,
            )
            return self._invoke_http(route, request)
        return func.HttpResponse(status_code=404)

    def fire_timer(self, name: str, *, past_due: bool = False) -> None:
        """Run a timer-triggered function once, as the host does when its schedule is due.

        Exceptions propagate: the host logs a failed timer run and fires again at the next
        occurrence, so a test sees the failure here.
        """
        function, arg_name, _schedule = self.timer_functions[name]
        timer = TimerRequest(past_due=past_due)
        function.get_user_function()(**{arg_name: timer})

    def _has_key(self, headers: Mapping[str, str], params: Mapping[str, str]) -> bool:
        key = headers.get("x-functions-key") or params.get("code")
        return key is not None and key in self.function_keys

    def _invoke_http(self, route: HttpRoute, request: func.HttpRequest) -> func.HttpResponse:
        user_function = route.function.get_user_function()
        outputs = {b["name"]: _Out() for b in self._output_bindings(route.function)}
        try:
            response = user_function(**{route.arg_name: request}, **outputs)
            # Output bindings are written after the function returned (as the host does):
            # a failure here turns the answer into a 500.
            for binding in self._output_bindings(route.function):
                self._write_output(binding, outputs[binding["name"]].value)
        except Exception:
            log.exception("function %s failed", route.function.get_function_name())
            return func.HttpResponse(status_code=500)
        if not isinstance(response, func.HttpResponse):
            raise TypeError(f"{route.function.get_function_name()} returned {response!r}")
        return response

    def _write_output(self, binding: Mapping[str, Any], value: Any) -> None:
        if value is None:
            return
        if binding["type"] != "queue":
            raise NotImplementedError(f"harness does not write {binding['type']} outputs")
        client = self.queue_client(binding["queueName"])
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = item if isinstance(item, str) else json.dumps(item)
            self._send(client, self.queue_settings.encode(text))

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
        """
        function, arg_name, _connection = self.queue_functions[queue_name]
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
            msg = QueueMessage(
                id=message.id,
                body=settings.decode(message.content),
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            if on_message is not None:
                on_message(msg)
            if message.dequeue_count > settings.max_dequeue_count:
                self._poison(client, poison, message, stats, lock)
                return
            try:
                function.get_user_function()(**{arg_name: msg})
            except Exception as exc:
                with lock:
                    stats.failed_attempts += 1
                    stats.errors.append(f"{type(exc).__name__}: {exc}")
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


class _Out:
    """What the worker passes for an output binding parameter (func.Out)."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value
