"""The README's quick start, run as written: scripts/start on a machine without Core Tools
(so the built-in local host serves the app), with Azurite's and the key server's usual ports
taken, then the walk-through's commands from the README over real HTTP, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO

MARKER = "<!-- walkthrough:"
BLOCKS = 4  # the marker says how many fenced blocks follow


def walkthrough_commands(readme: str) -> str:
    """The bash blocks that follow the walk-through marker in the README, joined."""
    after = readme[readme.index(MARKER) :]
    blocks = re.findall(r"```bash\n(.*?)```", after, re.DOTALL)[:BLOCKS]
    assert len(blocks) == BLOCKS
    return "\n".join(blocks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _path_without_func() -> str:
    """PATH minus any folder holding Core Tools' `func`: this machine as one without it."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    kept = [f for f in folders if f and not (Path(f) / "func").exists()]
    joined = os.pathsep.join(kept)
    assert shutil.which("func", path=joined) is None
    return joined


@pytest.fixture
def busy_ports() -> Iterator[set[int]]:
    """Hold Azurite's blob port and the key server's port; the ones this test holds (a
    port another program holds now may be free again by the time scripts/start looks)."""
    held = set()
    with ExitStack() as stack:
        for port in (10000, 7072):
            sock = stack.enter_context(socket.socket())
            with suppress(OSError):
                sock.bind(("127.0.0.1", port))
                sock.listen()
                held.add(port)
        yield held


def _json_documents(text: str) -> list[Any]:
    """Every JSON object in `text`, in order (curl -s prints them without newlines)."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while (at := text.find("{", at)) != -1:
        try:
            document, end = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        found.append(document)
        at = end
    return found


def test_readme_walkthrough_runs_as_written_on_the_built_in_host(
    tmp_path: Path, busy_ports: set[int]
) -> None:
    example = json.loads((REPO / "local.settings.json.example").read_text())["Values"]
    app_port = _free_port()
    env = {
        **os.environ,
        # The settings of local.settings.json.example win over any local.settings.json a
        # developer has (the environment wins, as in Core Tools).
        **{k: v for k, v in example.items() if v},
        "PATH": _path_without_func(),
        "LOCAL_DEV_DIR": str(tmp_path / "local-dev"),
        "AZURITE_LOCATION": str(tmp_path / "azurite"),
    }
    start = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "start"), "--port", str(app_port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert start.stdout is not None
        for line in start.stdout:
            lines.append(line)
            if line.startswith("Ready:"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(240), "scripts/start never got ready:\n" + "".join(lines)
        output = "".join(lines)
        # It saw the taken ports, picked others and said so; it said which host runs.
        assert busy_ports  # the check below checks something
        names = {10000: "Azurite blob", 7072: "local signing keys"}
        for port in busy_ports:
            assert re.search(rf"Port {port} \({names[port]}\) is taken; using \d+ instead", output)
        assert "BUILT-IN LOCAL HOST" in output
        assert "npm install --global azure-functions-core-tools@4" in output
        assert "without npm" in output
        azurite_ports = re.search(r"Azurite \(ports (\d+), (\d+), (\d+)\)", output)
        keys_port = re.search(r"the key server \(port (\d+)\)", output)
        assert azurite_ports is not None
        assert keys_port is not None
        started_ports = [int(p) for p in (*azurite_ports.groups(), keys_port.group(1))]
        started_ports.append(app_port)

        script = walkthrough_commands((REPO / "README.md").read_text()).replace(
            "http://localhost:7071", f"http://127.0.0.1:{app_port}"
        )
        run = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        fired, listing, acknowledged, resolved_post, item = _json_documents(run.stdout)
        assert fired["monitorCondition"] == "Fired"
        [listed] = listing["items"]
        assert listed["state"] == "New"
        assert re.search(r"ETag: \"", run.stdout, re.IGNORECASE)
        assert acknowledged["id"] == listed["id"]
        assert acknowledged["state"] == "Acknowledged"
        assert resolved_post["monitorCondition"] == "Resolved"
        assert item["id"] == listed["id"]
        assert item["state"] == "Resolved"
        assert item["manual"]["note"] == "Looking into it"
        assert any("Acknowledged" in change for h in item["history"] for change in h["changes"])
        # mint_token.py's errors are not hidden, and it had none.
        assert "Traceback" not in run.stderr
    finally:
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        with suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGINT)
        try:
            start.wait(timeout=60)
        finally:
            if start.poll() is None:
                os.killpg(start.pid, signal.SIGKILL)
                start.wait()
        reader.join(timeout=10)
    assert start.returncode == 130, "".join(lines)
    assert "Stopped everything scripts/start started." in "".join(lines)
    # Nothing it started is left: no process in its group, no port still served.
    with pytest.raises(ProcessLookupError):
        os.killpg(start.pid, 0)
    deadline = time.monotonic() + 10
    while any(_listening(p) for p in started_ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in started_ports if _listening(p)] == []


def test_start_stops_and_names_the_app_port_when_it_is_taken(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "start"), "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "PATH": _path_without_func()},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} (the app) is taken" in result.stderr
    assert "Azurite" not in result.stdout  # it stopped before starting anything
