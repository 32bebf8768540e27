"""What the work item API's parameter parsing raises, and how it quotes what it refuses.

`BadRequest` (400), `PayloadTooLarge` (413) and `UnsupportedMediaType` (415) each say what
is wrong; `show` quotes a client's text for such a message (short, JSON-escaped).
"""

from __future__ import annotations

import json

from shared.log_text import quoted


class BadRequest(Exception):
    """400: the request is malformed; `field` names the parameter or body field."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = None if field is None else quoted(field, 100)  # names can be hostile too


class PayloadTooLarge(Exception):
    pass


class UnsupportedMediaType(Exception):
    pass


def show(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return json.dumps(shown, ensure_ascii=True)
