"""Minimal WSGI front for the app's HTTP function: stands in for the Functions host's HTTP side.

    OURS_APP_DIR=<copy of the checkout> gunicorn --workers 2 --bind 127.0.0.1:8091 \
        adapter:application

Each worker imports function_app from OURS_APP_DIR (the worker's own import, as the Python
worker does at start-up), finds the HTTP-triggered function whose route is ROUTE (default
`alerts`) in function_app.app's registered functions, and for every request builds an
azure.functions.HttpRequest (method, URL, lower-cased headers, query, body) and calls that
function. Anything but POST /api/<route> answers 404/405; an exception answers 500 (as the
host does). Nothing else: no routing table, no keys (the function is anonymous).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from http import HTTPStatus
from urllib.parse import parse_qsl

sys.path.insert(0, os.environ["OURS_APP_DIR"])

import azure.functions as func

import function_app

log = logging.getLogger("adapter")
ROUTE = os.environ.get("OURS_ROUTE", "api/alerts")
with open(os.path.join(os.environ["OURS_APP_DIR"], "host.json")) as _f:
    PREFIX = json.load(_f)["extensions"]["http"].get("routePrefix", "api")


def _lookup(route: str) -> tuple[object, str, tuple[str, ...]]:
    for fn in function_app.app.get_functions():
        for raw in fn.get_raw_bindings():
            b = json.loads(raw)
            if b["type"] == "httpTrigger" and (b.get("route") or "").strip("/") == route:
                return (
                    fn.get_user_function(),
                    b["name"],
                    tuple(m.upper() for m in b.get("methods") or ()),
                )
    raise LookupError(f"no HTTP function with route {route!r}")


FUNCTION, ARG, METHODS = _lookup(ROUTE)
PATH = "/" + "/".join(p for p in (PREFIX.strip("/"), ROUTE.strip("/")) if p)


def application(environ, start_response):
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if path.rstrip("/").lower() != PATH:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    if METHODS and method not in METHODS:
        start_response("405 Method Not Allowed", [("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    query = environ.get("QUERY_STRING", "")
    request = func.HttpRequest(
        method=method,
        url=f"http://{environ.get('HTTP_HOST', 'localhost')}{path}"
        + (f"?{query}" if query else ""),
        headers=headers,
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params={},
        body=body,
    )
    try:
        response = FUNCTION(**{ARG: request})
    except Exception:  # the host turns an unhandled exception into a 500
        log.exception("function failed")
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]
    out = response.get_body()
    hdrs = [
        (k, v)
        for k, v in response.headers.items()
        if k.lower() not in ("content-type", "content-length")
    ]
    if response.mimetype:
        hdrs.append(
            (
                "Content-Type",
                response.mimetype + (f"; charset={response.charset}" if response.charset else ""),
            )
        )
    hdrs.append(("Content-Length", str(len(out))))
    start_response(f"{response.status_code} {HTTPStatus(response.status_code).phrase}", hdrs)
    return [out]
