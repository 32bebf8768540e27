"""Reading loosely typed JSON values, and bounding what we copy out of them.

Azure sends numbers where strings were documented and the other way round, keys in
varying casing, JSON encoded inside strings, NaN, lone surrogates and arbitrarily long
strings. Everything here is total (never raises on JSON input) and everything it returns
is strict, UTF-8-encodable JSON whose serialized size is bounded.

Sizes are counted as `json.dumps` (ensure_ascii=True) writes them, because that is what
ends up in the queue message: a string of control or non-ASCII characters takes up to 6
(12 for astral characters) times its length once escaped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

# The truncation marker; the raw payload is kept elsewhere, so nothing is lost for good.
_MARKER = "…[truncated {} chars]"
_MARKER_WEIGHT = 32  # escaped weight of the marker, with room for any realistic count

_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"\s*[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?\s*\Z")  # ASCII digits only
_CONTROL_BYTES = bytes(range(32)) + b"\x7f"  # the ASCII characters isprintable() rejects
# json.loads' own settings for JSON inside strings (NaN accepted: copies turn it into null)
_EMBEDDED = json.JSONDecoder()


def plain(s: str) -> bool:
    """`s.isascii() and s.isprintable()`, cheaper on long strings (links, queries, ids).

    isprintable() looks up every character's Unicode category (~3 ns each); an ASCII
    string is printable when deleting its control bytes leaves it whole (~1 ns each).
    """
    if not s.isascii():
        return False
    if len(s) < 64:
        return s.isprintable()
    return len(s.encode().translate(None, _CONTROL_BYTES)) == len(s)


def escaped_weight(s: str) -> int:
    """Characters `s` takes inside a JSON string literal (ensure_ascii=True)."""
    if plain(s):
        return len(s)
    return len(encode_basestring_ascii(s)) - 2


def utf8_safe(s: str) -> str:
    """`s` with lone surrogates (from JSON escapes like "\\ud800") replaced by U+FFFD."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", s)
    return s


def _fit(s: str, cap: int) -> str:
    """`s` cut so that its escaped weight is at most `cap`, marked when cut."""
    if not s.isascii():
        s = utf8_safe(s)
    weight = escaped_weight(s)
    if weight <= cap:
        return s
    marked = cap >= 2 * _MARKER_WEIGHT  # below that, a marker would crowd out the text
    room = cap - _MARKER_WEIGHT if marked else cap
    keep = room * len(s) // weight
    while keep and escaped_weight(s[:keep]) > room:
        keep = keep * 9 // 10
    return s[:keep] + _MARKER.format(len(s) - keep) if marked else s[:keep]


def text(value: object, cap: int) -> str | None:
    """A string of escaped weight <= cap from a JSON scalar; None for null, "" or containers.

    Numbers and booleans become their JSON spelling (a documented string sent as a number
    is still that string); non-finite floats become None.
    """
    if isinstance(value, str):
        if not value:
            return None
        n = len(value)
        if n <= cap and value.isascii() and (value.isprintable() if n < 64 else plain(value)):
            return value
        return _fit(value, cap)
    if value is None:  # absent fields are common: skip the type tests below
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _fit(str(value), cap)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return None


