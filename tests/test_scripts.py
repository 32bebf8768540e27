"""The README's quick-start commands behave as documented where they can run here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_start_without_core_tools_explains_and_fails(tmp_path: Path) -> None:
    # A PATH with the usual tools but certainly no `func`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "dirname", "env"):
        for folder in ("/usr/bin", "/bin"):
            if (Path(folder) / tool).exists():
                (bin_dir / tool).symlink_to(Path(folder) / tool)
                break
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "start")],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Core Tools" in result.stderr
    assert "npm install --global azure-functions-core-tools@4" in result.stderr
    assert "Azurite" not in result.stdout  # it stopped before starting anything


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "scripts/test" in ci
    commands = [line.split("#")[0].strip() for line in readme.splitlines()]
    assert "scripts/test" in commands
    assert "scripts/start" in commands
