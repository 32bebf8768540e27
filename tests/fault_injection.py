"""Storage faults on demand, and alert storms delivered the way Azure Monitor delivers them.

Faults go into the app's own storage clients through the SDK pipeline, without touching
product code: ``inject_faults(plan)`` wraps the HTTP transport of every client that
``shared.storage`` builds (queue, blob, table: the ingest side and the processor alike),
then clears the factories' ``functools.cache`` so that the next call builds a faulty
client; leaving the block restores the factories and clears the caches again. The clients
keep everything else the product gives them (timeouts, retry policies, credentials), so
the SDK's own retries see each injected fault. The test harness's queue client (leases,
deletes, poison moves) is not the app's and stays healthy.

    plan = FaultPlan(rate=0.2, seed=7)         # 20 % of storage requests fail
    with FaultServer() as server, inject_faults(plan, server):
        ...                                      # plan.counts: what was injected

Kinds of fault, each a real failure on the wire:

- ``503``: the request goes to a local server that answers 503 ServerBusy (not processed);
- ``reset``: the connection is reset after the request headers (not processed);
- ``stall``: the server never answers; the client's read timeout (shortened to
  ``STALL_READ_TIMEOUT``) fires (not processed);
- ``lost``: the request reaches storage and is processed, then the answer is lost (a
  timeout seen by the client): the nasty case, where a retry repeats work already done.

``plan.doom(True)`` makes every storage request of one invocation fail, whatever the rate:
a message processed under doom fails every attempt and ends in ``alerts-poison``. Tests call
it from the harness's ``on_message`` hook, which runs just before the worker runs the
function on a thread of its own: the doom is keyed by the invocation id (the harness's
``current_invocation`` in the hook, the worker's ``invocation_id_cv`` in the function).
Called anywhere else, it applies to the calling thread.

The second half holds alert storms: metric alert payloads with their own event times,
delivery with Azure Monitor's retry rule (only 408, 429, 503, 504 are retried, a bounded
number of times), and the reference tables: every accepted event once, in event-time
order, straight through the processor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import ResourceNotFoundError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from azure_functions_runtime import invocation_id_cv

from shared import alert_queue, processor, storage, store
from shared.alerts import normalize, parse_payload
from shared.config import ALERTS_QUEUE, CLAIM_CHECK_CONTAINER, POISON_QUEUE
from tests.alert_factory import metric_alert_payload
from tests.harness import FunctionsHost, current_invocation
from tests.workitem_fixtures import Snapshot, snapshot, wipe_tables

KINDS = ("503", "reset", "stall", "lost")
SERVICES = ("queue", "blob", "table")
STALL_READ_TIMEOUT = 0.25  # seconds: the client gives up on a stalled answer after this
_STALL_HOLD = 2.0  # the stall server holds a connection at most this long
_MAX_HEAD = 1 << 20


# --------------------------------------------------------------------------- the server


class _FaultHandler(socketserver.BaseRequestHandler):
    server: _ModeServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(_STALL_HOLD)
        try:
            head, rest = _read_head(sock)
            mode = self.server.mode
            if mode == "reset":
                # SO_LINGER 0: close() sends RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if mode == "stall":
                deadline = time.monotonic() + _STALL_HOLD
                while time.monotonic() < deadline and sock.recv(65536):
                    pass  # until the client gives up and closes
                return
            _drain_body(sock, head, rest)
            sock.sendall(_busy_response(head))
        except OSError:
            pass  # the client went away first


class _ModeServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.mode = mode


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > _MAX_HEAD:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _drain_body(sock: socket.socket, head: bytes, rest: bytes) -> None:
    """Read the request body, so that closing the socket afterwards is a clean FIN."""
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or b"0")
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    received = len(rest)
    while (chunked and not rest.endswith(b"0\r\n\r\n")) or (not chunked and received < length):
        chunk = sock.recv(65536)
        if not chunk:
            return
        received += len(chunk)
        rest = (rest + chunk)[-16:]


def _busy_response(head: bytes) -> bytes:
    wants_json = b"application/json" in head.lower()
    if wants_json:  # tables speak OData JSON
        body = json.dumps(
            {
                "odata.error": {
                    "code": "ServerBusy",
                    "message": {"lang": "en-US", "value": "Injected fault: the server is busy."},
                }
            }
        ).encode()
        content_type = b"application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
    else:
        body = (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
            b"<Message>Injected fault: the server is busy.</Message></Error>"
        )
        content_type = b"application/xml"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"x-ms-error-code: ServerBusy\r\n"
        b"Retry-After: 0\r\n"
        b"Connection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class FaultServer:
    """Loopback listeners that answer 503, reset the connection, or never answer."""

    def __init__(self) -> None:
        self._servers: dict[str, _ModeServer] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> FaultServer:
        for mode in ("503", "reset", "stall"):
            server = _ModeServer(mode)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers[mode] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def netloc(self, mode: str) -> str:
        port = self._servers[mode].server_address[1]
        return f"127.0.0.1:{port}"

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- the plan


@dataclass
class FaultPlan:
    """Which storage requests fail, and how; thread-safe, counts what it injected."""

    rate: float = 0.0  # probability that one request (one SDK attempt) fails
    kinds: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 1.0))
    services: frozenset[str] = frozenset(SERVICES)
    seed: int = 0
    enabled: bool = True
    # Which requests may fail, beyond `services`: (service, request) -> bool.
    select: Callable[[str, Any], bool] | None = None
    counts: Counter[str] = field(default_factory=Counter)  # injected faults per kind
    requests: Counter[str] = field(default_factory=Counter)  # requests seen per service

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._doomed: dict[object, bool] = {}  # invocation id (or thread id) -> doomed

    def doom(self, doomed: bool) -> None:
        """Fail every request of the invocation about to run (from the harness's on_message
        hook), else of the calling thread from now on; or stop doing so."""
        with self._lock:
            self._doomed[current_invocation.get() or threading.get_ident()] = doomed

    def draw(self, service: str, request: Any = None) -> str | None:
        """The fault for one request of `service`, or None to let it through."""
        with self._lock:
            doomed = self._doomed.get(invocation_id_cv.get() or threading.get_ident(), False)
        eligible = self.select is None or self.select(service, request)
        with self._lock:
            self.requests[service] += 1
            if not self.enabled or service not in self.services or not eligible:
                return None
            if not doomed and self._rng.random() >= self.rate:
                return None
            kind = self._rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
            self.counts[kind] += 1
            return kind

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(self.counts.values())


class FaultyTransport(HttpTransport[Any, Any]):
    """The SDK's requests transport, failing the requests the plan picks."""

    def __init__(
        self, plan: FaultPlan, server: FaultServer, service: str, inner: HttpTransport[Any, Any]
    ) -> None:
        self.plan = plan
        self.server = server
        self.service = service
        self.inner = inner

    def __enter__(self) -> FaultyTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        kind = self.plan.draw(self.service, request)
        if kind is None:
            return self.inner.send(request, **kwargs)
        if kind == "lost":
            response = self.inner.send(request, **kwargs)
            with contextlib.suppress(Exception):
                response.internal_response.close()
            raise ServiceResponseTimeoutError(
                "injected fault: storage processed the request, its answer was lost"
            )
        original = request.url
        parts = urlsplit(original)
        request.url = urlunsplit(parts._replace(scheme="http", netloc=self.server.netloc(kind)))
        if kind == "stall":
            kwargs = {**kwargs, "read_timeout": STALL_READ_TIMEOUT}
        try:
            return self.inner.send(request, **kwargs)
        finally:
            request.url = original


