"""Property-based tests: mutated samples either normalize to a valid message or raise
SchemaError, never anything else.

Mutations: dropped keys, nulls, swapped types, keys in other casing, unicode and huge
strings, deep nesting, NaN/Infinity, numbers beyond float range and Python's int digit
limit, extra fields, raw byte damage.
"""

from __future__ import annotations

import copy
import json
import math
import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.alerts import SchemaError, normalize, parse_payload
from shared.alerts import errors as codes
from shared.alerts.summaries import SUMMARY_TYPES
from tests.alert_samples import context_samples, envelope_samples, load, load_bytes, wrap_context

SAMPLES: list[dict[str, Any]] = [load(n) for n in envelope_samples()] + [
    wrap_context(n) for n in context_samples()
]
ERROR_CODES = {v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
HUGE_INT = "9" * 5000  # past Python's 4300-digit int limit: json.loads raises ValueError
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in the document, deepest first: Hypothesis favours
    early choices, and the envelope's own keys (schemaId...) are the least interesting."""
    found: list[tuple[Any, Any]] = []
    queue = [doc]
    while queue:
        node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            found.append((node, key))
            if isinstance(value, dict | list):
                queue.append(value)
    return found[::-1]


def _nested_text(value: Any, depth: int, as_dict: bool) -> str:
    """`value` wrapped `depth` levels deep, as JSON text (json.dumps itself would recurse)."""
    inner = json.dumps(value, allow_nan=True)
    if as_dict:
        return '{"n":' * depth + inner + "}" * depth
    return "[" * depth + inner + "]" * depth


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    splices: dict[str, str] = {'"__HUGE_INT__"': HUGE_INT}
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        slots = _slots(doc)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(
            st.sampled_from(
                [
                    "drop",
                    "null",
                    "swap",
                    "recase",
                    "unicode",
                    "huge",
                    "nest",
                    "special",
                    "extra",
                    "any",
                ]
            )
        )
        value = container[key]
        if op == "drop":
            del container[key]
        elif op == "null":
            container[key] = None
        elif op == "swap":
            container[key] = draw(
                st.sampled_from([str(value), 0, 1.5, -7, True, [value], {"v": value}, [], {}])
            )
        elif op == "recase" and isinstance(container, dict):
            new = draw(st.sampled_from([key.upper(), key.lower(), key.swapcase(), key.title()]))
            container[new] = container.pop(key)
        elif op == "unicode":
            container[key] = draw(st.text(min_size=1, max_size=200))
        elif op == "huge":
            container[key] = draw(st.sampled_from(["x", "é", "😀", "\x00", "/"])) * draw(
                st.integers(min_value=10_000, max_value=300_000)
            )
        elif op == "nest":
            marker = f"__NEST_{len(splices)}__"
            depth = draw(st.sampled_from([5, 50, 500, 3000]))
            splices[f'"{marker}"'] = _nested_text(value, depth, draw(st.booleans()))
            container[key] = marker
        elif op == "special":
            container[key] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, "__HUGE_INT__"])
            )
        elif op == "extra" and isinstance(container, dict):
            container[draw(st.text(max_size=20))] = draw(json_values)
        else:
            container[key] = draw(json_values)
    body = json.dumps(doc, allow_nan=True)
    for marker, replacement in reversed(splices.items()):  # later markers may sit in earlier
        body = body.replace(marker, replacement)
    return body.encode("utf-8", "surrogatepass")


def _check(body: bytes) -> dict[str, Any] | None:
    """The normalized alert after checking the contract, or None after checking the error."""
    rejected: SchemaError | None = None
    try:
        payload = parse_payload(body)
        json.dumps(payload, allow_nan=False)  # the raw copy the queue keeps is strict JSON
        alert = normalize(
            payload,
            tenant_id="tenant",
            correlation_id="corr",
            received_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
    except SchemaError as error:  # anything else fails the test
        rejected = error
    if rejected is not None:
        assert rejected.code in ERROR_CODES
        assert isinstance(rejected.message, str)
        assert rejected.message
        assert rejected.field is None or isinstance(rejected.field, str)
        return None
    serialized = json.dumps(alert, allow_nan=False)  # what the HTTP handler does
    json.dumps(alert, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert len(serialized) < 32 * 1024
    assert isinstance(alert["alertId"], str)
    assert alert["alertId"].strip()
    assert alert["monitorCondition"] in ("Fired", "Resolved")
    assert alert["summary"]["type"] in SUMMARY_TYPES
    assert isinstance(alert["summary"]["title"], str)
    assert alert["summary"]["title"]
    assert alert["severity"] in (None, "Sev0", "Sev1", "Sev2", "Sev3", "Sev4")
    assert alert["signalType"] in (None, "Metric", "Log", "ActivityLog")
    for ci in alert["configurationItems"]:
        assert isinstance(ci["key"], str)
        assert ci["key"]
        assert ci["kind"] in ("azureResource", "name")
    return alert


@SETTINGS
@given(mutated_payloads())
def test_mutated_samples_normalize_or_raise_schema_error(body: bytes) -> None:
    _check(body)


@SETTINGS
@given(
    st.sampled_from(envelope_samples()),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=5000), st.binary(max_size=8)),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=0, max_value=5000),
)
def test_damaged_bytes_normalize_or_raise_schema_error(
    name: str, edits: list[tuple[int, bytes]], cut: int
) -> None:
    body = bytearray(load_bytes(name))
    for position, chunk in edits:
        position %= len(body) + 1
        body[position : position + len(chunk)] = chunk
    _check(bytes(body[: len(body) - cut % 50]))


def _recase_keys(value: Any, choose: Any) -> Any:
    if isinstance(value, dict):
        return {choose(k): _recase_keys(v, choose) for k, v in value.items()}
    if isinstance(value, list):
        return [_recase_keys(v, choose) for v in value]
    return value


@SETTINGS
@given(st.sampled_from(SAMPLES), st.randoms(use_true_random=False))
def test_key_casing_does_not_change_what_is_read(
    payload: dict[str, Any], rnd: random.Random
) -> None:
    """Keys are read case-insensitively everywhere: re-casing any of them changes nothing
    but the spelling of keys copied as sent (customProperties, free-form objects)."""

    def choose(key: str) -> str:
        return str(rnd.choice([key, key.upper(), key.lower(), key.swapcase()]))

    original = _check(json.dumps(payload).encode())
    recased = _check(json.dumps(_recase_keys(payload, choose)).encode())
    assert original is not None
    assert recased is not None
    for alert in (original, recased):
        alert.pop("customProperties")
        fields = alert["summary"].pop("fields")
        alert["summary"]["fieldNames"] = sorted(fields)
    assert recased == original