def number(value: object, cap: int = 64) -> int | float | str | None:
    """A finite number when `value` is one or spells one ("25", " 0.3 "), else its text.

    Thresholds and counts arrive as numbers in one payload and strings in another; the
    consumer gets a number whenever one was meant. Non-numeric text ("$50.00") is kept.
    """
    if isinstance(value, str):
        if value.isascii() and value.isdecimal():
            return int(value) if len(value) <= 18 else text(value, cap)  # long: an id, exact
        if len(value) <= 64:
            m = _NUMBER.match(value)
            if m is not None:
                if m.group(1) is None and m.group(2) is None:  # an integer: keep it exact
                    return int(value) if len(value.strip().lstrip("+-")) <= 18 else text(value, cap)
                f = float(value)
                if math.isfinite(f):
                    return f
        return text(value, cap)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        # JSON integers are exact; keep them unless they are absurdly long
        return value if -(10**18) < value < 10**18 else text(value, cap)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def lower_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` keyed by lowercased keys (Azure spells alertRuleId / alertRuleID / ...).

    When two keys differ only in case, the first non-null value wins.
    """
    lowered = {k.lower(): v for k, v in obj.items()}
    if len(lowered) == len(obj):
        return lowered
    lowered = {}
    for k, v in obj.items():
        lk = k.lower()
        if lowered.get(lk) is None:
            lowered[lk] = v
    return lowered


class Keys:
    """The documented spellings of an object's keys, for case-insensitive reads.

    `view(obj)` returns `obj` itself when every key is already spelled as documented (the
    usual case: a set inclusion test, no copy); otherwise a copy whose keys are respelled
    (`alertRuleID` -> `alertRuleId`), unknown keys kept, first non-null value winning.
    """

    __slots__ = ("by_lower", "covers", "names")

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)
        self.covers = self.names.issuperset  # bound once: the check runs on every read
        self.by_lower = {name.lower(): name for name in names}

    def view(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.covers(obj):
            return obj
        by_lower = self.by_lower
        out: dict[str, Any] = {}
        for k, v in obj.items():
            name = by_lower.get(k.lower(), k)
            if out.get(name) is None:
                out[name] = v
        return out

    def of(self, value: object) -> dict[str, Any] | None:
        """`view(value)` for a JSON object, None for anything else."""
        return self.view(value) if isinstance(value, dict) else None


def ci_get(obj: Mapping[str, Any], key: str) -> Any:
    """obj[key] read case-insensitively, for small objects read once or twice."""
    value = obj.get(key)
    if value is None:
        lkey = key.lower()
        for k, v in obj.items():
            if v is not None and k.lower() == lkey:
                return v
    return value


def as_list(value: object) -> list[Any]:
    """`value` if it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def decode_embedded_json(value: object, max_chars: int = 65536) -> object:
    """The JSON inside a string (claims, policies, impactedServices...), else `value`."""
    if not isinstance(value, str) or len(value) > max_chars:
        return value
    try:
        if value[:1] in ("[", "{"):  # the usual case: raw_decode skips loads()'s overhead
            decoded, end = _EMBEDDED.raw_decode(value)
            if end == len(value):
                return decoded
        elif value.lstrip()[:1] not in ("[", "{"):
            return value
        return json.loads(value)  # surrounding whitespace, and the errors
    except (ValueError, RecursionError):
        return value


class Budget:
    """A bound on the serialized size of one part of the normalized alert.

    Strings are cut to their own cap and to what is left; once the budget is spent,
    further strings are dropped (None) and collections end with a visible marker.
    """

    __slots__ = ("left",)

    MIN_STRING = 48  # below this a cut string would be mostly marker: drop it instead

    def __init__(self, size: int) -> None:
        self.left = size

    def text(self, value: object, cap: int) -> str | None:
        left = self.left
        if isinstance(value, str):
            n = len(value)
            if n <= cap and n <= left and value.isascii() and value.isprintable():
                if not n:
                    return None
                self.left = left - n
                return value
        if left < self.MIN_STRING:
            return None
        out = text(value, cap if cap < left else left)
        if out is not None:
            self.left = left - escaped_weight(out)
        return out

    def number(self, value: object, cap: int = 64) -> int | float | str | None:
        out = number(value, cap)
        if isinstance(out, str):
            return self.text(out, cap)
        self.left -= 24
        return out

    def copy(self, value: object, *, depth: int = 4, max_items: int = 20, cap: int = 256) -> Any:
        """A bounded deep copy of JSON `value`: no NaN, limited depth, items and sizes.

        Every emitted item is charged (punctuation and nulls included), so even a tree of
        empty containers cannot outgrow the budget.
        """
        if isinstance(value, dict):
            if depth > 0 and 4 <= len(value) <= max_items:  # below 4, bulk is no cheaper
                flat = self._flat_strings(value, cap)
                if flat is not None:
                    return flat
            self.left -= 2
            if depth <= 0:
                return self.text("{…}", 8)
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(value.items()):
                left = self.left
                if i >= max_items or left < self.MIN_STRING:
                    out["…"] = self._marker(f"[{len(value) - i} more keys truncated]")
                    break
                # Inline fast path for the usual short ASCII key and string value.
                if (
                    isinstance(v, str)
                    and len(k) <= 128
                    and len(v) <= cap
                    and len(k) + len(v) + 8 <= left
                    and k.isascii()
                    and k.isprintable()
                    and v.isascii()
                    and v.isprintable()
                ):
                    self.left = left - len(k) - len(v) - 6
                    out[k] = v or None
                    continue
                key = self.text(k, 128)
                if key is not None:
                    self.left -= 4
                    out[key] = self.copy(v, depth=depth - 1, max_items=max_items, cap=cap)
            return out
        if isinstance(value, list):
            self.left -= 2
            if depth <= 0:
                return self.text("[…]", 8)
            result: list[Any] = []
            for i, v in enumerate(value):
                if i >= max_items or self.left < self.MIN_STRING:
                    result.append(self._marker(f"…[{len(value) - i} more items truncated]"))
                    break
                self.left -= 1
                result.append(self.copy(v, depth=depth - 1, max_items=max_items, cap=cap))
            return result
        if isinstance(value, str):
            out_text = self.text(value, cap)
            if out_text is None:
                self.left -= 4
            return out_text
        if isinstance(value, bool) or value is None:
            self.left -= 5
            return value
        return self.number(value)

    def _flat_strings(self, obj: dict[str, Any], cap: int) -> dict[str, Any] | None:
        """`copy(obj)` for the usual free-form object (claims, properties, labels): short
        printable ASCII strings only, fitting the budget whole. Checked in bulk, which is
        several times cheaper than item by item; the charge is the same. None otherwise."""
        try:
            values = "".join(obj.values())  # first: a non-string value fails it soonest
            keys = "".join(obj)
        except TypeError:
            return None
        left = self.left - 2 - len(keys) - len(values) - 6 * len(obj)
        if (
            left < self.MIN_STRING  # with this to spare, item by item no item is cut either
            or not (plain(keys) and plain(values))
            or (len(keys) > 128 and max(map(len, obj)) > 128)
            or (len(values) > cap and max(map(len, obj.values())) > cap)
        ):
            return None
        self.left = left
        if "" in obj.values():
            return {k: v or None for k, v in obj.items()}
        return dict(obj)

    def scalars(
        self, obj: Mapping[str, Any], *, max_items: int = 30, cap: int = 256
    ) -> dict[str, Any]:
        """The scalar (non-container) fields of `obj`, bounded."""
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if len(out) >= max_items or self.left < self.MIN_STRING:
                out["…"] = self._marker("[more fields truncated]")
                break
            if isinstance(v, dict | list):
                continue
            key = self.text(k, 64)
            if key is not None:
                self.left -= 4
                out[key] = self.copy(v, cap=cap)
        return out

    def _marker(self, marker: str) -> str:
        self.left -= len(marker) + 8
        return marker
