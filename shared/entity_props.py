"""Table Storage property limits: truncate with a visible marker, never drop silently.

A string property holds at most 64 KiB, i.e. 32 Ki UTF-16 code units; an entity at most
1 MiB and 252 properties. Long texts (descriptions, summaries, JSON blobs) are cut well
below the property limit so that an item with every long field still fits one entity;
the marker says how much was cut and where the whole payload is (the blob pointer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_PROPERTY_UNITS = 32 * 1024  # UTF-16 code units in one string property
TEXT_LIMIT = 8 * 1024  # description, summary: generous for people, small for entities
JSON_LIMIT = 8 * 1024  # links, custom properties, lifecycle, CI lists
SHORT_LIMIT = 512  # titles, names
STATE_CHUNK_UNITS = 30 * 1024  # the group root's JSON state, split over properties
MAX_STATE_CHUNKS = 14  # about 430 Ki characters: the entity stays under 1 MiB


def utf16_units(text: str) -> int:
    """Length as Table Storage counts it (characters outside the BMP take two units).

    Counted in C: every string property of every row is measured, and a per-character
    Python loop over them was about 1 % of the queue function's CPU (py-spy, bench_peer).
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut(text: str, units: int) -> str:
    """The longest prefix of `text` within `units` UTF-16 code units."""
    if utf16_units(text) <= units:
        return text
    out = []
    used = 0
    for ch in text:
        cost = 2 if ord(ch) > 0xFFFF else 1
        if used + cost > units:
            break
        out.append(ch)
        used += cost
    return "".join(out)


def truncated(text: str | None, limit: int = TEXT_LIMIT, where: str | None = None) -> str | None:
    """`text` if it fits `limit` UTF-16 units, else a prefix and a marker saying what was cut."""
    if text is None:
        return None
    total = utf16_units(text)
    if total <= limit:
        return text
    marker = f" …[truncated: {total} characters, kept the first %d"
    marker += f"; full payload: {where}]" if where else "]"
    keep = max(0, limit - len(marker % limit))
    head = _cut(text, keep)
    return head + marker % len(head)


def json_text(value: Any, limit: int = JSON_LIMIT) -> str | None:
    """`value` as JSON; when too long, a JSON object that says so and keeps a preview."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if utf16_units(text) <= limit:
        return text
    preview = _cut(text, max(0, limit - 200))
    return json.dumps(
        {"truncated": True, "characters": len(text), "preview": preview},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def split_chunks(text: str, prefix: str) -> dict[str, str]:
    """`text` spread over properties `<prefix>0..n` of at most STATE_CHUNK_UNITS each."""
    chunks: dict[str, str] = {}
    rest = text
    while rest or not chunks:
        part = _cut(rest, STATE_CHUNK_UNITS)
        chunks[f"{prefix}{len(chunks)}"] = part
        rest = rest[len(part) :]
    if len(chunks) > MAX_STATE_CHUNKS:
        raise ValueError(f"{len(text)} characters need more than {MAX_STATE_CHUNKS} properties")
    return chunks


def join_chunks(entity: Mapping[str, Any], prefix: str) -> str:
    parts = []
    i = 0
    while f"{prefix}{i}" in entity:
        parts.append(str(entity[f"{prefix}{i}"]))
        i += 1
    return "".join(parts)
