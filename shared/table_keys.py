"""Partition and row keys, work item ids and content hashes.

Every key is built from a SHA-256 digest in Crockford base32, never from the raw text:
CI keys and alert ids contain `/ \\ # ?`, unicode and up to 2 KB, all of which Table
Storage forbids or limits in keys, and hash-prefixed partition keys spread a storm evenly
over the service's range partitions (readable prefixes such as `/subscriptions/<id>` would
pile one subscription's alerts onto one range). The readable text is kept in properties.

Layout (see docs/data-model.md):

    workitems  PK = group partition (6 chars)   RK = g|<group>            group root
                                                RK = i|<item id>          work item
                                                RK = b|<item id>|<ci>     item -> CI binding
                                                RK = h|<group>|<event>    history entry
                                                RK = o|<item id>|<seq>    alert sync outbox
    cmdb       PK = CI hash (20 chars)          RK = ci                   the CI
                                                RK = w|<group>            CI -> group binding

A CI hash is a hash of the tenant and the CI's canonical key: each tenant has its own CMDB.
"""

from __future__ import annotations

import hashlib
import re

WORKITEMS_TABLE = "workitems"
CMDB_TABLE = "cmdb"
TABLES = (WORKITEMS_TABLE, CMDB_TABLE)

# Crockford's alphabet: no I, L, O, U, so ids survive being read aloud or retyped.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

ITEM_ID_PREFIX = "WI-"
PARTITION_CHARS = 6  # 30 bits: about a billion partitions, shared only by hash accident
ITEM_SUFFIX_CHARS = 4
GROUP_CHARS = 16  # 80 bits: tells groups sharing a partition apart
EVENT_CHARS = 16
CI_CHARS = 20  # 100 bits: a CI's partition key, collision-free at any realistic size

ROOT_PREFIX = "g|"
ITEM_PREFIX = "i|"
BINDING_PREFIX = "b|"
HISTORY_PREFIX = "h|"
HIDDEN_PREFIX = "x|"
TIMELINE_PREFIX = "t|"
OUTBOX_PREFIX = "o|"
NEWEST_FIRST = 10**18 - 1  # µs: 18 digits, so ascending row keys are newest first
CI_ROW = "ci"
CI_ITEM_PREFIX = "w|"

_ITEM_ID = re.compile(
    rf"^{ITEM_ID_PREFIX}([{_ALPHABET}]{{{PARTITION_CHARS + ITEM_SUFFIX_CHARS}}})$"
)


_KEY_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f/\\#?\ud800-\udfff]")


def is_key_text(value: str) -> bool:
    """Whether ``value`` can stand in a key or a key bound of a filter: no character that
    Table Storage forbids in keys (control characters, ``/ \\ # ?``) and no lone surrogate
    (UTF-8 cannot encode one, so the SDK would fail on it)."""
    return _KEY_FORBIDDEN.search(value) is None


def b32(data: bytes, chars: int) -> str:
    """The first `chars` base32 characters of `data` (5 bits each)."""
    value = int.from_bytes(data, "big")
    bits = len(data) * 8
    out = []
    for i in range(chars):
        shift = bits - 5 * (i + 1)
        if shift < 0:
            raise ValueError(f"{len(data)} bytes give fewer than {chars} characters")
        out.append(_ALPHABET[(value >> shift) & 31])
    return "".join(out)


def digest(text: str, chars: int = 51) -> str:
    return b32(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), chars)


# -- work items table -------------------------------------------------------------------


def group_partition(group_hash: str) -> str:
    return group_hash[:PARTITION_CHARS]


def root_row(group_hash: str) -> str:
    return ROOT_PREFIX + group_hash[:GROUP_CHARS]


def window_row(group_hash: str, event_id: str) -> str:
    """A record of the group state's window (read with the root: same prefix)."""
    return f"{root_row(group_hash)}|e|{event_id}"


def overlay_row(group_hash: str, overlay_id: str) -> str:
    """A person's change the group state keeps (read with the root)."""
    return f"{root_row(group_hash)}|m|{overlay_id}"


def carry_row(group_hash: str) -> str:
    """The live item's carry (read with the root)."""
    return f"{root_row(group_hash)}|c"


