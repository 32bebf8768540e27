"""shared/storage_transport.py: the storage clients' transport, against Azurite over http and
https (a self-signed certificate the tests trust), and against small local servers for the
connection rules (keep-alive per thread, bounded reuse, timeouts, dropped connections)."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import http.client
import http.server
import ipaddress
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared import storage as clients
from shared import storage_transport
from shared.config import load_settings
from shared.storage_transport import HttpClientTransport, StorageResponse
from tests.azurite import Azurite

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _settings(connection_string: str) -> Any:
    env = {"AzureWebJobsStorage": connection_string, "AAD_TENANT_IDS": TENANT, "AAD_AUDIENCES": "x"}
    return load_settings(env).storage


class _Responses:
    """raw_response_hook: the class of every transport response the pipeline saw."""

    def __init__(self) -> None:
        self.kinds: list[type] = []

    def __call__(self, response: Any) -> None:
        self.kinds.append(type(response.http_response))


def _exercise(table: TableClient, queue: QueueClient, blobs: BlobServiceClient) -> None:
    """Every kind of call the app makes: entity writes and reads, queries, transactions,
    queue send/receive/delete, blob upload/download, and the errors they answer."""
    with contextlib.suppress(Exception):
        table.create_table()
    entity = {"PartitionKey": "p", "RowKey": "r", "text": "ünï 🚀 <&>", "n": 7, "b": b"\x00\xff"}
    table.upsert_entity(entity, mode=UpdateMode.MERGE)
    got = table.get_entity("p", "r")
    assert (got["text"], got["n"], got["b"]) == (entity["text"], 7, b"\x00\xff")
    assert [e["RowKey"] for e in table.query_entities("PartitionKey eq 'p'")] == ["r"]
    result = table.submit_transaction(  # the SDK's own path: the response's parts()
        [("upsert", {"PartitionKey": "p", "RowKey": f"t{i}", "i": i}) for i in range(3)]
    )
    assert len(result) == 3
    assert all(m["etag"] for m in result)
    with pytest.raises(ResourceNotFoundError) as missing:
        table.get_entity("p", "nope")
    assert missing.value.status_code == 404
    with contextlib.suppress(Exception):
        queue.create_queue()
    queue.send_message("ünï <&> " + "x" * 3000)
    [message] = queue.receive_messages()
    assert message.content == "ünï <&> " + "x" * 3000
    queue.delete_message(message)
    container = blobs.get_container_client("transport")
    with contextlib.suppress(Exception):
        container.create_container()
    data = bytes(range(256)) * 1000
    container.upload_blob("b.bin", data, overwrite=True)
    assert container.download_blob("b.bin").readall() == data
    packed = gzip.compress(b"a" * 5000)
    settings = ContentSettings(content_type="application/json", content_encoding="gzip")
    container.upload_blob("z.json", packed, overwrite=True, content_settings=settings)
    # As with the SDK's default transport: decoded unless asked not to.
    assert container.download_blob("z.json").readall() == b"a" * 5000
    assert container.download_blob("z.json", decompress=False).readall() == packed


def test_the_apps_clients_use_the_transport_against_azurite(storage: str) -> None:
    settings = _settings(storage)
    _exercise(
        clients.table_service(settings).get_table_client("transport"),
        clients.queue_client(settings, "transport"),
        clients.blob_service(settings),
    )
    seen = _Responses()
    clients.queue_client(settings, "transport").send_message("x", raw_response_hook=seen)
    table = clients.table_service(settings).get_table_client("transport")
    table.get_entity("p", "r", raw_response_hook=seen)
    blob = clients.blob_client(settings, "transport", "b.bin")
    blob.download_blob(raw_response_hook=seen).readall()
    assert len(seen.kinds) == 3
    assert set(seen.kinds) == {StorageResponse}
    default = _Responses()  # for contrast: a client with the SDK's defaults
    TableClient.from_connection_string(storage, "transport").get_entity(
        "p", "r", raw_response_hook=default
    )
    assert default.kinds
    assert StorageResponse not in default.kinds


# -- connection rules, against a local HTTP/1.1 server -----------------------------------


class _Server:
    """A keep-alive HTTP/1.1 server answering 200 with the request path; records the client
    port of every request (one port = one connection)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.ports: list[int] = []
        self.delay = delay
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.ports.append(self.client_address[1])
                time.sleep(outer.delay)
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST = do_GET  # noqa: N815 (stdlib names)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> _Server:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *args: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(transport: HttpClientTransport, url: str, **kwargs: Any) -> StorageResponse:
    return transport.send(HttpRequest("GET", url), **kwargs)