def request_body(request: Any) -> bytes:
    """The bytes a request sends (legacy and azure.core.rest requests alike)."""
    for name in ("body", "content"):
        value = getattr(request, name, None)
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
    return b""


def clear_client_caches() -> None:
    """Forget every storage client and store the app built (they are functools.cache'd)."""
    for factory in (
        storage.queue_client,
        storage.table_service,
        storage.table_client,
        storage.blob_service,
        storage._blob_client_options,
        storage.credential,
    ):
        factory.cache_clear()
    store._store.cache_clear()
    store.clear_caches()


@contextlib.contextmanager
def client_options(
    transform: Callable[[dict[str, Any], str], dict[str, Any]],
) -> Iterator[None]:
    """Every storage client the app builds inside the block is built with
    `transform(options, service)` instead of the product's options (blocks nest)."""
    queue_options, blob_options = storage._queue_options, storage._blob_options
    table_options = storage._table_options
    storage._queue_options = lambda: transform(queue_options(), "queue")
    storage._blob_options = lambda: transform(blob_options(), "blob")
    storage._table_options = lambda: transform(table_options(), "table")
    clear_client_caches()
    try:
        yield
    finally:
        storage._queue_options = queue_options
        storage._blob_options = blob_options
        storage._table_options = table_options
        clear_client_caches()


