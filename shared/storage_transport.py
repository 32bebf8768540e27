"""An azure-core transport for the storage clients, written on the standard library's http.client.

The storage SDKs spend about three quarters of a request's client CPU in their default HTTP
stack (requests, then urllib3, then http.client): request preparation, a scan of the
environment for proxies and CA bundles, pool bookkeeping. This transport implements
azure-core's public `HttpTransport` and answers with a subclass of the public
`azure.core.rest.HttpResponse`, so every SDK policy (signing, retries, request ids) still runs;
only the last hop is shorter (benchmarks/bench_storage_transport.py measures it).

- One keep-alive connection per host and thread, reused a bounded number of times and for a
  bounded time (load balancers forget idle flows; storage endpoints can move), and never when
  the server has already closed it.
- Connect and read timeouts as the SDK's own (`connection_timeout`, `read_timeout`).
- TLS always verified, against certifi's bundle (what requests uses, so trust is unchanged).
- No proxy and no custom CA bundle: when the environment asks for either,
  `shared.storage` gives the clients the SDK's default transport instead (`wants_default`).
- The body is always read before `send` returns (storage answers are small; blob downloads
  of claim checks are at most a few hundred KB).

Besides the rest protocol, the response offers the three methods of azure-core's own responses
that the storage SDKs call on what a transport returns: `body()` (content MD5 checks),
`stream_download()` (blob downloads) and `parts()` (batch answers).
"""

from __future__ import annotations

import http.client
import json
import os
import re
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

_CRLF = b"\r\n"


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
        """The inner answers of a multipart/mixed batch answer, in order."""
        return [
            StorageResponse(self._request, status, reason, headers, body)
            for status, reason, headers, body in http_parts(self.content_type or "", self._content)
        ]


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
    """The body without its Content-Encoding, as requests would hand it over."""
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    return data


def _boundary(content_type: str) -> bytes:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip().strip('"').encode()
    raise ValueError(f"no boundary in {content_type!r}")


def _header_block(block: bytes) -> MutableMapping[str, str]:
    headers: MutableMapping[str, str] = case_insensitive_dict()
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def http_parts(
    content_type: str, data: bytes
) -> list[tuple[int, str, MutableMapping[str, str], bytes]]:
    """The application/http answers inside a multipart/mixed body (nested changesets
    included): (status, reason, headers, body) each, in order."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise ValueError(f"not a multipart/mixed answer: {content_type!r}")
    out: list[tuple[int, str, MutableMapping[str, str], bytes]] = []
    for chunk in data.split(b"--" + _boundary(content_type))[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, rest = chunk.lstrip(_CRLF).partition(_CRLF + _CRLF)
        inner_type = _header_block(head).get("Content-Type", "")
        if inner_type.lower().startswith("multipart/mixed"):
            out.extend(http_parts(inner_type, rest))
        elif inner_type.lower().startswith("application/http"):
            http_head, _, body = rest.partition(_CRLF + _CRLF)
            status_line, _, block = http_head.partition(_CRLF)
            _version, status, reason = [*status_line.decode("latin-1").split(" ", 2), ""][:3]
            out.append((int(status), reason, _header_block(block), body.rstrip(_CRLF)))
    return out


# Limits on what is read back, as http.client's own.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "MERGE"))
_NO_BODY_STATUS = frozenset((204, 304))


class ProtocolError(http.client.HTTPException):
    """The server's answer is not well-formed HTTP/1.1 (or stopped short)."""


class _Connection:
    """One keep-alive connection with what bounds its reuse.

    http.client opens it (TCP with TCP_NODELAY; TLS with certificate and host name checks);
    the exchange on it is written here (`exchange`): http.client parses every answer's
    headers with the email package and sends head and body in two writes, together about
    a fifth of a storage request's client CPU with this transport.
    """

    __slots__ = ("born", "generation", "http", "idle_since", "reader", "uses")

    def __init__(self, connection: http.client.HTTPConnection, generation: int) -> None:
        self.http = connection
        self.reader: Any = None
        self.generation = generation
        self.born = self.idle_since = time.monotonic()
        self.uses = 0

    def reusable(self, now: float, generation: int) -> bool:
        sock = self.http.sock
        if sock is None or generation != self.generation:
            return False
        if self.uses >= MAX_USES or now - self.born > MAX_AGE_S:
            return False
        if now - self.idle_since > MAX_IDLE_S:
            return False
        # Readable while idle means the server closed it (or sent junk): never reuse that.
        # (poll, not select: a busy worker can hold file descriptors past select's limit.)
        probe = select.poll()
        probe.register(sock, select.POLLIN)
        return not probe.poll(0)

    def open(self, timeout: float) -> None:
        self.http.timeout = timeout
        self.http.connect()
        assert self.http.sock is not None
        self.reader = self.http.sock.makefile("rb")

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.http.close()

    def exchange(
        self, method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, str, MutableMapping[str, str], bytes, bool]:
        """Send one request, read its whole answer: status, reason, headers, body, and
        whether the server will close the connection."""
        sock = self.http.sock
        assert sock is not None
        sock.sendall(_head(method, target, host, headers, body) + (body or b""))
        reader = self.reader
        while True:
            status, reason, version = _status_line(reader.readline(_MAX_LINE + 1))
            answer_headers = _read_headers(reader)
            if not 100 <= status < 200:
                break  # 1xx: informational, the answer follows
        connection = answer_headers.get("Connection", "").lower()
        will_close = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        if method == "HEAD" or status in _NO_BODY_STATUS:
            return status, reason, answer_headers, b"", will_close
        if "chunked" in answer_headers.get("Transfer-Encoding", "").lower():
            return status, reason, answer_headers, _read_chunked(reader), will_close
        length = answer_headers.get("Content-Length")
        if length is None:  # delimited by the end of the connection
            return status, reason, answer_headers, reader.read(), True
        if not length.strip().isdigit():
            raise ProtocolError(f"bad Content-Length {length[:40]!r}")
        want = int(length)
        content = reader.read(want)
        if len(content) != want:
            raise ProtocolError(f"answer ended after {len(content)} of {want} bytes")
        return status, reason, answer_headers, content, will_close


