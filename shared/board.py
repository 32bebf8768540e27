"""The web board's server side: its static files, its security headers and its sign-in settings.

The files are read once from `board_assets/` into an allow-list keyed by their relative path;
a request names a key of that list or gets a 404, so no request path ever reaches the file
system (no traversal, no symlink or case tricks). Every answer carries a strict
Content-Security-Policy: scripts only from our origin (no inline script), network only to our
origin and the Entra authority, no framing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import azure.functions as func

from shared import responses
from shared.config import ConfigError, Settings, get_settings

ASSETS = Path(__file__).resolve().parent / "board_assets"
BOARD_PATH = "/board/"  # where the board lives; the redirect URI registered in Entra ID
MAX_ASSET_PATH = 200

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every servable file under ASSETS by its path relative to it ('' is index.html)."""
    found: dict[str, Asset] = {}
    for path in sorted(ASSETS.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or not path.is_file() or path.is_symlink():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[path.relative_to(ASSETS).as_posix()] = Asset(body, content_type, etag)
    found[""] = found["index.html"]
    return found


def content_security_policy(authority_host: str) -> str:
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {authority_host}",
            # MSAL renews tokens silently in a hidden iframe on the authority.
            f"frame-src {authority_host}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "object-src 'none'",
        )
    )


def security_headers(authority_host: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(authority_host),
        "X-Content-Type-Options": "nosniff",
        # Links to the portal must not carry the board's URL (filters, item ids) along.
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def _settings() -> Settings | func.HttpResponse:
    try:
        return get_settings()
    except ConfigError:
        return responses.unavailable("The service is misconfigured; its operator has been told.")


def redirect_to_board(_req: func.HttpRequest) -> func.HttpResponse:
    """GET /: the board."""
    return func.HttpResponse(
        status_code=302,
        headers={
            "Location": BOARD_PATH,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def serve_asset(req: func.HttpRequest) -> func.HttpResponse:
    """GET /board/{*path}: one file of the board, or a 404. The host hands /board and
    /board/ over alike (no path), so index.html names its files by absolute URLs."""
    path = req.route_params.get("path") or ""
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    headers = security_headers(settings.auth.authority_host)
    asset = assets().get(path) if len(path) <= MAX_ASSET_PATH else None
    if asset is None:
        return func.HttpResponse(
            "Not found.", status_code=404, headers=headers, mimetype="text/plain", charset="utf-8"
        )
    # Revalidated on every load, so a new deployment is picked up at once.
    headers.update({"ETag": asset.etag, "Cache-Control": "no-cache"})
    if asset.etag in (t.strip() for t in req.headers.get("if-none-match", "").split(",")):
        return func.HttpResponse(status_code=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return func.HttpResponse(asset.body, status_code=200, headers=headers)


def board_config_body(settings: Settings) -> dict[str, Any] | None:
    """The public sign-in parameters (nothing secret: a SPA has no secret)."""
    board = settings.board
    if board.client_id is None or board.api_scope is None:
        return None
    tenant = settings.auth.tenant_ids[0]
    return {
        "clientId": board.client_id,
        "tenantId": tenant,
        "authority": f"{settings.auth.authority_host}/{tenant}",
        "scopes": [board.api_scope],
        "redirectPath": BOARD_PATH,
    }


def board_config(_req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/board-config, unauthenticated: the board needs it before it can sign in."""
    settings = _settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    body = board_config_body(settings)
    if body is None:
        return responses.error(
            503,
            "board_not_configured",
            "Set BOARD_CLIENT_ID and BOARD_API_SCOPE (or list the client id and the "
            "Application ID URI in AAD_AUDIENCES).",
            headers={"Retry-After": str(responses.RETRY_AFTER_SECONDS)},
        )
    return responses.json_response(200, body, security_headers(settings.auth.authority_host))
