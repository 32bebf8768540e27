"""No token, signing key or storage key ever reaches a log line, an answer or storage.

Every logger is captured at DEBUG (ours, the harness standing in for the host, the Azure
SDKs with their own request logging switched on, urllib3), and every record is rendered
in full: message, traceback, stack and any extra attributes (what Application Insights
would receive as custom dimensions). The flows cover what can go wrong: alerts accepted
and processed (inline and through a claim check), every kind of bad token, signing keys
that cannot be fetched or that publish private material, a wrong, malformed or unreachable
storage account, storage faults during processing, a configuration error.

The haystack is then searched for the secrets: each token (whole, its payload and its
signature, and windows of them), the signing keys' private material (PEM body lines and
the JWK private numbers), the storage connection strings and account keys (and windows of
them). Stored data (tables, queue messages, blobs) is searched for tokens too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import secrets
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)
from azure.storage.queue import QueueClient

from shared import alert_queue
from shared.api.security import API_SCOPE, READ_ROLE
from tests.alert_samples import all_payloads, load
from tests.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.fault_injection import (
    FaultPlan,
    FaultServer,
    clear_client_caches,
    inject_faults,
    sdk_request_logging,
    storm,
)
from tests.harness import FunctionsHost, QueueRunStats
from tests.jwks_server import JwksServer
from tests.test_hostile_requests import TARGETS, Receiver, bad_authorizations
from tests.tokens import (
    CLIENT_ID,
    OTHER_APP_ID,
    Mint,
    SigningKey,
    bearer,
    v1_claims,
    v2_claims,
)

_STANDARD_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Secrets are cut into tiles of TILE characters: any leak of 2 * TILE - 1 characters or more
# of one contains a whole tile. Tiles are looked up in the set of every TILE-long run of
# key-ish characters of the haystack, so thousands of tiles cost one pass over the text.
TILE = 20
_KEYISH = re.compile(rf"[A-Za-z0-9+/=_-]{{{TILE},}}")


def tiles(value: str) -> list[str]:
    return [value[i : i + TILE] for i in range(0, len(value) - TILE + 1, TILE)]


def grams(text: str) -> set[str]:
    out: set[str] = set()
    for run in _KEYISH.findall(text):
        out.update(run[i : i + TILE] for i in range(len(run) - TILE + 1))
    return out


@dataclass
class Secrets:
    """Labelled secrets; `found_in` names those a text contains, whole or in part."""

    whole: dict[str, str] = field(default_factory=dict)  # label -> value, searched as is
    parts: dict[str, str] = field(default_factory=dict)  # tile -> label

    def add(self, label: str, value: str) -> None:
        self.whole[label] = value
        for n, tile in enumerate(tiles(value)):
            self.parts.setdefault(tile, f"{label} [part {n}]")

    def add_token(self, label: str, token: str) -> None:
        self.whole[label] = token
        segments = token.split(".")
        if len(segments) == 3:
            self.add(f"{label}: payload", segments[1])
            self.add(f"{label}: signature", segments[2])

    def add_signing_key(self, label: str, key: SigningKey) -> None:
        pem = key.private_pem().decode()
        self.whole[f"{label}: PEM"] = pem
        for n, line in enumerate(pem.splitlines()):
            if "PRIVATE KEY" not in line:
                self.add(f"{label}: PEM line {n}", line)
        numbers = key.private_key.private_numbers()
        for name, value in (
            ("d", numbers.d),
            ("p", numbers.p),
            ("q", numbers.q),
            ("dp", numbers.dmp1),
            ("dq", numbers.dmq1),
            ("qi", numbers.iqmp),
        ):
            self.add(f"{label}: {name} (JWK)", b64url_int(value))
            self.add(f"{label}: {name} (decimal)", str(value))
            self.add(f"{label}: {name} (hex)", f"{value:x}")

    def add_storage(self, label: str, connection_string: str, key: str) -> None:
        self.whole[f"{label}: connection string"] = connection_string
        self.add(f"{label}: account key", key)

    def found_in(self, text: str) -> list[str]:
        found = {label for label, value in self.whole.items() if value and value in text}
        found |= {self.parts[g] for g in grams(text) if g in self.parts}
        return sorted(found)


def render(record: logging.LogRecord) -> str:
    """Everything a handler could send of a record: message, traceback, stack, extras."""
    parts = [record.name, record.getMessage()]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_FIELDS}
    if extras:
        parts.append(repr(extras))
    return "\n".join(parts)


@dataclass
class Haystack:
    """Everything that left the app: log records, HTTP answers, queue errors."""

    caplog: pytest.LogCaptureFixture
    answers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def answer(self, response: func.HttpResponse) -> func.HttpResponse:
        self.answers.append(
            f"{response.status_code} {dict(response.headers)} {response.get_body().decode()}"
        )
        return response

    def queue_run(self, stats: QueueRunStats) -> QueueRunStats:
        self.errors += stats.errors
        return stats

    def text(self) -> str:
        logs = [render(r) for r in self.caplog.records]
        return "\n".join([self.caplog.text, *logs, *self.answers, *self.errors])

    def assert_clean(self, secrets_: Secrets) -> None:
        text = self.text()
        assert self.caplog.records, "nothing was logged: the capture is not working"
        leaked = secrets_.found_in(text)
        assert not leaked, f"secrets in logs or answers: {leaked[:10]}"


@pytest.fixture
def everything(caplog: pytest.LogCaptureFixture) -> Iterator[Haystack]:
    """Capture every logger at DEBUG, with the storage SDKs' request logging on."""
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "urllib3", "shared", "harness", "function_app"):
        caplog.set_level(logging.DEBUG, logger=name)
    with sdk_request_logging():
        yield Haystack(caplog)


