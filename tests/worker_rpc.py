"""The real Python worker library, driven as the Functions host's proxy worker drives it.

`azure-functions-runtime` (pinned in scripts/setup-env.sh) is the library the Python worker
runs: the proxy worker receives the host's gRPC messages and hands them to its
`worker_init_request`, `functions_metadata_request`, `function_load_request` and
`invocation_request` as `WorkerRequest(name, request=StreamingMessage, properties)`. This
module does the same, in-process, with message classes generated from the worker's
FunctionRpc.proto (tests/protos, generated on first use with grpcio-tools into the venv), so
that indexing, binding conversion, the invocation, its thread pool and the encoding of the
answer are all the worker's own code.

What plays the proxy worker here, and so is ours:
- one asyncio loop in a thread of its own (the proxy worker's event loop), to which callers
  submit invocations from any thread; sync functions run in the worker's own thread pool
  (`PYTHON_THREADPOOL_THREAD_COUNT`, default min(32, CPUs + 4)), as in production;
- how the worker finds an app: the worker imports `<function_app_directory>/<script>` and
  takes the one FunctionApp in it. The harness is handed app objects rather than files, so
  each app gets a one-line script in a temporary directory that exposes that object, and the
  worker indexes it under `PYTHON_SCRIPT_FILE_NAME` (the worker's documented setting).

Limits (the worker library keeps its state in module globals, as a worker process does):
one worker per test process; functions are keyed by name (uuid5 of the name, the worker's
rule), so two apps with a function of the same name cannot both be invoked: the later
one replaces the earlier, and invoking the earlier one raises instead of running the wrong
code. Each app object is indexed once per process (azure-functions allows one
get_functions() per app); later hosts for the same app reuse that metadata.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import importlib
import importlib.metadata
import importlib.resources
import itertools
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func

PROTO_ROOT = Path(__file__).resolve().parent / "protos"
PROTO_FILES = (
    "azf_rpc/FunctionRpc.proto",
    "azf_rpc/identity/ClaimsIdentityRpc.proto",
    "azf_rpc/shared/NullableTypes.proto",
)
HOST_VERSION = "4.1040.0"  # what the worker is told; it does not change its behaviour


def _generate(out: Path) -> None:
    """protoc (grpcio-tools) over tests/protos into `out`, atomically."""
    from grpc_tools import protoc  # test-only dependency, imported on first use

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=".gen-"))
    try:
        include = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={work}", *PROTO_FILES]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_ROOT}")
        for package in ("azf_rpc", "azf_rpc/identity", "azf_rpc/shared"):
            (work / package / "__init__.py").touch()
        try:
            work.rename(out)
        except OSError:  # another process generated the same digest first
            if not (out / "azf_rpc" / "FunctionRpc_pb2.py").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _generated_dir() -> Path:
    digest = hashlib.sha256()
    for name in PROTO_FILES:
        digest.update((PROTO_ROOT / name).read_bytes())
    for dist in ("grpcio-tools", "protobuf"):
        digest.update(importlib.metadata.version(dist).encode())
    out = Path(sys.prefix) / "azf_rpc-gen" / digest.hexdigest()[:16]
    if not (out / "azf_rpc" / "FunctionRpc_pb2.py").exists():
        _generate(out)
    return out


_protos: SimpleNamespace | None = None
_protos_lock = threading.Lock()


def load_protos() -> Any:
    """The generated message classes as one namespace, as the proxy worker passes them."""
    global _protos
    with _protos_lock:
        if _protos is None:
            path = str(_generated_dir())
            if path not in sys.path:
                sys.path.append(path)
            namespace = SimpleNamespace()
            for module in (
                "azf_rpc.FunctionRpc_pb2",
                "azf_rpc.identity.ClaimsIdentityRpc_pb2",
                "azf_rpc.shared.NullableTypes_pb2",
            ):
                mod = importlib.import_module(module)
                for name in dir(mod):
                    if not name.startswith("_"):
                        setattr(namespace, name, getattr(mod, name))
            _protos = namespace
        return _protos


@dataclass(frozen=True)
class WorkerRequest:
    """What the proxy worker hands the library: the event name, the message, properties."""

    name: str
    request: Any
    properties: Mapping[str, Any] | None = None


# Apps waiting to be imported by the worker through their one-line script.
_pending_apps: dict[int, func.FunctionApp] = {}


def take_app(number: int) -> func.FunctionApp:
    """Called by a generated script when the worker imports it."""
    return _pending_apps.pop(number)


class Worker:
    """One worker library per process, initialized once, indexing each app once."""

    def __init__(self) -> None:
        import azure_functions_runtime as runtime

        self.runtime = runtime
        self.protos = load_protos()
        self.capabilities: dict[str, str] = {}
        self._apps: dict[int, tuple[func.FunctionApp, list[Any]]] = {}
        self._owner: dict[str, int] = {}  # function_id -> id(app) that the worker holds
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._scripts = Path(tempfile.mkdtemp(prefix="harness-apps-"))
        atexit.register(shutil.rmtree, self._scripts, True)
        sys.path.insert(0, str(self._scripts))  # the proxy worker puts the app dir on sys.path
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="python-worker", daemon=True).start()
        runtime.start_threadpool_executor()

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _check(self, what: str, result: Any) -> None:
        if result.status != self.protos.StatusResult.Success:
            raise RuntimeError(f"worker {what} failed: {result.exception.message}")

    def load_app(self, app: func.FunctionApp) -> list[Any]:
        """WorkerInitRequest (the worker indexes the app), FunctionsMetadataRequest and a
        FunctionLoadRequest per function; the RpcFunctionMetadata list, as the host gets it."""
        p = self.protos
        with self._lock:
            known = self._apps.get(id(app))
            if known is not None and known[0] is app:
                return known[1]
            number = next(self._numbers)
            script = f"harness_app_{number}.py"
            (self._scripts / script).write_text(
                f"from tests.worker_rpc import take_app\n\napp = take_app({number})\n"
            )
            _pending_apps[number] = app
            previous = os.environ.get("PYTHON_SCRIPT_FILE_NAME")
            os.environ["PYTHON_SCRIPT_FILE_NAME"] = script
            try:
                init = p.StreamingMessage(
                    request_id=str(uuid.uuid4()),
                    worker_init_request=p.WorkerInitRequest(
                        host_version=HOST_VERSION,
                        function_app_directory=str(self._scripts),
                        worker_directory=str(self._scripts),
                    ),
                )
                answer = self._run(
                    self.runtime.worker_init_request(
                        WorkerRequest("WorkerInitRequest", init, {"protos": p, "host": "127.0.0.1"})
                    )
                )
            finally:
                _pending_apps.pop(number, None)
                if previous is None:
                    os.environ.pop("PYTHON_SCRIPT_FILE_NAME", None)
                else:
                    os.environ["PYTHON_SCRIPT_FILE_NAME"] = previous
            self._check("init", answer.result)
            self.capabilities = dict(answer.capabilities)
            metadata_request = p.StreamingMessage(
                request_id=str(uuid.uuid4()),
                functions_metadata_request=p.FunctionsMetadataRequest(
                    function_app_directory=str(self._scripts)
                ),
            )
            listing = self._run(
                self.runtime.functions_metadata_request(
                    WorkerRequest("FunctionsMetadataRequest", metadata_request)
                )
            )
            self._check("metadata", listing.result)
            functions = list(listing.function_metadata_results)
            for metadata in functions:
                load = p.StreamingMessage(
                    request_id=str(uuid.uuid4()),
                    function_load_request=p.FunctionLoadRequest(
                        function_id=metadata.function_id, metadata=metadata
                    ),
                )
                loaded = self._run(
                    self.runtime.function_load_request(WorkerRequest("FunctionLoadRequest", load))
                )
                self._check(f"load of {metadata.name}", loaded.result)
                self._owner[metadata.function_id] = id(app)
            self._apps[id(app)] = (app, functions)
            return functions

    def invoke(
        self,
        app: func.FunctionApp,
        metadata: Any,
        inputs: Sequence[Any],
        trigger_metadata: Mapping[str, Any],
        invocation_id: str | None = None,
    ) -> Any:
        """One InvocationRequest; the worker's InvocationResponse."""
        if self._owner.get(metadata.function_id) != id(app):
            raise RuntimeError(
                f"function {metadata.name} now belongs to another app indexed in this process "
                "(the worker keys functions by name)"
            )
        p = self.protos
        message = p.StreamingMessage(
            request_id=str(uuid.uuid4()),
            invocation_request=p.InvocationRequest(
                invocation_id=invocation_id or str(uuid.uuid4()),
                function_id=metadata.function_id,
                input_data=list(inputs),
                trigger_metadata=dict(trigger_metadata),
            ),
        )
        return self._run(
            self.runtime.invocation_request(WorkerRequest("FunctionInvocationRequest", message))
        )


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    """The process's worker, started on first use."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = Worker()
        return _worker
