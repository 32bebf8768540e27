"""An azure-core transport for the storage clients, on the standard library's http.client.

The storage SDKs spend about three quarters of a request's client CPU in their default HTTP
stack (requests, then urllib3, then http.client): request preparation, a scan of the
environment for proxies and CA bundles, pool bookkeeping. This transport implements
azure-core's public `HttpTransport` and answers with a subclass of the public
`azure.core.rest.HttpResponse`, so every SDK policy (signing, retries, request ids) still runs;
only the last hop is shorter (benchmarks/bench_storage_transport.py measures it).

- http.client does the whole exchange: it writes the request (refusing header names and
  values that would split it, and URLs with spaces or control characters) and reads the
  answer (status, headers, Content-Length, chunked or connection-delimited bodies, 1xx).
  No HTTP is written here.
- One keep-alive connection per host and thread, reused a bounded number of times and for a
  bounded time (load balancers forget idle flows; storage endpoints can move), and never when
  the server has already closed it.
- Connect and read timeouts as the SDK's own (`connection_timeout`, `read_timeout`).
- TLS always verified, against certifi's bundle (what requests uses, so trust is unchanged).
- No proxy and no custom CA bundle: when the environment asks for either,
  `shared.storage` gives the clients the SDK's default transport instead (`wants_default`).
- The body is always read before `send` returns (storage answers are small; a claim-check
  blob is at most MAX_PAYLOAD_BYTES, 1 MiB by default).

Besides the rest protocol, the response offers the three methods of azure-core's own responses
that the storage SDKs call on what a transport returns: `body()` (content MD5 checks),
`stream_download()` (blob downloads) and `parts()` (batch answers, split by azure-core's own
multipart reader).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import certifi
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpRequest as LegacyHttpRequest
from azure.core.pipeline.transport import HttpResponse as LegacyHttpResponse
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import case_insensitive_dict

# What makes requests (the SDK's default transport) route through a proxy or trust other CAs.
# `no_proxy` alone asks for nothing.
FALLBACK_VARIABLES = frozenset(
    ("http_proxy", "https_proxy", "all_proxy", "requests_ca_bundle", "curl_ca_bundle")
)

# Bounded reuse. Azure's load balancers drop idle flows after 4 minutes without telling
# either end (a request on such a socket hangs until the read timeout), so a connection idle
# this long is replaced rather than trusted; a busy one is still renewed now and then, so a
# storage endpoint that moved (failover, DNS change) is followed within minutes.
MAX_IDLE_S = 50.0
MAX_AGE_S = 300.0
MAX_USES = 1000


def wants_default(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for a proxy or a custom CA bundle (then this transport
    steps aside for the SDK's default one, which honours both)."""
    names = os.environ if environ is None else environ
    return any(name.lower() in FALLBACK_VARIABLES and names[name] for name in names)


class StorageResponse(HttpResponse):
    """A complete answer: status, headers and the whole body, already read."""

    def __init__(
        self,
        request: HttpRequest,
        status: int,
        reason: str,
        headers: MutableMapping[str, str],
        content: bytes,
    ) -> None:
        self._request = request
        self._status = status
        self._reason = reason
        self._headers = headers
        self._content = content
        self._encoding: str | None = None

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._headers

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return str(self._request.url)

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or self._encoding or "utf-8-sig", "replace")

    def json(self) -> Any:
        return json.loads(self._content)

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def __enter__(self) -> StorageResponse:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield _decoded(self._headers, self._content)

    # What the storage SDKs call on a transport's response besides the rest protocol.

    def body(self) -> bytes:
        return self._content

    def stream_download(self, pipeline: Any, **kwargs: Any) -> Download:
        return Download(self, decompress=bool(kwargs.get("decompress", True)))

    def parts(self) -> list[StorageResponse]:
        """The inner answers of a multipart/mixed batch answer, in order, as azure-core reads
        them for its own transports (the `email` package splits the body, http.client parses
        each answer, the batch's per-part policies run on them)."""
        return [
            StorageResponse(
                part.request,  # type: ignore[arg-type]  # the SDK's own inner request
                part.status_code,
                part.reason or "",
                case_insensitive_dict(part.headers),
                part.body(),
            )
            for part in _Multipart(self).parts()
        ]