def test_one_keep_alive_connection_per_host_and_thread() -> None:
    transport = HttpClientTransport()
    with _Server() as server:
        for i in range(5):
            assert _get(transport, f"{server.url}/a{i}?q=1").text() == f"/a{i}?q=1"
        other: list[str] = []
        worker = threading.Thread(
            target=lambda: other.extend(_get(transport, f"{server.url}/b").text() for _ in "xy")
        )
        worker.start()
        worker.join()
    assert other == ["/b", "/b"]
    assert len(set(server.ports[:5])) == 1
    assert len(set(server.ports[5:])) == 1
    assert server.ports[0] != server.ports[5]


def test_reuse_is_bounded_by_uses_and_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_transport, "MAX_USES", 3)
    transport = HttpClientTransport()
    with _Server() as server:
        for _ in range(7):
            _get(transport, f"{server.url}/")
        assert len(set(server.ports)) == 3  # 3 + 3 + 1
        monkeypatch.setattr(storage_transport, "MAX_IDLE_S", 0.05)
        time.sleep(0.1)
        _get(transport, f"{server.url}/")
        assert len(set(server.ports)) == 4


class _Closer(socketserver.BaseRequestHandler):
    """Answers one request with keep-alive headers, then closes the connection anyway."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.server.connections += 1  # type: ignore[attr-defined]
        time.sleep(0.05)
        self.request.close()


def test_a_server_side_close_between_requests_is_survived() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Closer)
    server.daemon_threads = True
    server.connections = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    transport = HttpClientTransport()
    try:
        for _ in range(3):
            assert _get(transport, url).content == b"ok"
            time.sleep(0.15)  # the server has closed it by now
    finally:
        server.shutdown()
        server.server_close()
    assert server.connections == 3  # type: ignore[attr-defined]


class _Canned(socketserver.BaseRequestHandler):
    """Answers each request on the connection with the next canned answer, then closes."""

    def handle(self) -> None:
        server: Any = self.server
        for answer in server.answers:
            data = b""
            while b"\r\n\r\n" not in data:
                more = self.request.recv(65536)
                if not more:
                    return
                data += more
            server.requests.append(data)
            self.request.sendall(answer)


@contextlib.contextmanager
def _canned(*answers: bytes) -> Iterator[tuple[str, list[bytes]]]:
    server: Any = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Canned)
    server.daemon_threads = True
    server.answers, server.requests = answers, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()


def test_answers_are_read_whatever_their_framing() -> None:
    """Content-Length, chunked (with trailers), interim 100 Continue, repeated headers,
    204 without a body, and a body delimited by the end of the connection."""
    transport = HttpClientTransport()
    with _canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nETag: W/1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
    ) as (url, requests):
        first = _get(transport, f"{url}/1")
        assert (first.status_code, first.reason, first.content) == (200, "OK", b"abc")
        assert first.headers["x-A"] == "1, 2"
        second = transport.send(HttpRequest("PUT", f"{url}/2", content=b"body"))
        assert (second.status_code, second.content) == (201, b"wikipedia")
        third = _get(transport, f"{url}/3")
        assert (third.status_code, third.content, third.headers["etag"]) == (204, b"", "W/1")
        fourth = _get(transport, f"{url}/4")
        assert fourth.content == b"until the end"
    assert len(requests) == 4  # one connection carried them all
    head, _, body = requests[1].partition(b"\r\n\r\n")
    assert head.startswith(b"PUT /2 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 4" in head
    assert body in (b"", b"body")  # sent in the same write as the head, or just after


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"",
    ],
)
def test_malformed_answers_are_response_errors(answer: bytes) -> None:
    """http.client's errors (short bodies, bad chunks, not HTTP, too many headers, nothing
    at all) reach the SDK as azure-core's, so its retry policy sees them."""
    with _canned(answer) as (url, _), pytest.raises(ServiceResponseError):
        _get(HttpClientTransport(), url)


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/x", {"X-Evil": "a\r\nX-Injected: 1"}),
        ("/x", {"X-Evil": "a\nb"}),
        ("/x", {"X-Evil\r\nX-Injected": "1"}),
        ("/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /y", {}),
        ("/a b", {}),
    ],
)
def test_nothing_can_split_the_request(url: str, headers: dict[str, str]) -> None:
    """http.client's own checks: CR or LF in a header name or value, spaces or control
    characters in the URL. Nothing is sent, and the connection is not reused."""
    with _canned(b"HTTP/1.1 204 No Content\r\n\r\n") as (base, requests):
        refused = (ValueError, http.client.InvalidURL)
        with pytest.raises(refused, match=r"Invalid header|can't contain control"):
            HttpClientTransport().send(HttpRequest("GET", base + url, headers=headers))
        assert requests == []


