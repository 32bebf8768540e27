"""Which optional test tools a pytest selection needs, one per line (for scripts/test).

    .venv/bin/python scripts/selection_needs.py                       # no selection: all
    .venv/bin/python scripts/selection_needs.py -k auth               # nothing
    .venv/bin/python scripts/selection_needs.py tests/test_infra.py   # checkov

A tool is needed when a test pytest would run for the selection uses the fixture that
runs it, so `scripts/test -k auth` does not spend minutes installing checkov. Without a
selection (CI, .ci/run) every tool is installed.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tool (installed by scripts/install-<tool>.sh) -> the fixture through which tests use it.
OPTIONAL_TOOLS: dict[str, str] = {
    "checkov": "checkov_report",
    "chromium": "chromium",  # tests/board_browser.py, the board's browser tests
}


class _Selected:
    """A pytest plugin that records the fixtures of the tests left after selection."""

    def __init__(self) -> None:
        self.fixtures: set[str] = set()

    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:
            self.fixtures.update(getattr(item, "fixturenames", ()))


def needed(selection: list[str]) -> list[str]:
    if not selection:
        return list(OPTIONAL_TOOLS)
    selected = _Selected()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main(
            ["--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), *selection],
            plugins=[selected],
        )
    return [tool for tool, fixture in OPTIONAL_TOOLS.items() if fixture in selected.fixtures]


if __name__ == "__main__":
    print("\n".join(needed(sys.argv[1:])))