class _Multipart(LegacyHttpResponse):
    """A whole answer as azure-core's public transport response, whose documented `parts()`
    is azure-core's multipart reader."""

    def __init__(self, response: StorageResponse) -> None:
        super().__init__(response.request, None)  # type: ignore[arg-type]
        self.status_code = response.status_code
        self.reason = response.reason
        self.headers = response.headers
        self.content_type = response.content_type
        self._data = response.content

    def body(self) -> bytes:
        return self._data


class Download:
    """What `stream_download` returns: an iterator over the body that knows its response."""

    def __init__(self, response: StorageResponse, *, decompress: bool) -> None:
        self.response = response
        self.request = response.request
        data = response.content
        self._chunks = iter([_decoded(response.headers, data) if decompress else data])
        self.content_length = len(data)

    def __len__(self) -> int:
        return self.content_length

    def __iter__(self) -> Download:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)


def _decoded(headers: Mapping[str, str], data: bytes) -> bytes:
    """The body without its Content-Encoding (zlib), as requests would hand it over: the
    SDK asks for that when a blob was stored gzip- or deflate-encoded."""
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    return data


class _Connection:
    """One http.client keep-alive connection with what bounds its reuse."""

    __slots__ = (
        "born",
        "generation",
        "http",
        "idle_since",
        "probe",
        "probed",
        "timed",
        "timeout",
        "uses",
    )

    def __init__(self, connection: http.client.HTTPConnection, generation: int) -> None:
        self.http = connection
        self.generation = generation
        self.born = self.idle_since = time.monotonic()
        self.uses = 0
        # The read timeout last set on which socket (settimeout is a syscall: once per change).
        self.timed: object = None
        self.timeout = 0.0
        self.probe = select.poll()
        self.probed: object = None  # the socket registered with probe

    def reusable(self, now: float, generation: int) -> bool:
        sock = self.http.sock
        if sock is None or generation != self.generation:
            return False
        if self.uses >= MAX_USES or now - self.born > MAX_AGE_S:
            return False
        if now - self.idle_since > MAX_IDLE_S:
            return False
        # Readable while idle means the server closed it (or sent junk): never reuse that.
        # (poll, not select: a busy worker can hold file descriptors past select's limit;
        # one poll object per connection, registered once per socket.)
        if self.probed is not sock:
            self.probe = select.poll()
            self.probe.register(sock, select.POLLIN)
            self.probed = sock
        return not self.probe.poll(0)


