"""A local Azure Resource Manager for Alerts Management, and the managed identity endpoint.

One HTTP server on 127.0.0.1 plays two parts:

- App Service's managed identity endpoint (what ManagedIdentityCredential calls when
  IDENTITY_ENDPOINT and IDENTITY_HEADER are set): GET /msi/token?api-version=2019-08-01
  &resource=...&client_id=... with the X-IDENTITY-HEADER secret answers a token signed
  with a real RSA key (tests/tokens.py), for that resource and that identity only.
- The Alerts Management operations, as the REST specification's stable 2019-03-01
  describes them (stable/2019-03-01/AlertsManagement.json, see docs/alert-sync.md):
  GET {alertId}?api-version=2019-03-01 answers the Alert; POST {alertId}/changestate
  ?api-version=2019-03-01&newState={New|Acknowledged|Closed} with an optional JSON body
  {"comments": "..."} sets the user state and answers the Alert. Errors answer the
  specification's error shape {"error": {"code", "message"}}. Every request must carry a
  bearer token from the endpoint above, for this server's audience, of the configured
  identity: anything else is a 401.

Faults are scripted per alert (`fail_next`): a status with headers (429 with Retry-After,
500, 403, ...) or a delay longer than the client waits.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tests.tokens import SigningKey

API_VERSION = "2019-03-01"
STATES = ("New", "Acknowledged", "Closed")
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
IDENTITY_CLIENT_ID = "5d3c2b1a-0f9e-4d8c-a7b6-c5d4e3f2a1b0"
IDENTITY_OBJECT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
IDENTITY_HEADER = "local-identity-header-" + uuid.uuid4().hex
_ALERT_PATH = re.compile(
    r"^(?P<alert>/subscriptions/[0-9a-f-]{36}(?:/[^/?#]+)*?"
    r"/providers/Microsoft\.AlertsManagement/alerts/[0-9a-f-]{36})(?P<op>/changestate)?$",
    re.IGNORECASE,
)


@dataclass
class Fault:
    """One scripted answer: `status` with `headers`, or (status None) the normal answer
    after `delay` seconds: beyond the client's read timeout, the change lands unseen."""

    status: int | None = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    code: str = "InternalServerError"


@dataclass
class Call:
    method: str
    alert_id: str
    new_state: str | None
    comments: str | None
    status: int


