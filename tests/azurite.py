"""Start and stop a real Azurite (from node_modules) on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented; not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = ("Blob", "Queue", "Table")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_ports() -> tuple[int, int, int]:
    """Three free ports the kernel picks: never Azurite's defaults (10000-10002), which
    `scripts/start` and other test runs on the machine want too."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(_free_port())
    blob, queue, table = sorted(ports)
    return blob, queue, table


class Azurite:
    """One Azurite process; in memory by default, or on disk to survive restarts."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.blob_port, self.queue_port, self.table_port = pick_ports()
        self.persistent = persistent
        self.location = Path(tempfile.mkdtemp(prefix="azurite-")) if persistent else None
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self._started_at = 0

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def command(self) -> list[str]:
        binary = REPO / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `npm ci` (the test script does this)")
        cmd = [
            str(binary),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if self.location is None:
            cmd.append("--inMemoryPersistence")
        else:
            cmd += ["--location", str(self.location)]
        return cmd

    def start(self, timeout: float = 60) -> None:
        self._started_at = os.fstat(self._log.fileno()).st_size  # this start's output follows
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.location or REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        ports = (self.blob_port, self.queue_port, self.table_port)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited early: {self.output()}")
            # Ours, not another process's: a port freed by stop() can be taken by anyone
            # before restart(), and a stranger's Azurite would answer in our place.
            if self._listening() and all(self._accepts(p) for p in ports):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not open its ports in {timeout}s: {self.output()}")

    def _listening(self) -> bool:
        """This start's process said each service listens (it exits on EADDRINUSE)."""
        # pread leaves the file offset, which Azurite's stdout shares, where it is.
        text = os.pread(self._log.fileno(), 1 << 20, self._started_at).decode(errors="replace")
        return all(f"Azurite {name} service is successfully listening" in text for name in SERVICES)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same ports (keeps data only when persistent)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)
