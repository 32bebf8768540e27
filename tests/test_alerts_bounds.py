"""The normalized alert stays small whatever the payload: it must fit a queue message
(64 KiB, base64-encoded by the host: ~48 KiB of JSON) with room to spare.

Every string of every sample is blown up (ASCII, control characters, astral characters:
up to 12 bytes each once escaped), every list repeated, every object widened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.alerts import normalize, parse_payload
from tests.alert_samples import context_samples, envelope_samples, load, wrap_context

LIMIT = 32 * 1024  # bytes of json.dumps(alert) with its default ensure_ascii=True

# Kept as sent so that the payload stays a valid alert of the same type.
PROTECTED = {
    "schemaId",
    "alertId",
    "monitorCondition",
    "monitoringService",
    "conditionType",
    "AlertType",
}


def _inflate(value: Any, grow: Callable[[str], str], repeat: int, key: str = "") -> Any:
    """Strings grown, objects widened, the outermost lists repeated (inner ones are not:
    nested repetition would grow exponentially)."""
    if isinstance(value, dict):
        out = {k: _inflate(v, grow, repeat, k) for k, v in value.items()}
        for i in range(repeat):
            out[f"extra{i}"] = grow("x")
        return out
    if isinstance(value, list):
        return [_inflate(v, grow, 1) for v in value] * repeat
    if isinstance(value, str) and key not in PROTECTED:
        return grow(value)
    return value


_EMBEDDED = json.dumps({f"k{i}": "v" * 100 for i in range(100)})
GROWERS: dict[str, Callable[[str], str]] = {
    "ascii": lambda s: s + "a" * 3_000,
    "control": lambda s: s + "\x01\n" * 800,
    "astral": lambda s: s + "😀" * 800,
    "json-in-string": lambda s: _EMBEDDED,
}


def _payloads() -> list[tuple[str, dict[str, Any]]]:
    named = [(n, load(n)) for n in envelope_samples()]
    named += [(n, wrap_context(n)) for n in context_samples()]
    return named


@pytest.mark.parametrize("grower", sorted(GROWERS))
@pytest.mark.parametrize(("name", "payload"), _payloads(), ids=[n for n, _ in _payloads()])
def test_blown_up_samples_stay_small(name: str, payload: dict[str, Any], grower: str) -> None:
    big = _inflate(payload, GROWERS[grower], repeat=12)
    body = json.dumps(big).encode()
    assert len(body) > 200_000
    alert = normalize(
        parse_payload(body), tenant_id="t", correlation_id="c", received_at=datetime.now(UTC)
    )
    size = len(json.dumps(alert, allow_nan=False))
    assert size < LIMIT, f"{name}/{grower}: {size} bytes"
    json.dumps(alert, ensure_ascii=False).encode("utf-8")
    assert "\n" not in alert["summary"]["title"]


def test_long_strings_are_cut_with_a_visible_marker() -> None:
    payload = load("metric-alert-static-fired")
    payload["data"]["essentials"]["description"] = "d" * 10_000
    alert = normalize(
        parse_payload(json.dumps(payload).encode()),
        tenant_id="t",
        correlation_id="c",
        received_at=datetime.now(UTC),
    )
    description = alert["description"]
    assert description.startswith("ddd")
    assert description.endswith("…[truncated 9008 chars]")
    assert len(json.dumps(description)) - 2 <= 1024
