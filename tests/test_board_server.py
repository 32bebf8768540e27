"""The board's server side: GET /, its static files (headers, types, no traversal), the
public sign-in settings, and what the files themselves must never contain."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shared import board
from shared.config import ConfigError, load_settings
from tests.api_support import check_against_openapi
from tests.harness import REPO, FunctionsHost
from tests.tokens import AUDIENCE_URI, CLIENT_ID, TENANT_A

ASSETS = REPO / "shared" / "board_assets"


def get(host: FunctionsHost, path: str, **headers: str) -> Any:
    return host.request("GET", path, headers=headers)


def test_root_redirects_to_the_board(host: FunctionsHost) -> None:
    for path in ("/", ""):
        response = get(host, path or "/")
        assert response.status_code == 302
        assert response.headers["Location"] == "/board/"
    assert get(host, "/nothing-here").status_code == 404  # the root route matches "/" only


@pytest.mark.parametrize("path", ["/board", "/board/", "/board/index.html"])
def test_board_page_with_strict_headers(host: FunctionsHost, path: str) -> None:
    response = get(host, path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.get_body() == (ASSETS / "index.html").read_bytes()
    csp = dict(
        ([*part.split(" ", 1), ""])[:2]
        for part in response.headers["Content-Security-Policy"].split("; ")
    )
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    assert csp["connect-src"] == "'self' https://login.microsoftonline.com"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_csp_names_the_configured_authority(
    host: FunctionsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AAD_AUTHORITY_HOST", "https://login.microsoftonline.us")
    csp = get(host, "/board/").headers["Content-Security-Policy"]
    assert "connect-src 'self' https://login.microsoftonline.us;" in csp
    assert "microsoftonline.com" not in csp


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/board/app.js", "text/javascript; charset=utf-8"),
        ("/board/vendor/msal-browser.min.js", "text/javascript; charset=utf-8"),
        ("/board/board.css", "text/css; charset=utf-8"),
        ("/board/favicon.svg", "image/svg+xml"),
    ],
)
def test_files_have_their_content_type(host: FunctionsHost, path: str, content_type: str) -> None:
    response = get(host, path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.get_body() == (ASSETS / path.removeprefix("/board/")).read_bytes()
    assert "Content-Security-Policy" in response.headers


def test_unchanged_file_revalidates_with_304(host: FunctionsHost) -> None:
    first = get(host, "/board/app.js")
    assert first.headers["Cache-Control"] == "no-cache"
    again = get(host, "/board/app.js", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_body() == b""
    assert get(host, "/board/app.js", **{"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/board/../function_app.py",
        "/board/..%2ffunction_app.py",
        "/board/%2e%2e/%2e%2e/host.json",
        "/board/vendor/../../board.py",
        "/board/vendor/../../../local.settings.json.example",
        "/board//etc/passwd",
        "/board/..\\..\\host.json",
        "/board/APP.JS",
        "/board/app.js.map",
        "/board/index.html%00.js",
        "/board/vendor/msal-browser.LICENSE",
        "/board/" + "a/" * 300 + "app.js",
        "/board/./app.js",
    ],
)
def test_no_path_reaches_anything_but_the_listed_files(host: FunctionsHost, path: str) -> None:
    response = get(host, path)
    assert response.status_code == 404
    assert b"import" not in response.get_body()
    assert "Content-Security-Policy" in response.headers


def test_only_files_under_board_assets_are_listed() -> None:
    listed = set(board.assets())
    on_disk = {
        p.relative_to(ASSETS).as_posix()
        for p in ASSETS.rglob("*")
        if p.is_file() and p.suffix in board.CONTENT_TYPES
    }
    assert listed == on_disk | {""}
    assert all(".." not in name and not name.startswith("/") for name in listed)


def test_every_http_route_but_the_boards_is_under_api() -> None:
    """host.json's routePrefix is empty so that the board answers at "/": every other
    route must name its api/ itself (a route merged without it would move)."""
    assert json.loads((REPO / "host.json").read_text())["extensions"]["http"]["routePrefix"] == ""
    host_routes = []
    tree = ast.parse((REPO / "function_app.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "route":
            for keyword in node.keywords:
                if keyword.arg == "route" and isinstance(keyword.value, ast.Constant):
                    host_routes.append(str(keyword.value.value))
    board_routes = {"{ignored:maxlength(0)?}", "board/{*path}"}
    assert board_routes <= set(host_routes)
    assert all(r.startswith("api/") for r in host_routes if r not in board_routes), host_routes


# -- GET /api/board-config ----------------------------------------------------------------


def test_board_config_is_public_and_derived_from_the_token_settings(host: FunctionsHost) -> None:
    response = get(host, "/api/board-config")  # no Authorization header
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {
        "clientId": CLIENT_ID,
        "tenantId": TENANT_A,
        "authority": f"https://login.microsoftonline.com/{TENANT_A}",
        "scopes": [f"{AUDIENCE_URI}/user_impersonation"],
        "redirectPath": "/board/",
    }
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    headers = {**response.headers, "Content-Type": response.mimetype}
    check_against_openapi("GET", "/api/board-config", 200, headers, response.get_body())


def test_board_config_from_explicit_settings(
    host: FunctionsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOARD_CLIENT_ID", "AAAAAAAA-1111-2222-3333-444444444444")
    monkeypatch.setenv("BOARD_API_SCOPE", "api://contoso-itsm/user_impersonation")
    body = json.loads(get(host, "/api/board-config").get_body())
    assert body["clientId"] == "aaaaaaaa-1111-2222-3333-444444444444"
    assert body["scopes"] == ["api://contoso-itsm/user_impersonation"]


def test_board_config_says_what_to_set_when_it_cannot_be_derived(
    host: FunctionsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AAD_AUDIENCES", AUDIENCE_URI)  # no client id among the audiences
    response = get(host, "/api/board-config")
    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body["error"] == "board_not_configured"
    assert "BOARD_CLIENT_ID" in body["detail"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOARD_CLIENT_ID", "not-a-guid"),
        ("BOARD_API_SCOPE", "user_impersonation"),
        ("BOARD_API_SCOPE", "api://x/a api://x/b"),
    ],
)
def test_bad_board_settings_name_themselves(name: str, value: str) -> None:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AAD_TENANT_IDS": TENANT_A,
        "AAD_AUDIENCES": f"{AUDIENCE_URI},{CLIENT_ID}",
        name: value,
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.setting == name


# -- what the files may contain -------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def test_page_has_no_inline_script_or_style_and_no_third_party_host() -> None:
    parser = _Tags()
    parser.feed((ASSETS / "index.html").read_text())
    assert parser.script_text == ""
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs
        assert tag != "style"
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None and tag != "a":
                assert value.startswith("/board/"), (tag, value)
    scripts = [a["src"] for t, a in parser.tags if t == "script"]
    assert scripts == ["/board/vendor/msal-browser.min.js", "/board/app.js"]


@pytest.mark.parametrize("path", sorted(ASSETS.glob("*.js")), ids=lambda p: p.name)
def test_our_scripts_never_parse_html_or_evaluate_strings(path: Path) -> None:
    source = path.read_text()
    for pattern in (
        r"\.innerHTML",
        r"\.outerHTML",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\(",
        r"new Function",
        r"setTimeout\(\s*[\"'`]",
        r"localStorage",
        r"https?://(?!portal\.azure\.com/#)",  # no third-party host; portal links only
    ):
        assert not re.search(pattern, source), f"{path.name}: {pattern}"


def test_vendored_msal_is_the_pinned_package() -> None:
    package = json.loads((REPO / "package.json").read_text())
    version = package["dependencies"]["@azure/msal-browser"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # pinned exactly
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@azure/msal-browser"]["version"] == version
    vendored = (ASSETS / "vendor" / "msal-browser.min.js").read_bytes()
    assert vendored.startswith(f"/*! @azure/msal-browser v{version} ".encode())
    installed = REPO / "node_modules" / "@azure" / "msal-browser" / "lib" / "msal-browser.min.js"
    assert vendored == installed.read_bytes(), "re-copy the bundle after changing the version"


def test_publish_keeps_the_board_files() -> None:
    """`func azure functionapp publish` skips what .funcignore matches (gitignore syntax)."""
    patterns = [
        line.strip()
        for line in (REPO / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in board.assets():
        if not path:
            continue
        relative = f"shared/board_assets/{path}"
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in patterns:
            bare = pattern.strip("/")
            assert not any(
                fnmatch.fnmatch(p, bare) or fnmatch.fnmatch(p.rsplit("/", 1)[-1], bare)
                for p in prefixes
            ), (relative, pattern)
