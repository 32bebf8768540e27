"""The repository stands on its own: nothing in it refers to a path outside it.

A clone from GitHub has nothing beside it, so a `../somewhere` that climbs out of the
repository (or a path on the machine it was written on) is a test, script or doc that
breaks there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.harness import REPO

# A run of "../" and the path after it, not preceded by a path character (so "x/../y",
# a path inside a string that stays put, and ".../providers" are not climbs of their own).
_CLIMB = re.compile(r"(?<![\w.\-/])((?:\.\./)+[\w.\-/]*)")
# The folder the steering material sits in beside the repository on the development machine.
_MACHINE = re.compile(r"/work/|\.\./shared\b")
_SKIP_SUFFIXES = {".png", ".jpg", ".ico", ".woff", ".woff2", ".zip", ".gz"}


def repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored: what a commit would put in a clone."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [REPO / name for name in listed.split("\0") if name]


def outside_references(path: Path, text: str) -> list[str]:
    """Every reference in `text` (the content of `path`) that leaves the repository."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _MACHINE.finditer(line):
            found.append(f"{number}: {match.group(0)!r} in {line.strip()[:120]!r}")
        for match in _CLIMB.finditer(line):
            target = (path.parent / match.group(1)).resolve()
            if not target.is_relative_to(REPO):
                found.append(f"{number}: {match.group(1)!r} leaves the repository")
    return found


def test_no_file_refers_to_a_path_outside_the_repository() -> None:
    problems = {}
    files = repository_files()
    assert len(files) > 50  # the listing itself worked
    for path in files:
        if path.suffix in _SKIP_SUFFIXES or not path.is_file():
            continue
        if path == Path(__file__).resolve():
            continue  # it names what it looks for
        text = path.read_bytes().decode("utf-8", errors="replace")
        found = outside_references(path, text)
        if found:
            problems[str(path.relative_to(REPO))] = found
    assert problems == {}


def test_the_check_finds_climbs_out_and_lets_inner_links_be() -> None:
    docs = REPO / "docs" / "x.md"
    assert outside_references(docs, "[a](../infra/main.bicep) x/../y .../providers") == []
    assert outside_references(docs, "[a](../../elsewhere/file.json)") != []
    assert outside_references(REPO / "README.md", "--data @../shared/samples/a.json") != []
    assert outside_references(REPO / "README.md", "see /work/shared/samples") != []
    assert outside_references(REPO / "tests" / "t.py", 'Path("../../outside")') != []


def test_samples_are_in_the_repository() -> None:
    samples = sorted((REPO / "samples").glob("*.json"))
    assert len(samples) >= 30
    readme = (REPO / "samples" / "README.md").read_text()
    # Every sample names its source in samples/README.md (by name or by its context-* row).
    for sample in samples:
        assert sample.name in readme or (
            sample.name.startswith("context-") and "`context-*.json`" in readme
        ), sample.name


def test_license_is_the_one_pyproject_names() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"$', pyproject, re.MULTILINE)
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