@contextlib.contextmanager
def inject_faults(plan: FaultPlan, server: FaultServer) -> Iterator[FaultPlan]:
    """Every storage client the app builds inside the block goes through `plan`."""

    def faulty(options: dict[str, Any], service: str) -> dict[str, Any]:
        # Wrap the product's own transport (pool size and timeouts included).
        inner = options.get("transport")
        if inner is None:
            timeouts = {
                k: options[k] for k in ("connection_timeout", "read_timeout") if k in options
            }
            inner = RequestsTransport(**timeouts)
        return {**options, "transport": FaultyTransport(plan, server, service, inner)}

    with client_options(faulty):
        yield plan


def sdk_request_logging() -> contextlib.AbstractContextManager[None]:
    """The storage SDKs log every request and answer (headers included) at DEBUG."""
    return client_options(lambda options, _service: {**options, "logging_enable": True})


# --------------------------------------------------------------------------- storms

SUBSCRIPTION = "6d3c2b1a-0f9e-4d8c-b7a6-958473625140"
STORM_START = datetime(2025, 2, 3, 4, 0, tzinfo=UTC)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def metric_alert(
    n: int, condition: str, *, vm: int, rule: int, fired: datetime, resolved: datetime | None
) -> dict[str, Any]:
    """A common-schema metric alert (the shape of Microsoft's sample), times of its own."""
    return metric_alert_payload(
        n,
        condition,
        vm=vm,
        rule=rule,
        fired=_stamp(fired),
        resolved=None if resolved is None else _stamp(resolved),
        subscription=SUBSCRIPTION,
        id_prefix="fault-storm",
    )


@dataclass(frozen=True)
class Storm:
    """Alert events to deliver: `events` each once; `deliveries` shuffled, with copies."""

    alerts: int  # alert instances (a Fired, and for most a Resolved)
    events: list[bytes]  # each distinct event once
    deliveries: list[bytes]  # what is POSTed: the events and some copies, shuffled

    @property
    def resolved(self) -> int:
        return sum(1 for e in self.events if event_key(e)[1] == "Resolved")


def storm(
    deliveries: int,
    *,
    seed: int = 1,
    vms: int = 200,
    rules: int = 12,
    resolved_share: float = 0.75,
    duplicates: float = 0.05,
) -> Storm:
    """Exactly `deliveries` POSTs: metric alerts on a pool of VMs (shared CIs), most Fired
    then Resolved, the rest still open, plus copies of a share of the events (a retry, a
    second action group), all shuffled.
    """
    rng = random.Random(seed)
    copies = int(deliveries * duplicates / (1 + duplicates))
    wanted = deliveries - copies
    events: list[bytes] = []
    alerts = 0
    while len(events) < wanted:
        fired = STORM_START + timedelta(seconds=rng.randrange(0, 3600))
        vm, rule = rng.randrange(vms), rng.randrange(rules)
        first = metric_alert(alerts, "Fired", vm=vm, rule=rule, fired=fired, resolved=None)
        events.append(json.dumps(first).encode())
        if len(events) < wanted and rng.random() < resolved_share:
            end = fired + timedelta(seconds=rng.randrange(60, 1800))
            last = metric_alert(alerts, "Resolved", vm=vm, rule=rule, fired=fired, resolved=end)
            events.append(json.dumps(last).encode())
        alerts += 1
    everything = events + rng.sample(events, copies)
    rng.shuffle(everything)
    return Storm(alerts, events, everything)


def event_key(body: bytes) -> tuple[str, str]:
    """(alert id, condition) of a storm payload: which event a delivery carries."""
    essentials = json.loads(body)["data"]["essentials"]
    return str(essentials["alertId"]), str(essentials["monitorCondition"])


def event_time(body: bytes) -> str:
    essentials = json.loads(body)["data"]["essentials"]
    return str(essentials.get("resolvedDateTime") or essentials["firedDateTime"])


