"""Continuation tokens: an opaque page position, bound to the query that returned it."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from shared.api.request_errors import BadRequest

MAX_TOKEN_CHARS = 2048
TOKEN_VERSION = 1


def make_token(fingerprint: str, after: str) -> str:
    doc = {"v": TOKEN_VERSION, "q": fingerprint, "a": after}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def continuation(token: str, fingerprint: str, valid_position: Any) -> str:
    """The position a continuation token holds; 400 if it is not one of ours for this query."""
    bad = BadRequest(
        "invalid_continuation_token",
        "continuationToken is not a token this API returned: pass the continuationToken of "
        "the previous page unchanged, with the same filters.",
        "continuationToken",
    )
    text = token.strip()
    if not text or len(text) > MAX_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("v") != TOKEN_VERSION:
        raise bad
    after = doc.get("a")
    if not isinstance(after, str) or not valid_position(after):
        raise bad
    if any(ord(c) < 0x20 for c in after):
        raise bad
    if doc.get("q") != fingerprint:
        raise BadRequest(
            "invalid_continuation_token",
            "continuationToken belongs to a query with other filters: repeat the filters of "
            "the request that returned it (top may change).",
            "continuationToken",
        )
    return after
