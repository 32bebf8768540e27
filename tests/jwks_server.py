"""A real HTTP key endpoint on 127.0.0.1 for tests: serve, rotate, fail, count, stop.

    with JwksServer(key) as server:          # serves {"keys": [key.jwk()]}
        settings = ...(jwks_uri=server.url)  # http://127.0.0.1:<port>/keys
        server.rotate(new_key)               # publish new_key (old one kept by default)
        server.fail_with(500)                # answer 500 until server.recover()
        server.stop()                        # connection refused from now on
        server.start()                       # back up on the same port
        server.request_count                 # GETs received so far

Every path ending in ``/keys`` serves the key set, so it also stands in for the per-tenant
``{authority}/{tid}/discovery/v2.0/keys`` when the authority host is ``server.base_url``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.tokens import SigningKey


class JwksServer:
    def __init__(self, *keys: SigningKey, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port  # 0: a free port, fixed after the first start()
        self._keys: list[SigningKey] = list(keys)
        self._document: dict[str, Any] | None = None  # raw override of the JSON
        self._fail_status: int | None = None
        self.delay = 0.0  # seconds to wait before answering (timeouts)
        self._lock = threading.Lock()
        self._paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> JwksServer:
        if self._server is not None:
            return self
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._record(self.path)
                if owner.delay:
                    time.sleep(owner.delay)
                status, body = owner._answer(self.path)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        # A short poll interval keeps stop() (shutdown) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: connections are refused until start() again."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The AAD_JWKS_URI value."""
        return f"{self.base_url}/keys"

    # ---- behaviour

    def set_keys(self, *keys: SigningKey) -> None:
        with self._lock:
            self._keys = list(keys)
            self._document = None

    def rotate(self, new_key: SigningKey, *, keep_old: bool = True) -> None:
        """Publish ``new_key``; ``keep_old=False`` also retires the current keys."""
        with self._lock:
            self._keys = [*self._keys, new_key] if keep_old else [new_key]

    def serve_document(self, document: dict[str, Any]) -> None:
        """Serve this JSON as is (malformed key sets, foreign key types)."""
        with self._lock:
            self._document = document

    def fail_with(self, status: int = 500) -> None:
        with self._lock:
            self._fail_status = status

    def recover(self) -> None:
        with self._lock:
            self._fail_status = None

    @property
    def keys(self) -> list[SigningKey]:
        with self._lock:
            return list(self._keys)

    # ---- observation

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._paths)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def reset_count(self) -> None:
        with self._lock:
            self._paths.clear()

    # ---- internals

    def _record(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)

    def _answer(self, path: str) -> tuple[int, bytes]:
        with self._lock:
            if self._fail_status is not None:
                return self._fail_status, b'{"error":"injected failure"}'
            if not path.split("?", 1)[0].endswith("/keys"):
                return 404, b'{"error":"not found"}'
            document = self._document or {"keys": [k.jwk() for k in self._keys]}
        return 200, json.dumps(document).encode()