def test_read_timeout_and_refused_connection_are_azure_core_errors() -> None:
    transport = HttpClientTransport(read_timeout=0.3)
    with _Server(delay=2) as server:
        started = time.monotonic()
        with pytest.raises(ServiceResponseError):
            _get(transport, f"{server.url}/slow")
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(ServiceResponseError):
            _get(HttpClientTransport(), f"{server.url}/slow", read_timeout=0.3)
        assert time.monotonic() - started < 1.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: refused
        with pytest.raises(ServiceRequestError):
            _get(transport, f"http://127.0.0.1:{port}/")


def test_close_retires_connections_of_every_thread() -> None:
    transport = HttpClientTransport()
    with _Server() as server:
        done = threading.Event()
        proceed = threading.Event()

        def twice() -> None:
            _get(transport, server.url)
            done.set()
            proceed.wait(5)
            _get(transport, server.url)

        worker = threading.Thread(target=twice)
        worker.start()
        done.wait(5)
        transport.close()
        proceed.set()
        worker.join()
    # close() ran on another thread: that thread's connection was reopened, not reused.
    assert len(server.ports) == 2
    assert len(set(server.ports)) == 2


def test_stream_download_decodes_as_requests_would() -> None:
    request = HttpRequest("GET", "http://x/")
    packed = gzip.compress(b"hello")
    response = StorageResponse(request, 200, "OK", {"Content-Encoding": "gzip"}, packed)
    assert b"".join(response.stream_download(None)) == b"hello"
    assert b"".join(response.stream_download(None, decompress=False)) == packed
    assert len(response.stream_download(None)) == len(packed)
    assert response.stream_download(None).response is response
    assert response.body() == packed


@pytest.mark.parametrize(
    ("variable", "value", "default"),
    [
        ("HTTPS_PROXY", "http://127.0.0.1:3128", True),
        ("http_proxy", "http://127.0.0.1:3128", True),
        ("ALL_PROXY", "socks5://127.0.0.1:1080", True),
        ("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem", True),
        ("curl_ca_bundle", "/etc/ssl/corp.pem", True),
        ("NO_PROXY", "*", False),
        ("HTTPS_PROXY", "", False),
    ],
)
def test_the_default_transport_only_when_asked_for_a_proxy_or_ca_bundle(
    variable: str, value: str, default: bool
) -> None:
    environ = {"PATH": "/bin", variable: value}
    assert storage_transport.wants_default(environ) is default
    assert storage_transport.wants_default({"PATH": "/bin"}) is False