class HttpClientTransport(HttpTransport[Any, StorageResponse]):
    """azure-core transport on http.client: one keep-alive connection per host and thread."""

    def __init__(
        self,
        *,
        connection_timeout: float = 5,
        read_timeout: float = 10,
        ca_file: str | None = None,
    ) -> None:
        self._connect_timeout = connection_timeout
        self._read_timeout = read_timeout
        self._ca_file = ca_file or certifi.where()
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._generation = 0  # close() bumps it: every thread then drops its connections

    def __enter__(self) -> HttpClientTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        pass  # connections open on first use, per thread

    def close(self) -> None:
        """Retire every connection: this thread's now, other threads' at their next request
        (closing a socket another thread is using would break its request in flight)."""
        self._generation += 1
        for connection in self._connections().values():
            connection.http.close()
        self._connections().clear()

    def _connections(self) -> dict[tuple[str, str], _Connection]:
        try:
            return self._local.connections  # type: ignore[no-any-return]
        except AttributeError:
            self._local.connections = {}
            return self._local.connections  # type: ignore[no-any-return]

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Certificate and host name verification on (create_default_context's defaults).
            self._tls = ssl.create_default_context(cafile=self._ca_file)
        return self._tls

    def _connection(self, scheme: str, netloc: str) -> _Connection:
        connections = self._connections()
        key = (scheme, netloc)
        known = connections.get(key)
        if known is not None:
            if known.reusable(time.monotonic(), self._generation):
                return known
            known.http.close()
        if scheme == "https":
            raw: http.client.HTTPConnection = http.client.HTTPSConnection(
                netloc, timeout=self._connect_timeout, context=self._context()
            )
        elif scheme == "http":
            raw = http.client.HTTPConnection(netloc, timeout=self._connect_timeout)
        else:
            raise ServiceRequestError(f"unsupported URL scheme {scheme!r}")
        fresh = connections[key] = _Connection(raw, self._generation)
        return fresh

    def send(self, request: Any, **kwargs: Any) -> StorageResponse:
        if kwargs.get("connection_verify") is False:
            raise ValueError("TLS verification cannot be turned off for storage requests")
        read_timeout = kwargs.get("read_timeout") or self._read_timeout
        scheme, _, rest = str(request.url).partition("://")
        scheme = scheme.lower()
        netloc, slash, path = rest.partition("/")
        body = _body(request)
        connection = self._connection(scheme, netloc)
        raw = connection.http
        try:
            if raw.sock is None:
                raw.timeout = kwargs.get("connection_timeout") or self._connect_timeout
                raw.connect()
        except OSError as err:  # refused, unreachable, DNS, TLS handshake or certificate
            self._forget(scheme, netloc)
            raise ServiceRequestError(err, error=err) from err
        sock = raw.sock
        assert sock is not None
        if connection.timed is not sock or connection.timeout != read_timeout:
            sock.settimeout(read_timeout)
            connection.timed, connection.timeout = sock, read_timeout
        try:
            raw.request(request.method, slash + path or "/", body, _request_headers(request))
        except (ValueError, http.client.InvalidURL):  # refused a header or the URL: not sent
            self._forget(scheme, netloc)
            raise
        except (OSError, http.client.HTTPException) as err:
            self._forget(scheme, netloc)
            raise ServiceResponseError(err, error=err) from err
        try:
            answer = raw.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException, ValueError) as err:
            # ValueError: http.client on some malformed answers (a negative chunk size).
            self._forget(scheme, netloc)
            raise ServiceResponseError(err, error=err) from err
        connection.uses += 1
        connection.idle_since = time.monotonic()
        if answer.will_close:
            self._forget(scheme, netloc)
        return StorageResponse(
            request, answer.status, answer.reason, _response_headers(answer), content
        )

    def _forget(self, scheme: str, netloc: str) -> None:
        known = self._connections().pop((scheme, netloc), None)
        if known is not None:
            known.http.close()


def _body(request: Any) -> Any:
    """The request's body in a form http.client sends: bytes, a file or an iterable of bytes."""
    if isinstance(request, HttpRequest):
        data = request.content
    elif isinstance(request, LegacyHttpRequest):
        if request.files:
            raise ValueError("multipart form uploads are not supported by this transport")
        data = request.data
    else:
        raise TypeError(f"not an azure-core request: {type(request).__name__}")
    if isinstance(data, str):
        return data.encode("utf-8")
    return data


def _request_headers(request: Any) -> dict[str, str]:
    return {name: value for name, value in request.headers.items() if value is not None}


def _response_headers(answer: http.client.HTTPResponse) -> MutableMapping[str, str]:
    items = answer.getheaders()
    headers: MutableMapping[str, str] = case_insensitive_dict(items)
    if len(headers) == len(items):  # no name repeated (storage answers): one bulk copy
        return headers
    headers = case_insensitive_dict()
    for name, value in items:
        known = headers.get(name)
        headers[name] = value if known is None else f"{known}, {value}"  # as requests joins them
    return headers
