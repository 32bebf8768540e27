"""requirements.txt is the whole locked runtime tree, generated from requirements.in, and it
is what the tests run with (README, "Pinned dependencies")."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;\\]+))?")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(path: Path) -> list[str]:
    """Requirement entries, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _locked() -> dict[str, tuple[str, list[str]]]:
    out = {}
    for entry in _entries(REPO / "requirements.txt"):
        match = _REQUIREMENT.match(entry)
        assert match, entry
        assert match.group(2), f"not an exact version: {entry}"
        out[_normal(match.group(1))] = (match.group(2), re.findall(r"--hash=sha256:\w+", entry))
    return out


def test_every_locked_package_has_an_exact_version_and_hashes() -> None:
    locked = _locked()
    assert len(locked) > 10  # the transitive tree, not just the direct dependencies
    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no hash"
    assert "azure-core" in locked  # a transitive one
    assert "requests" in locked


def test_the_lock_covers_requirements_in() -> None:
    locked = _locked()
    for entry in _entries(REPO / "requirements.in"):
        match = _REQUIREMENT.match(entry)
        assert match, entry
        name, version = _normal(match.group(1)), match.group(2)
        assert name in locked, f"{name} is in requirements.in but not locked: re-run the lock"
        if version:
            assert locked[name][0] == version, f"{name}: {version} wanted, {locked[name][0]} locked"


def test_azure_data_tables_is_pinned_exactly_in_requirements_in() -> None:
    """shared/table_batch.py uses its private transaction builder (see its docstring)."""
    pins = {
        _normal(m.group(1)): m.group(2)
        for m in map(_REQUIREMENT.match, _entries(REPO / "requirements.in"))
        if m
    }
    assert pins["azure-data-tables"] == "12.7.0"


def test_the_tests_run_with_the_locked_versions() -> None:
    for name, (version, _) in _locked().items():
        assert metadata.version(name) == version, f"{name}: installed differs from the lock"
