"""Real-browser fixtures for the board: Debian's Chromium driven by Playwright, the app served
over real HTTP by tests/local_host.py with Azurite behind it.

- ``chromium``: one headless Chromium for the whole session (/usr/bin/chromium, installed by
  scripts/install-chromium.sh; Playwright's own browser downloads are never used).
- ``board``: the app on a free port for one test, and ``board.page(role)`` opening the
  board signed in as a user holding ``role``. The board signs in exactly as in production
  (MSAL.js, authorization code with PKCE): ``FakeEntra`` plays Entra's endpoints inside the
  browser context and hands out a token minted with the test's own keys, which the server
  verifies exactly as in production. The board has no test-only path.

Every page records, through a hook installed before any of its scripts run, whether
anything hostile ran (``pwned()`` calls, dialogs) and every CSP violation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests.api_support import READ, WRITE, Api, api_session
from tests.harness import REPO, FunctionsHost
from tests.local_host import LocalHost
from tests.tokens import Mint, SigningKey, b64url, b64url_json

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


class FakeEntra:
    """Plays Entra ID for one browser context, as far as a SPA's sign-in needs it: the
    authority's metadata, the authorize endpoint (redirects back with a code for the PKCE
    challenge it was sent) and the token endpoint (answers the code and its verifier with an
    access token minted by the test's keys, and an id token). Everything else off our origin
    is refused: nothing leaves the machine."""

    def __init__(self, origin: str, config: dict[str, Any], access_token: str, key: SigningKey):
        self.origin = origin
        self.config = config
        self.access_token = access_token
        self.key = key
        self.user = jwt_claims(access_token)
        self.authorize: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.authority = str(config["authority"])
        self.tenant = str(config["tenantId"])
        self.cors = {"Access-Control-Allow-Origin": origin}

    def __call__(self, route: Route) -> None:
        request = route.request
        url = request.url
        if url.startswith(self.origin + "/"):
            route.continue_()
        elif not url.startswith(self.authority + "/"):
            route.abort()
        elif "openid-configuration" in url:
            self._json(route, 200, self._metadata())
        elif "/oauth2/v2.0/authorize" in url:
            self._authorize(route, url)
        elif "/oauth2/v2.0/token" in url and request.method == "OPTIONS":
            headers = {**self.cors, "Access-Control-Allow-Methods": "POST"}
            route.fulfill(status=204, headers={**headers, "Access-Control-Allow-Headers": "*"})
        elif "/oauth2/v2.0/token" in url:
            self._token(route, {k: v[0] for k, v in parse_qs(request.post_data or "").items()})
        else:
            route.abort()

    def _json(self, route: Route, status: int, body: dict[str, Any]) -> None:
        route.fulfill(
            status=status, headers=self.cors, content_type="application/json", body=json.dumps(body)
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "issuer": f"https://login.microsoftonline.com/{self.tenant}/v2.0",
            "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.authority}/oauth2/v2.0/token",
            "end_session_endpoint": f"{self.authority}/oauth2/v2.0/logout",
            "jwks_uri": f"{self.authority}/discovery/v2.0/keys",
        }

    def _client_info(self) -> str:
        return b64url_json({"uid": self.user["oid"], "utid": self.tenant})

    def _authorize(self, route: Route, url: str) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        self.authorize.append(query)
        answer = urlencode(
            {"code": "test-code", "state": query["state"], "client_info": self._client_info()}
        )
        separator = "?" if query.get("response_mode") == "query" else "#"
        location = f"{query['redirect_uri']}{separator}{answer}"
        route.fulfill(status=302, headers={"Location": location})

    def _token(self, route: Route, form: dict[str, str]) -> None:
        self.token_requests.append(form)
        request = self.authorize[-1]
        verifier = form.get("code_verifier", "")
        proof = b64url(hashlib.sha256(verifier.encode()).digest())
        if form.get("code") != "test-code" or proof != request.get("code_challenge"):
            self._json(route, 400, {"error": "invalid_grant"})
            return
        now = int(time.time())
        id_token = self.key.sign(
            {
                "aud": self.config["clientId"],
                "iss": f"https://login.microsoftonline.com/{self.tenant}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": self.user.get("name"),
                "preferred_username": self.user.get("preferred_username"),
                "oid": self.user["oid"],
                "sub": self.user["oid"],
                "tid": self.tenant,
                "nonce": request.get("nonce"),
                "ver": "2.0",
            }
        )
        self._json(
            route,
            200,
            {
                "token_type": "Bearer",
                "scope": " ".join(self.config["scopes"]),
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": self.access_token,
                "id_token": id_token,
                "client_info": self._client_info(),
            },
        )


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@dataclass
class Board:
    local: LocalHost
    api: Api
    browser: Browser
    key: SigningKey
    entra: FakeEntra | None = None
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
        config = json.loads(self.api.host.request("GET", "/api/board-config").get_body())
        self.entra = FakeEntra(self.url, config, token, self.key)
        context.route("**/*", self.entra)
        context.add_init_script(HOOK)
        page = context.new_page()
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(self.url + path)
        # Signed in (through MSAL and the fake Entra) once the board names the user.
        expect(page.locator("#who")).not_to_be_empty(timeout=15_000)
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
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Board]:
    import function_app

    for api in api_session(host, mint, monkeypatch):
        with LocalHost(function_app.app, storage, port=0) as local:
            b = Board(local, api, chromium, signing_key)
            try:
                yield b
            finally:
                b.close()


def save_screenshot(page: Page, path: Path, target: Path | None) -> None:
    page.screenshot(path=str(path), full_page=False)
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
