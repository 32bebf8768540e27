"""Real-browser fixtures for the board: Debian's Chromium driven by Playwright, the app served
over real HTTP by tests/local_host.py with Azurite behind it.

- ``chromium``: one headless Chromium for the whole session (/usr/bin/chromium, installed by
  scripts/install-chromium.sh; Playwright's own browser downloads are never used).
- ``board``: the app on a free port for one test, and ``board.page(role)`` opening the
  board signed in as a user holding ``role``. The token is minted with the test's own keys
  and handed to the board's sign-in module through its test-only path
  (``__BOARD_TEST_SIGN_IN__``); the server verifies it exactly as in production.

Every page records, through a hook installed before any of its scripts run, whether
anything hostile ran (``pwned()`` calls, dialogs) and every CSP violation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.api_support import READ, WRITE, Api, api_session
from tests.harness import REPO, FunctionsHost
from tests.local_host import LocalHost
from tests.tokens import Mint

CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Runs before the board's own scripts in every page: the "did anything run" hook.
HOOK = """
window.__pwned = [];
window.pwned = (what) => window.__pwned.push(String(what));
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""

__all__ = ["READ", "WRITE", "Board", "board", "chromium"]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: scripts/test installs it (scripts/install-chromium.sh)"
        )
    with sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile (user-data-dir) of its own.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Board:
    local: LocalHost
    api: Api
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.local.url

    def page(
        self,
        role: str = WRITE,
        path: str = "/board/",
        *,
        color_scheme: str = "light",
        width: int = 1280,
        height: int = 860,
        **claims: Any,
    ) -> Page:
        token = self.api.token(role, user=True, **claims)
        context = self.browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,  # type: ignore[arg-type]
            locale="en-GB",
            timezone_id="UTC",
            reduced_motion="reduce",
        )
        self.contexts.append(context)
        # Nothing leaves the machine: only our own origin is reachable.
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(self.url) else route.abort()
            ),
        )
        context.add_init_script(HOOK)
        context.add_init_script(
            f"window.__BOARD_TEST_SIGN_IN__ = {json.dumps({'accessToken': token})};"
        )
        page = context.new_page()
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(self.url + path)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def ran(page: Page) -> dict[str, list[str]]:
    """What the page-level hook saw."""
    result: dict[str, list[str]] = page.evaluate(
        "({pwned: window.__pwned, csp: window.__cspViolations})"
    )
    return result


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core (pinned in package.json) against the page as it is, WCAG 2.1 A and AA rules."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, which the page's CSP does not govern.
        page.evaluate(AXE.read_text())
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {runOnly: {type: 'tag',
             values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations
           .map(v => ({id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.slice(0, 3)
                         .map(n => n.target.join(' ') + ' ' + n.failureSummary)}))"""
    )
    return violations


@pytest.fixture
def board(
    host: FunctionsHost,
    storage: str,
    chromium: Browser,
    mint: Mint,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Board]:
    import function_app

    for api in api_session(host, mint, monkeypatch):
        with LocalHost(function_app.app, storage, port=0) as local:
            b = Board(local, api, chromium)
            try:
                yield b
            finally:
                b.close()


def save_screenshot(page: Page, path: Path, target: Path | None) -> None:
    page.screenshot(path=str(path), full_page=False)
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