# Azure Monitor retries only these, at most 5 times (5, 20, 5, 40, 5 s); scaled down here.
RETRIED_STATUSES = frozenset((408, 429, 503, 504))
AZURE_MONITOR_DELAYS = (5.0, 20.0, 5.0, 40.0, 5.0)


@dataclass
class Delivery:
    body: bytes
    statuses: list[int] = field(default_factory=list)  # one per attempt
    seconds: list[float] = field(default_factory=list)  # how long each attempt took
    answer: dict[str, Any] | None = None  # the JSON of the last answer
    headers: dict[str, str] = field(default_factory=dict)  # of the last answer

    @property
    def accepted(self) -> bool:
        return bool(self.statuses) and 200 <= self.statuses[-1] < 300


def deliver(
    host: FunctionsHost,
    authorization: str | Callable[[], str],
    body: bytes,
    *,
    delays: Sequence[float] = (0.05, 0.2, 0.05, 0.4, 0.05),
) -> Delivery:
    """POST like an action group: retry 408/429/503/504 after each of `delays`, then give up."""
    delivery = Delivery(body)
    for attempt in range(len(delays) + 1):
        token = authorization() if callable(authorization) else authorization
        start = time.perf_counter()
        response = host.request(
            "POST",
            "/api/alerts",
            headers={"Authorization": token, "Content-Type": "application/json"},
            body=body,
        )
        delivery.seconds.append(time.perf_counter() - start)
        delivery.statuses.append(response.status_code)
        raw = response.get_body()
        delivery.answer = json.loads(raw) if raw else None
        delivery.headers = dict(response.headers)
        if response.status_code not in RETRIED_STATUSES or attempt == len(delays):
            break
        time.sleep(delays[attempt])
    return delivery


def deliver_all(
    host: FunctionsHost,
    authorization: str | Callable[[], str],
    bodies: Iterable[bytes],
    *,
    workers: int = 16,
    delays: Sequence[float] = (0.05, 0.2, 0.05, 0.4, 0.05),
    on_answer: Callable[[Delivery], None] | None = None,
) -> list[Delivery]:
    """Every body delivered concurrently by `workers` callers, each with Azure Monitor's retries."""

    def one(body: bytes) -> Delivery:
        delivery = deliver(host, authorization, body, delays=delays)
        if on_answer is not None:
            on_answer(delivery)
        return delivery

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, bodies))


# --------------------------------------------------------------------------- reference


def reference_snapshot(connection_string: str, bodies: Iterable[bytes], tenant_id: str) -> Snapshot:
    """The tables after each distinct event once, in event-time order, through the processor.

    Runs against `connection_string` (its work item tables are wiped before and after),
    normalizing each payload as ingest does for a token of `tenant_id`.
    """
    distinct = sorted({event_key(b): b for b in bodies}.values(), key=event_time)
    with mock.patch.dict(os.environ, {"AzureWebJobsStorage": connection_string}):
        clear_client_caches()
        with contextlib.suppress(ResourceNotFoundError):
            wipe_tables(connection_string)
        for n, body in enumerate(distinct):
            payload = parse_payload(body)
            alert = normalize(
                payload,
                tenant_id=tenant_id,
                correlation_id=str(uuid.uuid4()),
                received_at=datetime.now(UTC),
            )
            processor.handle(alert_queue.encode(alert, payload), 1, f"reference-{n}")
        expected = snapshot(connection_string)
        wipe_tables(connection_string)
    clear_client_caches()
    return expected


# --------------------------------------------------------------------------- storage looks


def queue_length(connection_string: str, name: str = ALERTS_QUEUE) -> int:
    """Messages in a queue (visible or not), 0 when it does not exist."""
    try:
        props = QueueClient.from_connection_string(connection_string, name).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def poison_length(connection_string: str) -> int:
    return queue_length(connection_string, POISON_QUEUE)


def claim_check_blobs(connection_string: str) -> list[str]:
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        CLAIM_CHECK_CONTAINER
    )
    try:
        return [b.name for b in container.list_blobs()]
    except ResourceNotFoundError:
        return []


def doomed(body: bytes, share: int) -> bool:
    """A stable pick of about 1/`share` of the messages (by content hash)."""
    return int(hashlib.sha256(body).hexdigest()[:8], 16) % share == 0