@contextlib.contextmanager
def _recorder() -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    """A local server answering 204 to everything (as a proxy, or as the storage host);
    its port, and the path and Authorization header of each request it got."""
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(204)
            self.end_headers()

        do_POST = do_PUT = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_proxy_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _recorder() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        conn = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "QueueEndpoint=http://storage.invalid/devstoreaccount1;"
            "TableEndpoint=http://storage.invalid/t;BlobEndpoint=http://storage.invalid/b;"
        )
        with contextlib.suppress(Exception):  # 204 is not what the SDK expects
            clients.queue_client(_settings(conn), "q").send_message("x")
    assert seen
    assert seen[0][0].startswith("http://storage.invalid/devstoreaccount1/q/messages")


def test_no_netrc_credentials_are_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK signs requests itself; a .netrc entry for the storage host must not leak in
    (requests, the SDK's default transport, adds one as Basic authentication)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with _recorder() as (port, seen):
        assert _get(HttpClientTransport(), f"http://127.0.0.1:{port}/x").status_code == 204
    assert seen == [("/x", None)]


# -- https: Azurite with a self-signed certificate ----------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "azurite test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _HttpsAzurite(Azurite):
    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__()
        self.cert, self.key = cert, key

    def command(self) -> list[str]:
        return [*super().command(), "--cert", str(self.cert), "--key", str(self.key)]

    @property
    def connection_string(self) -> str:
        plain = super().connection_string
        return plain.replace("Protocol=http;", "Protocol=https;").replace("http://", "https://")


@pytest.fixture(scope="module")
def https_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_HttpsAzurite]:
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    server = _HttpsAzurite(cert, key)
    server.start()
    yield server
    server.close()


def test_https_with_a_trusted_certificate(https_azurite: _HttpsAzurite) -> None:
    conn = https_azurite.connection_string
    options: dict[str, Any] = {"transport": HttpClientTransport(ca_file=str(https_azurite.cert))}
    hook = _Responses()
    _exercise(
        TableClient.from_connection_string(conn, "tls", raw_response_hook=hook, **options),
        QueueClient.from_connection_string(conn, "tls", raw_response_hook=hook, **options),
        BlobServiceClient.from_connection_string(conn, raw_response_hook=hook, **options),
    )
    assert set(hook.kinds) == {StorageResponse}


def test_https_verifies_the_certificate(https_azurite: _HttpsAzurite) -> None:
    """The production trust (certifi) does not know the self-signed certificate: refused
    before anything is sent. Verification cannot be switched off per request either."""
    table = TableClient.from_connection_string(
        https_azurite.connection_string, "tls", transport=HttpClientTransport(), retry_total=0
    )
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        table.get_entity("p", "r")
    transport = HttpClientTransport(ca_file=str(https_azurite.cert))
    url = https_azurite.connection_string.split("TableEndpoint=")[1].rstrip(";")
    with pytest.raises(ValueError, match="verification"):
        transport.send(HttpRequest("GET", f"{url}/Tables"), connection_verify=False)


def test_https_through_the_default_transport_when_a_ca_bundle_is_set(
    https_azurite: _HttpsAzurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE: the app's clients fall back to the SDK's transport, which trusts
    that bundle."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_azurite.cert))
    settings = _settings(https_azurite.connection_string)
    hook = _Responses()
    queue = clients.queue_client(settings, "fallback")
    with contextlib.suppress(Exception):
        queue.create_queue()
    queue.send_message("over https", raw_response_hook=hook)
    table = clients.table_service(settings).get_table_client("fallback")
    with contextlib.suppress(Exception):
        table.create_table()
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r"}, raw_response_hook=hook)
    assert hook.kinds
    assert StorageResponse not in hook.kinds
