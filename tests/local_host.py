"""The built-in local host: the app over real HTTP and its queue listener, without Core Tools.

    .venv/bin/python -m tests.local_host [--port 7071]   # what scripts/start runs without `func`

It is the test harness (tests/harness.py, FunctionsHost) behind a socket, so the local run
and the tests share one implementation of the host's behaviour:

- HTTP: a threaded server on ``bind:port`` hands every request (method, path and query,
  headers including repeated ones, body) to ``FunctionsHost.request`` and writes back the
  status, headers and body the function returned, as the worker's HTTP converter does
  (a Content-Type from the response's mimetype and charset when the function set none).
- Queues: one listener thread per queue-triggered function runs ``FunctionsHost.run_queue``
  (batches, dequeue counts, retries after visibilityTimeout, poison queue) whenever the
  queue has messages, and polls an idle queue with the host's back-off: from 100 ms,
  doubling up to host.json's ``maxPollingInterval``.

The CLI reads ``local.settings.json`` "Values" into the environment as Core Tools does (a
variable already set in the environment wins), then imports ``function_app``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import azure.functions as func

from tests.harness import MAX_REQUEST_BODY, FunctionsHost

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("local_host")

# The Functions host's idle-queue back-off starts here and doubles up to maxPollingInterval.
MIN_POLLING_INTERVAL = 0.1
DEFAULT_MAX_POLLING_INTERVAL = 60.0  # the host's default when host.json sets none


def _timespan_seconds(value: str) -> float:
    h, m, s = value.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _content_type(response: func.HttpResponse) -> str:
    """What the Python worker sends when the function set no Content-Type header."""
    if response.mimetype.startswith("text/") or response.mimetype == "application/json":
        return f"{response.mimetype}; charset={response.charset}"
    return str(response.mimetype)


class LocalHost:
    """``FunctionsHost`` served over HTTP, with a queue listener for every queue trigger."""

    def __init__(
        self,
        app: func.FunctionApp,
        connection_string: str,
        *,
        bind: str = "127.0.0.1",
        port: int = 7071,
    ) -> None:
        self.host = FunctionsHost(app, connection_string)
        self.bind = bind
        self.port = port  # 0: a free port, fixed by start()
        queues = self.host.host_config.get("extensions", {}).get("queues", {})
        self.max_polling_interval = (
            _timespan_seconds(queues["maxPollingInterval"])
            if "maxPollingInterval" in queues
            else DEFAULT_MAX_POLLING_INTERVAL
        )
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = ThreadingHTTPServer((self.bind, self.port), _handler_for(self.host))
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="local-host-http",
                daemon=True,
            )
        ]
        for queue_name in self.host.queue_functions:
            self._threads.append(
                threading.Thread(
                    target=self._listen,
                    args=(queue_name,),
                    name=f"local-host-queue-{queue_name}",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop accepting requests, let in-flight work finish, stop the listeners."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join()
        self._server = None
        self._threads = []

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def routes(self) -> list[tuple[str, tuple[str, ...], str]]:
        """(function name, methods, path) of every HTTP function, as Core Tools lists them."""
        prefix = self.host.route_prefix.strip("/")
        out = []
        for route in self.host.http_routes:
            trigger = next(
                b
                for b in map(json.loads, route.function.get_raw_bindings())
                if b["type"] == "httpTrigger"
            )
            name = str(route.function.get_function_name())
            path = trigger.get("route") or name
            out.append(
                (
                    name,
                    route.methods,
                    f"/{prefix}/{path}".replace("//", "/"),
                )
            )
        return out

    # -- the queue listener -------------------------------------------------------------

    def _listen(self, queue_name: str) -> None:
        """Drain the queue with the harness's semantics; back off while it is idle."""
        interval = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            # A short run: stop() waits at most this long plus the work in flight. A run
            # that did not drain (messages waiting out their visibilityTimeout) ends with
            # TimeoutError after finishing what it leased; the next run picks up the rest.
            try:
                stats = self.host.run_queue(queue_name, timeout=self.max_polling_interval)
                worked = stats.succeeded + stats.failed_attempts + stats.poisoned > 0
            except TimeoutError:
                worked = True
            except Exception as exc:  # storage down or similar: say so, keep polling
                log.warning("queue listener for %s: %s: %s", queue_name, type(exc).__name__, exc)
                worked = False
            interval = (
                MIN_POLLING_INTERVAL if worked else min(interval * 2, self.max_polling_interval)
            )
            self._stopping.wait(interval)