def root_range(group_hash: str) -> str:
    """Filter for the root and its rows: one range of one partition."""
    low = root_row(group_hash)
    pk = group_partition(group_hash)
    return f"PartitionKey eq '{pk}' and RowKey ge '{low}' and RowKey lt '{low}~'"


def hidden_row(group_hash: str, alert_key: str) -> str:
    """An open alert instance a fold hid from the window (read only on demand)."""
    return f"{HIDDEN_PREFIX}{group_hash[:GROUP_CHARS]}|{alert_key}"


def timeline_prefix(item_id: str) -> str:
    return f"{TIMELINE_PREFIX}{item_id}|"


def timeline_row(item_id: str, micros: int, entry_id: str) -> str:
    """An item's history entry in its timeline: newest first, one range query a page."""
    return f"{timeline_prefix(item_id)}{NEWEST_FIRST - max(0, micros):018d}|{entry_id}"


def outbox_prefix(item_id: str) -> str:
    return f"{OUTBOX_PREFIX}{item_id}|"


def outbox_row(item_id: str, seq: int) -> str:
    """A state change's alert sync messages until they are queued (docs/alert-sync.md)."""
    return f"{outbox_prefix(item_id)}{seq:012d}"


def history_prefix(group_hash: str) -> str:
    return f"{HISTORY_PREFIX}{group_hash[:GROUP_CHARS]}|"


def history_row(group_hash: str, entry_id: str) -> str:
    return history_prefix(group_hash) + entry_id


def base_item_id(group_hash: str) -> str:
    """The id of a group's one work item (alert mode, Service Health)."""
    return ITEM_ID_PREFIX + group_hash[: PARTITION_CHARS + ITEM_SUFFIX_CHARS]


def anchored_item_id(group_hash: str, anchor: str, attempt: int = 0) -> str:
    """The id of one episode of a group (rule mode, Resource Health), named by its first event.

    `attempt` > 0 resolves the (1 in a million per pair) clash of two episodes of one group.
    """
    suffix = digest(f"{group_hash}|{anchor}|{attempt}", ITEM_SUFFIX_CHARS)
    return ITEM_ID_PREFIX + group_partition(group_hash) + suffix


def is_item_id(value: str) -> bool:
    return _ITEM_ID.match(value) is not None


def item_partition(item_id: str) -> str:
    """The partition that holds a work item, read from its id; ValueError if not an id."""
    m = _ITEM_ID.match(item_id.strip().upper())
    if m is None:
        raise ValueError(f"not a work item id: {item_id[:40]!r} (expected WI- and 10 characters)")
    return m.group(1)[:PARTITION_CHARS]


def normalize_item_id(item_id: str) -> str:
    item_partition(item_id)
    return item_id.strip().upper()


def item_row(item_id: str) -> str:
    return ITEM_PREFIX + item_id


def binding_prefix(item_id: str) -> str:
    return f"{BINDING_PREFIX}{item_id}|"


def binding_row(item_id: str, ci_key: str, tenant: str) -> str:
    return binding_prefix(item_id) + ci_partition(ci_key, tenant)


# -- cmdb table -------------------------------------------------------------------------


def tenant_key(tenant: str) -> str:
    """A tenant id as keys use it: trimmed, lowercase (the token's `tid` is a GUID)."""
    return tenant.strip().lower()


def ci_partition(ci_key: str, tenant: str) -> str:
    """A CI's partition: its tenant and canonical (lowercased) key hashed, so any length or
    character works and two tenants' copies of one resource are two CIs."""
    return digest(f"{tenant_key(tenant)}|{ci_key}", CI_CHARS)


def legacy_ci_partition(ci_key: str) -> str:
    """A CI's partition before each tenant had its own CMDB (scripts/rebuild_index.py)."""
    return digest(ci_key, CI_CHARS)


def ci_item_row(item_id: str) -> str:
    return CI_ITEM_PREFIX + item_id


def prefix_filter(prefix: str) -> str:
    """An OData filter for RowKey starting with `prefix` (the prefix ends with `|`)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"RowKey ge '{_quote(prefix)}' and RowKey lt '{_quote(upper)}'"


def _quote(value: str) -> str:
    return value.replace("'", "''")
