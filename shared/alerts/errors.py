"""The one exception the alert parser raises: the HTTP handler answers it with 400."""

from __future__ import annotations

# Error codes, stable: callers and tests match on them, the message may change.
EMPTY_BODY = "empty_body"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NESTING_TOO_DEEP = "nesting_too_deep"
NOT_AN_OBJECT = "not_an_object"
NOT_COMMON_SCHEMA = "not_common_schema"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNSUPPORTED_VERSION = "unsupported_version"


class SchemaError(Exception):
    """The body is not a usable common-alert-schema alert.

    `code` is machine-readable, `message` tells the sender what to fix and `field` is
    the dotted path of the offending field (None when the body as a whole is wrong).
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"SchemaError(code={self.code!r}, field={self.field!r}, message={self.message!r})"