class ArmServer:
    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.alerts: dict[str, dict[str, Any]] = {}  # lowercased id -> {"id", "state", ...}
        self.forbidden: set[str] = set()
        self.faults: dict[tuple[str, str], deque[Fault]] = {}
        self.calls: list[Call] = []
        self.token_requests: list[dict[str, str]] = []
        self.history: dict[str, list[tuple[str, str | None]]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    def start(self) -> ArmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.alerts.clear()
            self.forbidden.clear()
            self.faults.clear()
            self.calls.clear()
            self.token_requests.clear()
            self.history.clear()

    def add_alert(self, alert_id: str, state: str = "New", condition: str = "Fired") -> None:
        with self.lock:
            self.alerts[alert_id.lower()] = {"id": alert_id, "state": state, "condition": condition}
            self.history[alert_id.lower()] = []

    def delete_alert(self, alert_id: str) -> None:
        with self.lock:
            self.alerts.pop(alert_id.lower(), None)

    def state(self, alert_id: str) -> str:
        with self.lock:
            return str(self.alerts[alert_id.lower()]["state"])

    def changes(self, alert_id: str) -> list[tuple[str, str | None]]:
        """Every state change the alert saw, with its comment (the alert's own history)."""
        with self.lock:
            return list(self.history.get(alert_id.lower(), []))

    def fail_next(self, alert_id: str, *faults: Fault, method: str = "POST") -> None:
        """The alert's next requests of `method` answer these faults, in order."""
        with self.lock:
            self.faults.setdefault((alert_id.lower(), method), deque()).extend(faults)

    def posts(self, alert_id: str | None = None) -> list[Call]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c.method == "POST"
                and (alert_id is None or c.alert_id.lower() == alert_id.lower())
            ]

    # -- the token the managed identity endpoint mints ------------------------------------

    def mint(self, resource: str) -> tuple[str, int]:
        now = int(time.time())
        exp = now + 3600
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "appid": IDENTITY_CLIENT_ID,
            "oid": IDENTITY_OBJECT_ID,
            "sub": IDENTITY_OBJECT_ID,
            "tid": TENANT,
            "idtyp": "app",
        }
        return self.key.sign(claims), exp

    def check_token(self, header: str | None) -> str | None:
        """None if the bearer token is ours, for this server, of the identity; else why not."""
        if not header or not header.startswith("Bearer "):
            return "no bearer token"
        try:
            claims = jwt.decode(
                header[len("Bearer ") :],
                self.key.public_pem(),
                algorithms=["RS256"],
                audience=[self.base_url, self.base_url + "/"],
                issuer=f"https://sts.windows.net/{TENANT}/",
                options={"require": ["exp", "aud", "iss", "oid", "appid"]},
            )
        except jwt.PyJWTError as exc:
            return f"token rejected: {type(exc).__name__}"
        if claims["oid"] != IDENTITY_OBJECT_ID or claims["appid"] != IDENTITY_CLIENT_ID:
            return "token of another identity"
        return None

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                # The client may have timed out meanwhile.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)

            def _error(
                self, status: int, code: str, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._answer(status, {"error": {"code": code, "message": message}}, headers)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/msi/token":
                    self._token(parse_qs(url.query))
                    return
                self._alerts("GET", url.path, parse_qs(url.query, keep_blank_values=True))

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                self._alerts("POST", url.path, parse_qs(url.query, keep_blank_values=True))

            def _token(self, query: dict[str, list[str]]) -> None:
                with server.lock:
                    server.token_requests.append({k: v[0] for k, v in query.items()})
                if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                    self._answer(401, {"statusCode": 401, "message": "bad identity header"})
                    return
                if query.get("api-version") != ["2019-08-01"] or "resource" not in query:
                    self._answer(400, {"statusCode": 400, "message": "bad request"})
                    return
                if query.get("client_id", [IDENTITY_CLIENT_ID]) != [IDENTITY_CLIENT_ID]:
                    self._answer(400, {"statusCode": 400, "message": "no such identity"})
                    return
                resource = query["resource"][0]
                token, exp = server.mint(resource)
                self._answer(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(exp),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": IDENTITY_CLIENT_ID,
                    },
                )

            def _alerts(self, method: str, path: str, query: dict[str, list[str]]) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                match = _ALERT_PATH.match(path)
                if match is None or (method == "POST") != bool(match.group("op")):
                    self._error(404, "NotFound", "no such route")
                    return
                alert_id = match.group("alert")
                why = server.check_token(self.headers.get("Authorization"))
                if why is not None:
                    self._error(
                        401,
                        "InvalidAuthenticationToken",
                        why,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    )
                    return
                if query.get("api-version") != [API_VERSION]:
                    self._error(
                        400,
                        "InvalidApiVersionParameter",
                        f"The api-version {query.get('api-version')} is invalid.",
                    )
                    return
                new_state = comments = None
                if method == "POST":
                    states = query.get("newState", [])
                    if len(states) != 1 or states[0] not in STATES:
                        self._error(
                            400, "BadRequest", "newState must be New, Acknowledged or Closed"
                        )
                        return
                    new_state = states[0]
                    if raw:
                        try:
                            body = json.loads(raw)
                        except ValueError:
                            self._error(400, "BadRequest", "the body is not JSON")
                            return
                        if not isinstance(body, dict) or not isinstance(
                            body.get("comments", ""), str
                        ):
                            self._error(400, "BadRequest", 'the body must be {"comments": string}')
                            return
                        comments = body.get("comments")
                key = alert_id.lower()
                with server.lock:
                    pending = server.faults.get((key, method))
                    fault = pending.popleft() if pending else None
                status = 200
                if fault is not None:
                    time.sleep(fault.delay)
                    if fault.status is None:
                        fault = None
                    else:
                        status = fault.status
                        # Recorded before the answer: a client that gives up on this answer
                        # must find the call already counted (no race with the test's check).
                        with server.lock:
                            server.calls.append(Call(method, alert_id, new_state, comments, status))
                        self._error(fault.status, fault.code, "scripted fault", fault.headers)
                        return
                with server.lock:
                    alert = server.alerts.get(key)
                    if fault is None and alert is None:
                        status = 404
                    elif fault is None and key in server.forbidden and method == "POST":
                        status = 403
                    elif fault is None and method == "POST" and alert is not None:
                        if alert["state"] != new_state:
                            server.history[key].append((str(new_state), comments))
                        alert["state"] = new_state
                    server.calls.append(Call(method, alert_id, new_state, comments, status))
                    snapshot = dict(alert) if alert else None
                if status == 404:
                    self._error(404, "ResourceNotFound", f"Alert '{alert_id}' was not found.")
                elif status == 403:
                    self._error(
                        403,
                        "AuthorizationFailed",
                        f"The client '{IDENTITY_OBJECT_ID}' does not have authorization"
                        " to perform action"
                        " 'Microsoft.AlertsManagement/alerts/changestate/action'.",
                    )
                else:
                    assert snapshot is not None
                    self._answer(200, _alert_body(snapshot))

        return Handler


def _alert_body(alert: dict[str, Any]) -> dict[str, Any]:
    """An Alert as the specification's example answers it (essentials trimmed)."""
    return {
        "id": alert["id"],
        "type": "Microsoft.AlertsManagement/alerts",
        "name": "test alert",
        "properties": {
            "essentials": {
                "severity": "Sev3",
                "signalType": "Metric",
                "alertState": alert["state"],
                "monitorCondition": alert["condition"],
                "monitorService": "Platform",
                "lastModifiedUserName": "System",
            },
            "context": {},
            "egressConfig": {},
        },
    }


def alert_id(n: int, subscription: str = "3b540246-808d-4331-99aa-917b808a9166") -> str:
    guid = uuid.UUID(int=n)
    return f"/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{guid}"
