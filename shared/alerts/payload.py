"""Request body -> JSON object, and the check that it is a common-alert-schema alert."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.alerts.errors import (
    EMPTY_BODY,
    INVALID_JSON,
    INVALID_UTF8,
    NESTING_TOO_DEEP,
    NOT_AN_OBJECT,
    NOT_COMMON_SCHEMA,
    SchemaError,
)
from shared.alerts.values import ci_get

COMMON_SCHEMA_ID = "azureMonitorCommonAlertSchema"

_ENABLE_COMMON_SCHEMA = (
    'In the action group, edit this webhook (Secure Webhook) action and set "Enable the '
    'common alert schema" to Yes (useCommonAlertSchema: true).'
)

_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _finite_or_text(literal: str) -> float | str:
    value = float(literal)
    return value if value - value == 0 else literal  # 1e999 -> "1e999", not inf


def _int_or_digits(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:  # beyond Python's 4300-digit limit
        return digits


# Built once: json.loads(s, **hooks) would build a decoder per call. The hooks keep the
# parsed payload strict JSON (it is re-serialized with allow_nan=False as the raw copy):
# NaN, Infinity and out-of-range numbers stay as their text.
_DECODER = json.JSONDecoder(parse_float=_finite_or_text, parse_constant=str)
_HUGE_INT_DECODER = json.JSONDecoder(
    parse_float=_finite_or_text, parse_constant=str, parse_int=_int_or_digits
)


def parse_payload(body: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """The alert JSON object from a request body; SchemaError when it is not one.

    Strict UTF-8 (a BOM is tolerated), any nesting Python can parse. Never fails on
    numbers: NaN, Infinity, 1e999 and integers past Python's 4300-digit limit are kept as
    their text, so the result is always strict JSON again.
    """
    if isinstance(body, str):
        text = body
    else:
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(
                INVALID_UTF8,
                f"The request body is not valid UTF-8 (invalid byte at offset {exc.start}).",
            ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text or text.isspace():
        raise SchemaError(
            EMPTY_BODY, "The request body is empty; expected a common alert schema JSON object."
        )
    try:
        # raw_decode skips decode()'s two whitespace regex matches; anything unusual
        # (leading whitespace, trailing data, every error) takes the general path below.
        payload, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        payload = _decode(text)
    else:
        if end != len(text) and text[end:].strip(" \t\n\r"):
            payload = _decode(text)  # raises "Extra data"
    if not isinstance(payload, dict):
        kind = _JSON_KINDS.get(type(payload), "not an object")
        raise SchemaError(
            NOT_AN_OBJECT,
            f"The request body is {kind}; expected a common alert schema JSON object.",
        )
    check_common_schema(payload)
    return payload


def _decode(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise SchemaError(
            NESTING_TOO_DEEP, "The request body is nested too deeply to be an alert."
        ) from None
    except json.JSONDecodeError as exc:
        raise SchemaError(
            INVALID_JSON,
            f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno}).",
        ) from None
    except ValueError:
        # Only the int digit limit raises a plain ValueError: retry keeping such numbers.
        return _decode_keeping_huge_ints(text)


def _decode_keeping_huge_ints(text: str) -> Any:
    try:
        return _HUGE_INT_DECODER.decode(text)
    except RecursionError:
        raise SchemaError(
            NESTING_TOO_DEEP, "The request body is nested too deeply to be an alert."
        ) from None
    except ValueError as exc:
        raise SchemaError(INVALID_JSON, f"The request body is not valid JSON: {exc}.") from None


def check_common_schema(payload: Mapping[str, Any]) -> None:
    """SchemaError `not_common_schema` unless `schemaId` is the common alert schema's."""
    schema_id = ci_get(payload, "schemaId")
    if isinstance(schema_id, str) and schema_id.strip().lower() == "azuremonitorcommonalertschema":
        return
    if schema_id is None:
        got = "no schemaId"
    elif isinstance(schema_id, str):
        got = f"schemaId {schema_id[:100]!r}"
    else:
        got = "a schemaId that is not a string"
    raise SchemaError(
        NOT_COMMON_SCHEMA,
        f"This endpoint accepts only the Azure Monitor common alert schema (schemaId "
        f'"{COMMON_SCHEMA_ID}"), but the alert has {got}. {_ENABLE_COMMON_SCHEMA}',
        "schemaId",
    )
