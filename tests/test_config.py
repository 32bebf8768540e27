"""Settings: every required one named when missing, every malformed one explained."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared import storage
from shared.config import (
    AZNS_AAD_WEBHOOK_APP_ID,
    SETTING_NAMES,
    ConfigError,
    get_settings,
    load_settings,
)

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AAD_TENANT_IDS": TENANT,
    "AAD_AUDIENCES": "api://itsm-receiver",
}


def with_(**changes: str | None) -> dict[str, str]:
    env = dict(BASE)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.storage.connection_string == "UseDevelopmentStorage=true"
    assert s.auth.tenant_ids == (TENANT,)
    assert s.auth.audiences == ("api://itsm-receiver",)
    assert s.auth.allowed_caller_app_ids == (AZNS_AAD_WEBHOOK_APP_ID,)
    assert s.auth.required_role == "ActionGroupsSecureWebhook"
    assert s.auth.authority_host == "https://login.microsoftonline.com"
    assert s.auth.jwks_uri is None
    assert s.max_payload_bytes == 1024 * 1024
    assert (s.correlation_mode, s.reopen_window_minutes) == ("alert", 60)
    assert (s.flap_threshold, s.flap_window_minutes) == (4, 60)


@pytest.mark.parametrize("name", ["AzureWebJobsStorage", "AAD_TENANT_IDS", "AAD_AUDIENCES"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_required_setting_is_named(name: str, value: str | None) -> None:
    env = with_(**{name: value})
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.setting == name
    assert name in str(err.value)
    assert "Example of a valid value" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AAD_TENANT_IDS", "contoso.onmicrosoft.com"),
        ("AAD_ALLOWED_CALLER_APP_IDS", "not-a-guid"),
        ("AAD_AUTHORITY_HOST", "login.microsoftonline.com"),
        ("AAD_JWKS_URI", "keys.json"),
        ("MAX_PAYLOAD_BYTES", "lots"),
        ("MAX_PAYLOAD_BYTES", "10"),
        ("CORRELATION_MODE", "resource"),
        ("REOPEN_WINDOW_MINUTES", "-1"),
        ("FLAP_THRESHOLD", "1"),
        ("FLAP_WINDOW_MINUTES", "0"),
        ("AzureWebJobsStorage", "just-a-name"),
        ("AzureWebJobsStorage__credential", "password"),
    ],
)
def test_malformed_setting_is_named_with_example(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(with_(**{name: value}))
    assert err.value.setting == name
    if name == "AzureWebJobsStorage":
        # A connection string may hold an account key: never echo it.
        assert value not in str(err.value)
    else:
        assert repr(value) in str(err.value)


def test_lists_are_trimmed_deduplicated_and_guids_lowercased() -> None:
    other = "A1B2C3D4-0000-0000-0000-000000000001"
    s = load_settings(
        with_(AAD_TENANT_IDS=f" {TENANT} ,{other},{TENANT},", AAD_AUDIENCES="api://a, b ,api://a")
    )
    assert s.auth.tenant_ids == (TENANT, other.lower())
    assert s.auth.audiences == ("api://a", "b")


def test_empty_required_role_means_no_role_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_settings(with_(AAD_REQUIRED_ROLE="")).auth.required_role is None
    for key, value in with_(AAD_REQUIRED_ROLE="").items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.WARNING):
        get_settings()
    assert "AAD_REQUIRED_ROLE is empty" in caplog.text


def test_identity_based_storage_from_account_name() -> None:
    env = with_(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__accountName="contosoitsm",
        AzureWebJobsStorage__credential="managedidentity",
        AzureWebJobsStorage__clientId="11111111-2222-3333-4444-555555555555",
    )
    s = load_settings(env).storage
    assert s.connection_string is None
    assert s.queue_service_uri == "https://contosoitsm.queue.core.windows.net"
    assert s.table_service_uri == "https://contosoitsm.table.core.windows.net"
    assert s.blob_service_uri == "https://contosoitsm.blob.core.windows.net"
    # The clients our code creates use the same identity as the host's triggers.
    assert isinstance(storage.credential(s), ManagedIdentityCredential)
    assert storage.queue_client(s, "alerts").url.startswith(
        "https://contosoitsm.queue.core.windows.net/alerts"
    )
    assert storage.table_service(s).url.startswith("https://contosoitsm.table.core.windows.net")
    assert storage.blob_service(s).url.startswith("https://contosoitsm.blob.core.windows.net")


def test_identity_based_storage_from_service_uris() -> None:
    env = with_(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__queueServiceUri="https://q.example.net",
        AzureWebJobsStorage__tableServiceUri="https://t.example.net",
        AzureWebJobsStorage__blobServiceUri="https://b.example.net",
    )
    s = load_settings(env).storage
    assert (s.queue_service_uri, s.table_service_uri, s.blob_service_uri) == (
        "https://q.example.net",
        "https://t.example.net",
        "https://b.example.net",
    )
    assert isinstance(storage.credential(s), DefaultAzureCredential)


def test_partial_service_uris_name_the_missing_ones() -> None:
    env = with_(AzureWebJobsStorage=None, AzureWebJobsStorage__queueServiceUri="https://q.x")
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert "AzureWebJobsStorage__tableServiceUri" in str(err.value)
    assert "AzureWebJobsStorage__blobServiceUri" in str(err.value)


def test_get_settings_follows_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    first = get_settings()
    assert get_settings() is first  # validated once for one environment
    monkeypatch.setenv("CORRELATION_MODE", "rule")
    assert get_settings().correlation_mode == "rule"


def test_setting_names_cover_everything_read() -> None:
    """load_settings reads no variable outside SETTING_NAMES (the parity tests rely on it)."""
    seen: list[str] = []

    class Recorder(dict[str, str]):
        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            seen.append(key)
            return super().get(key, default)

        def __contains__(self, key: object) -> bool:
            seen.append(str(key))
            return super().__contains__(key)

    load_settings(Recorder(BASE))
    assert set(seen) <= set(SETTING_NAMES)
    assert set(SETTING_NAMES) <= set(seen) | {
        # Derived only when the connection string is absent.
        "AzureWebJobsStorage__accountName",
    }


@contextlib.contextmanager
def _recording_server(
    record: Callable[[http.server.BaseHTTPRequestHandler], object], set_cookie: str = ""
) -> Iterator[int]:
    """A local HTTP server answering 204 to every request, after `record(request)` (the
    body read into `request.body`), with a Set-Cookie header if given; its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record(self)
            self.send_response(204)
            if set_cookie:
                self.send_header("Set-Cookie", set_cookie)
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = do_GET  # noqa: N815 (stdlib names)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


