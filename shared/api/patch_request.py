"""A PATCH request: its media type, JSON body, the change it asks for, and ETags.

Pure functions: the body is checked field by field and turned into an `ItemChange`, or
refused (`BadRequest`, `PayloadTooLarge`, `UnsupportedMediaType`); `etag_header` and
`if_match` carry the item row's ETag through HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.api.request_errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, show
from shared.api.url_params import STATE_NAMES
from shared.workitem_index import STATES

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = 256  # assignee, assignment group
MAX_NOTE = 4000
PATCH_FIELDS = ("state", "assignee", "assignmentGroup", "priority", "note")
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")


# -- PATCH bodies -------------------------------------------------------------------------------

UNSET: Any = object()  # a field the request did not mention


@dataclass(frozen=True)
class ItemChange:
    """What one PATCH asks for; applied all at once or not at all."""

    state: str | None = None  # target state; "New" reopens
    assignee: Any = UNSET  # str, None (clear) or UNSET
    assignment_group: Any = UNSET
    priority: Any = UNSET  # 1..5, None (back to the alert's) or UNSET
    note: str | None = None


def media_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return
    main = content_type.split(";")[0].strip().lower()
    if main not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {show(main)} is not supported; send application/json "
            "(or application/merge-patch+json)."
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest("invalid_body", f"The field {show(key)} appears twice.", key)
        out[key] = value
    return out


def json_body(body: bytes, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    if len(body) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    if not body.strip():
        raise BadRequest("invalid_body", "The body is empty; send a JSON object.")
    try:
        text = body.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        raise BadRequest("invalid_body", f"The body is {detail}; send a JSON object.") from None
    if not isinstance(doc, dict):
        raise BadRequest("invalid_body", "The body must be a JSON object.")
    return doc


def _state_target(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in STATE_NAMES:
        raise BadRequest(
            "invalid_field",
            f"state must be one of {', '.join(STATES)} (New reopens a Resolved or Closed item).",
            "state",
        )
    return STATE_NAMES[value.strip().lower()]


def _text_field(doc: Mapping[str, Any], name: str, limit: int, *, nullable: bool) -> Any:
    if name not in doc:
        return UNSET
    value = doc[name]
    if value is None and nullable:
        return None
    what = "a string" + (" or null" if nullable else "")
    if not isinstance(value, str):
        raise BadRequest("invalid_field", f"{name} must be {what}.", name)
    text = value.strip()
    if not text:
        raise BadRequest(
            "invalid_field",
            f"{name} must not be empty" + ("; send null to clear it." if nullable else "."),
            name,
        )
    if len(text) > limit:
        raise BadRequest("invalid_field", f"{name} is longer than {limit} characters.", name)
    allowed = "\n\r\t" if name == "note" else ""
    if any((ord(c) < 0x20 and c not in allowed) or 0x7F <= ord(c) <= 0x9F for c in text):
        raise BadRequest("invalid_field", f"{name} holds control characters.", name)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise BadRequest("invalid_field", f"{name} holds an unpaired surrogate (\\ud800).", name)
    return text


def item_change(doc: Mapping[str, Any]) -> ItemChange:
    unknown = sorted(k for k in doc if k not in PATCH_FIELDS)
    if unknown:
        raise BadRequest(
            "unknown_field",
            f"Unknown field(s) {', '.join(show(k, 40) for k in unknown[:5])}; a PATCH takes "
            f"{', '.join(PATCH_FIELDS)}.",
            unknown[0][:100],
        )
    if not doc:
        raise BadRequest(
            "invalid_body", f"Nothing to change: send at least one of {', '.join(PATCH_FIELDS)}."
        )
    state = _state_target(doc["state"]) if "state" in doc else None
    priority = UNSET
    if "priority" in doc:
        priority = doc["priority"]
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5
        ):
            raise BadRequest(
                "invalid_field",
                "priority must be a whole number from 1 to 5, or null to go back to the "
                "priority the alert gives.",
                "priority",
            )
    note = _text_field(doc, "note", MAX_NOTE, nullable=False)
    return ItemChange(
        state=state,
        assignee=_text_field(doc, "assignee", MAX_TEXT, nullable=True),
        assignment_group=_text_field(doc, "assignmentGroup", MAX_TEXT, nullable=True),
        priority=priority,
        note=None if note is UNSET else note,
    )


# -- ETags ---------------------------------------------------------------------------------------


def etag_header(table_etag: str) -> str:
    """A strong HTTP ETag for a stored entity's ETag (opaque: the table's, encoded)."""
    raw = base64.urlsafe_b64encode(table_etag.encode("utf-8")).decode("ascii").rstrip("=")
    return f'"{raw}"'


ANY = "*"


def if_match(header: str | None) -> str | tuple[str, ...] | None:
    """The table ETags an If-Match header names: None when absent, ANY for `*`.

    Values that are not ETags this API issued (weak ones, garbage) can never match, as RFC
    9110 prescribes for If-Match: an update with only such values answers 412.
    """
    if header is None or not header.strip():
        return None
    if header.strip() == "*":
        return ANY
    found = []
    for part in header.split(",")[:16]:
        value = part.strip()
        if len(value) > 512 or not re.fullmatch(r'"[A-Za-z0-9_-]+"', value):
            continue
        raw = value[1:-1]
        try:
            found.append(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            continue
    return tuple(found)