def stored_text(connection_string: str) -> str:
    """Every table entity, queue message and blob of an account, as text."""
    out: list[str] = []
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        out += [
            json.dumps(e, default=str) for e in tables.get_table_client(table.name).list_entities()
        ]
    for name in ("alerts", "alerts-poison"):
        queue = QueueClient.from_connection_string(connection_string, name)
        with contextlib.suppress(ResourceNotFoundError):  # a missing queue holds nothing
            out += [m.content for m in queue.peek_messages(max_messages=32)]
    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers():
        client = blobs.get_container_client(container.name)
        for blob in client.list_blobs():
            out.append(client.download_blob(blob.name).readall().decode("utf-8", "replace"))
    return "\n".join(out)


def post(host: FunctionsHost, hay: Haystack, authorization: str | None, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = host.request("POST", "/api/alerts", headers=headers, body=body)
    return int(hay.answer(response).status_code)


def _receiver(
    host: FunctionsHost, storage: str, signing_key: SigningKey, other: SigningKey
) -> Receiver:
    return Receiver(host, storage, signing_key, other)


# ----------------------------------------------------------------------------- tests


def test_accepted_and_processed_alerts_leave_no_token_anywhere(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    everything: Haystack,
) -> None:
    found = Secrets()
    found.add_signing_key("our signing key", signing_key)
    found.add_storage("Azurite", storage, ACCOUNT_KEY)
    statuses = []
    for n, (name, body) in enumerate(sorted(all_payloads().items())):
        token = signing_key.sign(v1_claims() if n % 2 else v2_claims())
        found.add_token(f"token for {name}", token)
        statuses.append(post(host, everything, bearer(token), body))
    big = load("metric-alert-static-fired")
    big["data"]["customProperties"] = {f"k{i}": "v" * 900 for i in range(100)}  # a claim check
    token = signing_key.sign(v1_claims())
    found.add_token("token for the claim check", token)
    statuses.append(post(host, everything, bearer(token), json.dumps(big).encode()))
    assert set(statuses) == {202}
    assert any(
        "claimCheck" in m.content
        for m in QueueClient.from_connection_string(storage, "alerts").peek_messages(
            max_messages=32
        )
    )

    stats = everything.queue_run(host.run_queue("alerts", visibility_timeout=0))
    assert stats.succeeded == len(statuses)
    # The SDKs did log their requests, headers included (with Authorization redacted).
    sdk = [r for r in everything.caplog.records if r.name.startswith("azure.")]
    assert any("Authorization" in r.getMessage() for r in sdk)
    assert any("urllib3" in r.name for r in everything.caplog.records)
    everything.assert_clean(found)
    leaked = found.found_in(stored_text(storage))
    assert not leaked, f"secrets in stored data: {leaked[:10]}"


def test_rejected_tokens_and_key_set_failures_log_no_secret(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
    jwks_server: JwksServer,
    monkeypatch: pytest.MonkeyPatch,
    everything: Haystack,
) -> None:
    found = Secrets()
    found.add_signing_key("our signing key", signing_key)
    found.add_signing_key("the other key", other_signing_key)
    body = all_payloads()["metric-alert-static-fired"]
    for target in TARGETS:
        cases = bad_authorizations(_receiver(host, storage, signing_key, other_signing_key), target)
        for case in cases:
            for name, value in case.headers:
                token = value.split(" ", 1)[-1]
                if name == "Authorization" and 40 <= len(token) < 20_000:
                    found.add_token(f"bad token: {case.label}", token)
            status = everything.answer(
                host.request(target.method, target.path, headers=case.headers, body=case.body)
            ).status_code
            assert status in (401, 403), case.label

    expired = signing_key.sign(v1_claims(now=1_600_000_000))
    found.add_token("expired token", expired)
    assert post(host, everything, bearer(expired), body) == 401

    # A key set that publishes private material: the key is refused, its secrets unlogged.
    leaky = SigningKey.generate(kid="leaky")
    found.add_signing_key("published private key", leaky)
    private_jwk = {
        **leaky.jwk(),
        **{
            name: b64url_int(value)
            for name, value in (
                ("d", leaky.private_key.private_numbers().d),
                ("p", leaky.private_key.private_numbers().p),
                ("q", leaky.private_key.private_numbers().q),
            )
        },
    }
    jwks_server.serve_document({"keys": [signing_key.jwk(), private_jwk]})
    # Another key URL is another verifier: a first fetch, not a rate-limited refresh.
    monkeypatch.setenv("AAD_JWKS_URI", f"{jwks_server.base_url}/leaky/keys")
    leaky_token = leaky.sign(v1_claims())
    found.add_token("token signed by the published private key", leaky_token)
    assert post(host, everything, bearer(leaky_token), body) in (401, 503)
    assert any("private key material" in r.getMessage() for r in everything.caplog.records)

    # Keys that cannot be fetched.
    jwks_server.fail_with(500)
    monkeypatch.setenv("AAD_JWKS_URI", f"{jwks_server.base_url}/failing/keys")
    unknown = other_signing_key.sign(v1_claims(), kid="rotated-key")
    found.add_token("token with a kid the key set cannot confirm", unknown)
    assert post(host, everything, bearer(unknown), body) == 503
    jwks_server.recover()

    everything.assert_clean(found)


@pytest.fixture
def stopped_azurite() -> Iterator[Azurite]:
    """An Azurite that is not running: its ports are closed."""
    server = Azurite()
    yield server
    server.close()


def test_storage_failures_and_bad_settings_log_no_account_key(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    stopped_azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    everything: Haystack,
) -> None:
    found = Secrets()
    found.add_storage("Azurite", storage, ACCOUNT_KEY)
    body = all_payloads()["metric-alert-static-fired"]
    token = signing_key.sign(v1_claims())
    found.add_token("token", token)

    wrong_key = base64.b64encode(secrets.token_bytes(64)).decode()
    malformed_key = "not*base64!" + secrets.token_hex(20)
    accounts = {
        "wrong account key": storage.replace(ACCOUNT_KEY, wrong_key),
        "malformed account key": storage.replace(ACCOUNT_KEY, malformed_key),
        "storage unreachable": stopped_azurite.connection_string,
    }
    found.add_storage("wrong account key", accounts["wrong account key"], wrong_key)
    found.add_storage("malformed account key", accounts["malformed account key"], malformed_key)
    found.add_storage("storage unreachable", accounts["storage unreachable"], ACCOUNT_KEY)
    for label, connection_string in accounts.items():
        monkeypatch.setenv("AzureWebJobsStorage", connection_string)
        clear_client_caches()
        assert post(host, everything, bearer(token), body) == 503, label

    # A configuration error while a connection string with a key is set.
    tenants = os.environ["AAD_TENANT_IDS"]
    monkeypatch.setenv("AzureWebJobsStorage", storage)
    monkeypatch.setenv("AAD_TENANT_IDS", "not-a-guid")
    assert post(host, everything, bearer(token), body) == 503
    monkeypatch.setenv("AAD_TENANT_IDS", tenants)
    clear_client_caches()

    # Storage faults while alerts are processed (failed attempts, poison messages).
    burst = storm(40, seed=2)
    for delivery in burst.deliveries:
        assert post(host, everything, bearer(token), delivery) == 202
    plan = FaultPlan(rate=0.5, seed=1)
    with FaultServer() as server, inject_faults(plan, server):
        stats = everything.queue_run(
            host.run_queue("alerts", visibility_timeout=0, on_message=lambda _m: plan.doom(False))
        )
    assert stats.failed_attempts > 0
    # A message that can never be processed (its claim check points nowhere).
    pointer = {
        "alertId": "x",
        "claimCheck": {"container": "alert-payloads", "blob": "a/b.json", "sha256": "0", "size": 1},
    }
    QueueClient.from_connection_string(storage, "alerts").send_message(alert_queue._dumps(pointer))
    everything.queue_run(host.run_queue("alerts", visibility_timeout=0))

    everything.assert_clean(found)


def test_the_search_finds_a_leak(signing_key: SigningKey, everything: Haystack) -> None:
    """The negative control: a secret logged anywhere, even in part, is found."""
    found = Secrets()
    token = signing_key.sign(v1_claims())
    found.add_token("token", token)
    found.add_signing_key("key", signing_key)
    found.add_storage("account", "AccountKey=" + ACCOUNT_KEY, ACCOUNT_KEY)
    signature = token.split(".")[2]
    logging.getLogger("azure.core.pipeline").debug("retrying %s", signature[100:140])
    logging.getLogger("shared.x").info(
        "d=%s", b64url_int(signing_key.private_key.private_numbers().d)[50:90]
    )
    try:
        raise ValueError(ACCOUNT_KEY[30:60])
    except ValueError:
        logging.getLogger("harness").exception("boom")
    leaked = found.found_in(everything.text())
    assert any(label.startswith("token: signature") for label in leaked), leaked
    assert any(label.startswith("key: d (JWK)") for label in leaked), leaked
    assert any(label.startswith("account: account key") for label in leaked), leaked


# ----------------------------------------------------------------------------- issue 14


def account_sas(storage: str) -> str:
    """A real account SAS for Azurite's account, made by the SDK, for all three services."""
    return generate_account_sas(
        ACCOUNT,
        ACCOUNT_KEY,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True,
            write=True,
            delete=True,
            list=True,
            add=True,
            create=True,
            update=True,
            process=True,
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
        services="bqt",
    )


def sas_connection_string(storage: str, sas: str) -> str:
    endpoints = [p for p in storage.split(";") if p.endswith(f"/{ACCOUNT}") and "Endpoint=" in p]
    assert len(endpoints) == 3, storage
    return ";".join([*endpoints, f"SharedAccessSignature={sas}"])


def add_sas(found: Secrets, label: str, sas: str) -> None:
    signature = parse_qs(sas)["sig"][0]
    found.add(f"{label}: signature", signature)
    found.add(f"{label}: signature (URL-encoded)", quote(signature, safe=""))
    found.whole[f"{label}: whole SAS"] = sas


def test_sas_connection_strings_log_no_signature(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    stopped_azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    mint: Mint,
    everything: Haystack,
) -> None:
    """With a SAS connection string, storage errors logged at ingest (ERROR) and in the API
    (WARNING) used to quote the request URL with its sig=."""
    found = Secrets()
    sas = account_sas(storage)
    add_sas(found, "account SAS", sas)
    body = all_payloads()["metric-alert-static-fired"]
    token = signing_key.sign(v1_claims())
    found.add_token("token", token)

    # Working storage through the SAS: accepted, processed, listed.
    monkeypatch.setenv("AzureWebJobsStorage", sas_connection_string(storage, sas))
    clear_client_caches()
    assert post(host, everything, bearer(token), body) == 202
    stats = everything.queue_run(host.run_queue("alerts", visibility_timeout=0))
    assert stats.succeeded == 1
    api_token = mint("2.0", audience=CLIENT_ID, roles=[READ_ROLE], app_id=OTHER_APP_ID)
    found.add_token("API token", api_token)
    listing = everything.answer(
        host.request("GET", "/api/workitems", headers={"Authorization": bearer(api_token)})
    )
    assert listing.status_code == 200

    # The same SAS against storage that is down (Azurite does not check SAS signatures, so
    # a forged one would be accepted rather than refused).
    monkeypatch.setenv(
        "AzureWebJobsStorage", sas_connection_string(stopped_azurite.connection_string, sas)
    )
    clear_client_caches()
    assert post(host, everything, bearer(token), body) == 503
    answer = everything.answer(
        host.request("GET", "/api/workitems", headers={"Authorization": bearer(api_token)})
    )
    assert answer.status_code == 503
    records = everything.caplog.records
    assert any(r.levelno == logging.ERROR and r.name == "shared.ingest" for r in records)
    assert any(r.levelno == logging.WARNING and r.name == "shared.api.handlers" for r in records)
    everything.assert_clean(found)
    text = everything.text()
    assert "sig=" not in text.replace("sig=<redacted>", "").replace("sig=REDACTED", "")
    leaked = found.found_in(stored_text(storage))
    assert not leaked, f"secrets in stored data: {leaked[:10]}"
    clear_client_caches()


class IdentityEndpoint:
    """A managed identity endpoint (App Service's IDENTITY_ENDPOINT protocol) on loopback."""

    def __init__(self, access_token: str, header: str) -> None:
        self.access_token = access_token
        self.header = header
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests += 1
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.header:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps(
                    {
                        "access_token": endpoint.access_token,
                        "expires_on": str(int(datetime.now(UTC).timestamp()) + 3600),
                        "resource": "https://storage.azure.com",
                        "token_type": "Bearer",
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/msi/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_identity_tokens_and_api_tokens_are_never_logged(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    stopped_azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    mint: Mint,
    everything: Haystack,
) -> None:
    """The managed identity's storage token (and the secret header that fetches it), and the
    API callers' own tokens (apps and users), through failing storage calls."""
    found = Secrets()
    identity_header = secrets.token_urlsafe(32)
    access_token = signing_key.sign({"aud": "https://storage.azure.com", "oid": "x"})
    found.add("identity header", identity_header)
    found.add_token("managed identity access token", access_token)
    endpoint = IdentityEndpoint(access_token, identity_header)
    try:
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
        monkeypatch.setenv("IDENTITY_HEADER", identity_header)
        monkeypatch.delenv("AzureWebJobsStorage")
        closed = stopped_azurite.queue_port  # nothing listens: every storage call fails
        for kind in ("queue", "table", "blob"):
            monkeypatch.setenv(
                f"AzureWebJobsStorage__{kind}ServiceUri", f"https://127.0.0.1:{closed}/{ACCOUNT}"
            )
        monkeypatch.setenv("AzureWebJobsStorage__credential", "managedidentity")
        clear_client_caches()
        token = signing_key.sign(v1_claims())
        found.add_token("webhook token", token)
        body = all_payloads()["metric-alert-static-fired"]
        assert post(host, everything, bearer(token), body) == 503
        for user in (False, True):
            claims: dict[str, object] = {"roles": [READ_ROLE], "app_id": OTHER_APP_ID}
            if user:
                claims.update(scp=API_SCOPE, preferred_username="ada@contoso.example", name="Ada")
            api_token = mint("2.0", audience=CLIENT_ID, **claims)
            found.add_token(f"API token (user={user})", api_token)
            answer = everything.answer(
                host.request("GET", "/api/workitems", headers={"Authorization": bearer(api_token)})
            )
            assert answer.status_code == 503
        assert endpoint.requests >= 1  # the identity token was fetched and used
    finally:
        endpoint.close()
        clear_client_caches()
    everything.assert_clean(found)


FORGED = "ERROR shared.auth: Token rejected: status=401 reason=forged"


def test_alert_fields_cannot_forge_log_lines(
    host: FunctionsHost, storage: str, signing_key: SigningKey, everything: Haystack
) -> None:
    """CR, LF and other control characters in logged alert fields arrive escaped."""
    token = signing_key.sign(v1_claims())
    breaks = ["\r\n", "\n", "\r", "\x85", "\u2028", "\u2029", "\x1b[2K\r", "\x0b", "\x0c"]
    statuses = []
    for n, brk in enumerate(breaks):
        doc = load("metric-alert-static-fired")
        essentials = doc["data"]["essentials"]
        essentials["alertId"] = f"/subscriptions/x/alerts/{n}{brk}{FORGED}"
        essentials["monitoringService"] = f"Platform{brk}{FORGED}"
        essentials["alertRule"] = f"rule{brk}{FORGED}"
        statuses.append(post(host, everything, bearer(token), json.dumps(doc).encode()))
    assert 202 in statuses  # at least some were queued and get processed below
    everything.queue_run(host.run_queue("alerts", visibility_timeout=0))
    ours = [r for r in everything.caplog.records if r.name.startswith("shared.")]
    assert any("alert queued" in r.getMessage() for r in ours)
    for record in ours:
        message = record.getMessage()
        assert not any(c in message for c in ("\r", "\n", "\x85", "\u2028", "\u2029", "\x1b")), (
            repr(message)
        )
    for line in everything.caplog.text.splitlines():
        assert not line.startswith(FORGED[:20]), line
        assert not line.lstrip().startswith(FORGED), line
    forged = [r for r in ours if FORGED in r.getMessage()]
    assert forged, "the forged text was logged (escaped) somewhere"