def test_storage_transport_never_sends_netrc_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK signs requests itself; a .netrc entry for the storage host must not leak in
    (requests would add it, and stat the file on every request to find out)."""
    seen: list[str | None] = []
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with _recording_server(lambda r: seen.append(r.headers.get("Authorization"))) as port:
        url = f"http://127.0.0.1:{port}/"
        requests.get(url, timeout=5)  # plain requests picks the entry up
        storage._transport().session.get(url, timeout=5)
    assert seen[0] is not None
    assert seen[0].startswith("Basic ")
    assert seen[1] is None


@pytest.fixture
def no_requests_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in Azure's workers: no proxy or CA variables, so the storage session's short path
    is the one taken (this machine sets CA bundles for its own TLS proxy)."""
    for name in list(os.environ):
        if name.lower() in storage._REQUESTS_ENVIRONMENT:
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_requests_environment")
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "REQUESTS_CA_BUNDLE"])
def test_storage_transport_reads_the_environment_only_when_it_concerns_requests(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert storage._transport().session.trust_env is False
    monkeypatch.setenv(variable, "http://127.0.0.1:3128" if "PROXY" in variable.upper() else "/x")
    assert storage._transport().session.trust_env is True


def test_storage_transport_goes_through_a_configured_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy set in the environment is honoured (the transport reads it when present)."""
    seen: list[str] = []
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _recording_server(lambda r: seen.append(r.path)) as port:  # a proxy gets the full URL
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        storage._transport().session.get("http://storage.invalid/table", timeout=5)
    assert seen == ["http://storage.invalid/table"]


def _plain_session() -> requests.Session:
    """requests' own code path, configured as the storage transport's session is."""
    session = requests.Session()
    session.auth = storage._SdkAuth()
    session.trust_env = False
    return session


@pytest.mark.usefixtures("no_requests_environment")
def test_storage_session_sends_exactly_what_requests_would() -> None:
    """The storage session's short path (what azure-core's calls take) puts the same request
    on the wire as requests' own path: request line, headers in order, body."""
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []

    def record(r: http.server.BaseHTTPRequestHandler) -> None:
        seen.append((r.requestline, list(r.headers.items()), r.body))  # type: ignore[attr-defined]

    lean = storage._transport().session
    assert isinstance(lean, storage._StorageSession)
    assert lean.trust_env is False  # so the short path is the one under test
    cases: list[tuple[str, str, dict[str, str | None], bytes | None]] = [
        ("GET", "/t(PartitionKey='a%2Fb',RowKey='x')?$select=k&$top=5", {"Accept": "a/b"}, None),
        ("POST", "/$batch", {"Content-Type": "multipart/mixed", "X-Drop": None}, b"x\r\ny"),
        ("MERGE", "/t(PartitionKey='p',RowKey='r')", {"If-Match": '"W/1"'}, b'{"a":1}'),
        ("delete", "/t(PartitionKey='p',RowKey='r')", {"If-Match": "*"}, b""),
    ]
    with _recording_server(record) as port:
        for method, path, headers, body in cases:
            for session in (_plain_session(), lean):
                session.request(
                    method, f"http://127.0.0.1:{port}{path}", headers=headers, data=body,
                    timeout=5, allow_redirects=False,
                )  # fmt: skip
    assert len(seen) == 2 * len(cases)
    for plain, short in zip(seen[::2], seen[1::2], strict=True):
        assert short == plain
    assert seen[1][0].startswith("GET /t(PartitionKey='a%2Fb'")
    assert ("X-Drop", "None") not in seen[3][1]


@pytest.mark.usefixtures("no_requests_environment")
def test_storage_session_sends_back_a_cookie_as_requests_would() -> None:
    """Storage sets no cookies, but if something on the way does, the session keeps and
    returns it like requests does (such a session then takes requests' own path)."""
    seen: list[str | None] = []
    with _recording_server(lambda r: seen.append(r.headers.get("Cookie")), "affinity=1") as port:
        for session in (_plain_session(), storage._transport().session):
            for _ in range(2):
                session.request(
                    "GET", f"http://127.0.0.1:{port}/", timeout=5, allow_redirects=False
                )
    assert seen == [None, "affinity=1", None, "affinity=1"]