def _handler_for(host: FunctionsHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "itsm-local-host"

        def _forward(self) -> None:
            body = self._read_body()
            if body is None:
                return
            response = host.request(
                self.command, self.path, headers=list(self.headers.items()), body=body
            )
            self._reply(response)

        # http.server dispatches on do_<METHOD>; the host takes every method.
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward  # noqa: N815

        def _read_body(self) -> bytes | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._plain(400, "Content-Length is not a number")
                return None
            if length < 0:
                self._plain(400, "Content-Length is negative")
                return None
            if length > MAX_REQUEST_BODY:
                self._plain(413, "request body too large")
                return None
            return self.rfile.read(length) if length else b""

        def _read_chunked(self) -> bytes | None:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    self._plain(400, "malformed chunked body")
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_REQUEST_BODY:
                    self._plain(413, "request body too large")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)

        def _reply(self, response: func.HttpResponse) -> None:
            body = response.get_body() or b""
            self.send_response(response.status_code)
            names: set[str] = set()
            for name, value in response.headers.items():
                names.add(name.lower())
                self.send_header(name, value)
            if "content-type" not in names and body:
                self.send_header("Content-Type", _content_type(response))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _plain(self, status: int, message: str) -> None:
            self.close_connection = True
            self._reply(
                func.HttpResponse(
                    json.dumps({"error": message}), status_code=status, mimetype="application/json"
                )
            )

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # The path without its query: a query may carry a secret.
            log.info("%s %s -> %s", self.command, self.path.split("?", 1)[0][:200], code)

        def log_message(self, format: str, *args: Any) -> None:
            log.warning("%s", (format % args).split("?", 1)[0][:200])

    return Handler


# -- the CLI ------------------------------------------------------------------------------


def load_local_settings(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Put local.settings.json "Values" into the environment as Core Tools does: a variable
    already set (non-empty) wins. Returns the names skipped for that reason."""
    env = os.environ if environ is None else environ
    values = json.loads(path.read_text()).get("Values", {})
    skipped = []
    for name, value in values.items():
        if env.get(name):
            skipped.append(name)
        else:
            env[name] = str(value)
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve the function app locally without Core Tools (the built-in host)."
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0: any free one)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--settings", type=Path, default=REPO / "local.settings.json", help="Core Tools settings"
    )
    args = parser.parse_args(argv)
    # As host.json asks: the app's own log lines at Information, everything else at Warning.
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(name)s: %(message)s")
    for name in ("shared", "local_host"):
        logging.getLogger(name).setLevel(logging.INFO)

    if not args.settings.exists():
        print(
            f"{args.settings} is missing: copy local.settings.json.example to it",
            file=sys.stderr,
        )
        return 2
    for name in load_local_settings(args.settings):
        print(
            f"Skipping '{name}' from local settings as it's already defined in current "
            "environment variables.",
            file=sys.stderr,
        )
    connection = os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112 (the host's name)
    if not connection:
        print("AzureWebJobsStorage is not set (local.settings.json Values)", file=sys.stderr)
        return 2

    sys.path.insert(0, str(REPO))
    import function_app

    local = LocalHost(function_app.app, connection, bind=args.bind, port=args.port)
    try:
        local.start()
    except OSError as exc:
        print(f"cannot listen on {args.bind}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Built-in local host (not Core Tools) listening on {local.url}", flush=True)
    print("Functions:", flush=True)
    for name, methods, route in local.routes():
        print(f"    {name}: [{','.join(methods)}] {local.url}{route}", flush=True)
    for queue_name, (function, _arg, _conn) in local.host.queue_functions.items():
        print(f"    {function.get_function_name()}: queueTrigger {queue_name}", flush=True)
    print("Ctrl-C stops it.", flush=True)
    while not done.wait(0.5):
        pass
    print("stopping", file=sys.stderr, flush=True)
    local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