def _head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request line and headers, refusing anything that would split them."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    lines.extend(f"{name}: {value}" for name, value in headers.items() if value is not None)
    if "Content-Length" not in headers and (body or method in _BODY_METHODS):
        lines.append(f"Content-Length: {len(body or b'')}")
    text = "\r\n".join(lines)
    # Each piece must be one line: no CR, LF or NUL inside a name, a value or the target.
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\x00" in text:
        raise ValueError("a request header or the URL holds a line break or NUL")
    if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
        raise ValueError("the request URL or method holds a space or control character")
    return (text + "\r\n\r\n").encode("latin-1")


def _status_line(line: bytes) -> tuple[int, str, str]:
    if not line:
        raise http.client.RemoteDisconnected("the server closed the connection without answering")
    if len(line) > _MAX_LINE:
        raise ProtocolError("status line too long")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status line {line[:80]!r}")
    return int(code), reason, version


def _read_headers(reader: Any) -> MutableMapping[str, str]:
    headers: MutableMapping[str, str] = case_insensitive_dict()
    for _ in range(_MAX_HEADERS + 1):
        line = reader.readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ProtocolError("the answer's headers stopped short")
        if len(line) > _MAX_LINE:
            raise ProtocolError("header line too long")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        value = value.strip()
        known = headers.get(name)
        headers[name] = value if known is None else f"{known}, {value}"  # as requests joins them
    raise ProtocolError(f"more than {_MAX_HEADERS} headers")


def _read_chunked(reader: Any) -> bytes:
    chunks = []
    while True:
        line = reader.readline(_MAX_LINE + 1)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            break
        chunk = reader.read(size)
        if len(chunk) != size or reader.read(2) != b"\r\n":
            raise ProtocolError("chunked answer stopped short")
        chunks.append(chunk)
    _read_headers(reader)  # trailers, if any, up to the closing empty line
    return b"".join(chunks)


_BAD_TARGET = re.compile("[\x00-\x20\x7f]")


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
            connection.close()
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
            known.close()
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
        try:
            if connection.http.sock is None:
                connection.open(kwargs.get("connection_timeout") or self._connect_timeout)
        except OSError as err:  # refused, unreachable, DNS, TLS handshake or certificate
            self._forget(scheme, netloc)
            raise ServiceRequestError(err, error=err) from err
        assert connection.http.sock is not None
        connection.http.sock.settimeout(read_timeout)
        try:
            status, reason, headers, content, will_close = connection.exchange(
                str(request.method).upper(), slash + path or "/", netloc, request.headers, body
            )
        except (OSError, http.client.HTTPException) as err:
            self._forget(scheme, netloc)
            raise ServiceResponseError(err, error=err) from err
        connection.uses += 1
        connection.idle_since = time.monotonic()
        if will_close:
            self._forget(scheme, netloc)
        return StorageResponse(request, status, reason, headers, content)

    def _forget(self, scheme: str, netloc: str) -> None:
        known = self._connections().pop((scheme, netloc), None)
        if known is not None:
            known.close()


def _body(request: Any) -> bytes | None:
    """The request's body as bytes (storage requests are bounded: at most a 4 MiB block)."""
    if isinstance(request, HttpRequest):
        data = request.content
    elif isinstance(request, LegacyHttpRequest):
        if request.files:
            raise ValueError("multipart form uploads are not supported by this transport")
        data = request.data
    else:
        raise TypeError(f"not an azure-core request: {type(request).__name__}")
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if hasattr(data, "read"):
        return bytes(data.read())
    return b"".join(data)  # an iterable of chunks
