"""The CMDB name index: one row per CI in its tenant's `<T>|cis` partition of `workitemindex`,
so that `GET /api/cis` finds CIs by name prefix (a row key range) without a scan: pure, no I/O.

RowKey `<name, lowercased, escaped>|<CI hash>`; properties: the CI hash, its key, tenant,
display, kind, resource type and subscription (docs/data-model.md, "Layout").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared import table_keys
from shared.workitem_index import CI_NAMES_PARTITION, ci_hash, quote


def names_partition(scope: str) -> str:
    """The tenant's CMDB name index partition (`scope`: workitem_index.tenant_scope)."""
    return f"{scope}|{CI_NAMES_PARTITION}"


_KEY_UNSAFE = re.compile(r"[%/\\#?\x00-\x1f\x7f-\x9f|]")


def _escape(text: str) -> str:
    """Prefix-preserving escape of characters row keys forbid (and our separator)."""
    return _KEY_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)


NAME_KEY_CHARS = 200


def name_key(name: str) -> str:
    """The searchable part of a CI name row key: lowercased, escaped, bounded."""
    return _escape(name.strip().lower())[:NAME_KEY_CHARS]


def ci_name_row(name: str, ci: str) -> str:
    return f"{name_key(name)}|{ci}"


def ci_name_props(data: Mapping[str, Any], key: str, display: str, tenant: str) -> dict[str, Any]:
    return {
        "ci": ci_hash(key, tenant),
        "tenantId": table_keys.tenant_key(tenant),
        "key": key[:1024],
        "display": display[:1024],
        "name": str(data.get("name") or display)[:1024],
        "kind": str(data.get("kind") or ""),
        "resourceType": str(data.get("resourceType") or "").lower(),
        "subscriptionId": str(data.get("subscriptionId") or "").lower(),
    }


def name_prefix_range(prefix: str) -> str:
    """RowKey bounds for names starting with `prefix` (case-insensitive)."""
    low = name_key(prefix)
    if not low:
        return ""
    high = _successor(low)
    if high is None:  # the prefix is all U+10FFFF: every key from it on starts with it
        return f"RowKey ge '{quote(low)}'"
    return f"RowKey ge '{quote(low)}' and RowKey lt '{quote(high)}'"


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix``, or None.

    Never a lone surrogate (the Tables SDK cannot encode one): after U+D7FF comes U+E000;
    a trailing U+10FFFF has no successor, so the character before it is increased instead.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    last = ord(stripped[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000
    return stripped[:-1] + chr(last)
