"""Index entities that let the work item API list without scanning: pure, no I/O.

The store (shared/store/) writes and reads them; this module decides what they hold.
Design and consistency argument: docs/data-model.md, "Indexes for the work item API".

Index rows by logical key (`location` says where each is stored); `<T>` is the tenant's
scope (`tenant_scope`: a hash of the tenant id), so every listing of a tenant reads that
tenant's partitions only, and a CI hash is a hash of the tenant and the CI's key:

    PK = <T>|open             RK = <newest-first fired key>|<item id>   every open item
    PK = <T>|m|<yyyy-mm>      RK = <newest-first fired key>|<item id>   every item, by fired month
    PK = c|<CI hash>          RK = <newest-first fired key>|<item id>   every item of one CI
    PK = months               RK = <T>|<yyyy-mm>                        months that hold items
    PK = <T>|cis              RK = <name, lowercased>|<CI hash>         every CI, by name

The `open` and month rows of an item share its fired month's partition in `workitemindex`
(`<T>|m|<yyyy-mm>`, RowKeys `o|...` and `a|...`); a CI's rows live in its `cmdb` partition
(`s|...`).

Row content is a set of boolean flags (`s_New`, `sev_2`, `p_3`, `flap`, `r_<rule>`,
`c_<CI>`) so that a query filters on the server, plus `itemId`, `firedAt` and `seq` (the
group commit that last wrote the row). Readers never trust a row: they point-read the
item and apply the whole filter to it, so a stale row costs one read, never a wrong answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared import table_keys
from shared.alert_events import iso, to_micros

INDEX_TABLE = "workitemindex"

OPEN_PARTITION = "open"  # after the tenant scope: `<T>|open`
MONTH_PREFIX = "m|"  # after the tenant scope: `<T>|m|<yyyy-mm>`
CI_PREFIX = "c|"
MONTHS_PARTITION = "months"  # one partition, RowKey `<T>|<yyyy-mm>`
CI_NAMES_PARTITION = "cis"  # after the tenant scope: `<T>|cis`
SCOPE_CHARS = 16  # 80 bits: tells tenants apart

STATES = ("New", "Acknowledged", "InProgress", "Resolved", "Closed")
OPEN_STATES = ("New", "Acknowledged", "InProgress")

# Newest first: the row key starts with (MAX_MICROS - firedAt), zero-padded.
MAX_MICROS = 10**18 - 1
SORT_DIGITS = 18
RULE_CHARS = 16
CI_ID_PREFIX = "CI-"
# Flags an entity can hold: 252 properties minus the fixed ones, with room to spare.
MAX_FLAG_CIS = 150

_SORT_KEY = re.compile(rf"^\d{{{SORT_DIGITS}}}\|WI-[0-9A-Z]{{10}}$")
_SCOPE = re.compile(rf"^[0-9A-Z]{{{SCOPE_CHARS}}}$")
_MONTH_ROW = re.compile(rf"^([0-9A-Z]{{{SCOPE_CHARS}}})\|(\d{{4}}-\d{{2}})$")
_CI_ID = re.compile(rf"^CI-([0-9A-Z]{{{table_keys.CI_CHARS}}})$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")

# Flag property names.
STATE_FLAG = "s_"
SEVERITY_FLAG = "sev_"
NO_SEVERITY_FLAG = "sev_none"
PRIORITY_FLAG = "p_"
FLAPPING_FLAG = "flap"
RULE_FLAG = "r_"
CI_FLAG = "c_"
CI_OVERFLOW_FLAG = "c_more"  # the item has more CIs than carry flags: match it, then check


def rule_hash(text: str) -> str:
    """The flag id of an alert rule, from its id or name (case-insensitive)."""
    return table_keys.digest(text.strip().lower(), RULE_CHARS)


def tenant_scope(tenant: str) -> str:
    """The tenant's part of every index partition key: a hash of its id (any text works)."""
    return table_keys.digest(table_keys.tenant_key(tenant), SCOPE_CHARS)


def ci_hash(key: str, tenant: str) -> str:
    """A CI's hash (its cmdb partition) from its tenant and canonical key (lowercase ARM id
    or name): the same resource seen by two tenants is two CIs."""
    return table_keys.ci_partition(key.strip().lower(), tenant)


def ci_id(ci_partition: str) -> str:
    return CI_ID_PREFIX + ci_partition


def parse_ci_id(value: str) -> str | None:
    """The CI hash of a CI id (`CI-` and 20 base32 characters), or None if not an id."""
    m = _CI_ID.match(value.strip().upper())
    return m.group(1) if m else None


def clamp_micros(micros: int) -> int:
    return min(max(micros, 0), MAX_MICROS)


def sort_prefix(micros: int) -> str:
    return f"{MAX_MICROS - clamp_micros(micros):0{SORT_DIGITS}d}"


def sort_key(fired_micros: int, item_id: str) -> str:
    return f"{sort_prefix(fired_micros)}|{item_id}"


def is_sort_key(value: str) -> bool:
    return _SORT_KEY.match(value) is not None


def sort_key_micros(key: str) -> int:
    return MAX_MICROS - int(key[:SORT_DIGITS])


def month_of(micros: int) -> str:
    return (iso(clamp_micros(micros)) or "1970-01")[:7]


def open_partition(scope: str) -> str:
    return f"{scope}|{OPEN_PARTITION}"


def month_partition(scope: str, month: str) -> str:
    return f"{scope}|{MONTH_PREFIX}{month}"


def months_row(scope: str, month: str) -> str:
    """The `months` row of a tenant's month."""
    return f"{scope}|{month}"


def parse_months_row(row_key: str) -> tuple[str, str] | None:
    """(scope, month) of a `months` row; None for anything else (rows of the old layout)."""
    m = _MONTH_ROW.match(row_key)
    return (m.group(1), m.group(2)) if m else None


def scope_of(pk: str) -> str:
    """The tenant scope of a logical `open` or month partition key."""
    return pk[:SCOPE_CHARS]


def _rest(pk: str) -> str | None:
    """A logical partition key without its scope; None if it has none."""
    if len(pk) > SCOPE_CHARS and pk[SCOPE_CHARS] == "|" and _SCOPE.match(pk[:SCOPE_CHARS]):
        return pk[SCOPE_CHARS + 1 :]
    return None


def is_open_partition(pk: str) -> bool:
    return _rest(pk) == OPEN_PARTITION


def is_month_partition(pk: str) -> bool:
    rest = _rest(pk)
    return rest is not None and rest.startswith(MONTH_PREFIX)


def ci_partition_key(ci: str) -> str:
    return CI_PREFIX + ci


def is_month(value: str) -> bool:
    return _MONTH.match(value) is not None


# -- what an item's index rows hold ----------------------------------------------------


@dataclass(frozen=True)
class IndexView:
    """The part of a work item the indexes know about."""

    item_id: str
    fired_at: int
    state: str
    severity: int | None
    priority: int
    flapping: bool
    rules: tuple[str, ...]  # rule hashes
    cis: tuple[str, ...]  # CI hashes
    cis_complete: bool = True  # False: the item row's CI list was truncated (readers only)
    tenant: str = ""  # the item's tenant id (lowercase): its rows live in that tenant's scope

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


Key = tuple[str, str]  # (PartitionKey, RowKey), as if every row were in INDEX_TABLE

# Where rows are stored (see `location`), by RowKey prefix.
CI_ITEMS_ROW_PREFIX = "s|"  # a CI's items, in the CI's own `cmdb` partition
MONTH_ROW_PREFIX = "a|"  # every item of a month, in the month's partition
OPEN_ROW_PREFIX = "o|"  # the open items fired in a month, in the same partition


def location(key: Key) -> tuple[str, str, str]:
    """Where an index row is stored: (table, PartitionKey, RowKey).

    Rows are named by logical keys (`open` for every open item, `m|<month>`, `c|<CI>`) and
    stored where the writes that need them can share a transaction:
    - a new item's `open` and month rows both live in its fired month's partition, under
      `o|` and `a|`: one request writes both;
    - a CI's item rows live beside the CI and its group bindings, in the CI's `cmdb`
      partition, so the CI's own transaction writes them.
    """
    pk, rk = key
    if pk.startswith(CI_PREFIX):
        return table_keys.CMDB_TABLE, pk[len(CI_PREFIX) :], CI_ITEMS_ROW_PREFIX + rk
    if is_open_partition(pk):
        month = month_of(sort_key_micros(rk))
        return INDEX_TABLE, month_partition(scope_of(pk), month), OPEN_ROW_PREFIX + rk
    if is_month_partition(pk):
        return INDEX_TABLE, pk, MONTH_ROW_PREFIX + rk
    return INDEX_TABLE, pk, rk


def stored_entity(key: Key, props: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The table an index row is stored in, and the row as stored there (see `location`)."""
    table, pk, rk = location(key)
    return table, {"PartitionKey": pk, "RowKey": rk, **(props or {})}


def stream_location(pk: str, month: str | None = None) -> tuple[str, str, str]:
    """(table, PartitionKey, RowKey prefix) to query for the rows of logical partition `pk`;
    the `open` rows are read one fired month at a time."""
    if is_open_partition(pk):
        assert month is not None
        return INDEX_TABLE, month_partition(scope_of(pk), month), OPEN_ROW_PREFIX
    return location((pk, ""))


def key_of(table: str, entity: Mapping[str, Any]) -> Key:
    """The key of a stored index row (the inverse of `location`)."""
    pk, rk = str(entity["PartitionKey"]), str(entity["RowKey"])
    if table == table_keys.CMDB_TABLE:
        return CI_PREFIX + pk, rk[len(CI_ITEMS_ROW_PREFIX) :]
    if is_month_partition(pk) and rk.startswith(OPEN_ROW_PREFIX):
        return open_partition(scope_of(pk)), rk[len(OPEN_ROW_PREFIX) :]
    if is_month_partition(pk) and rk.startswith(MONTH_ROW_PREFIX):
        return pk, rk[len(MONTH_ROW_PREFIX) :]
    return pk, rk


def flags(view: IndexView, *, with_cis: bool) -> dict[str, bool]:
    out: dict[str, bool] = {STATE_FLAG + view.state: True}
    sev = NO_SEVERITY_FLAG if view.severity is None else f"{SEVERITY_FLAG}{view.severity}"
    out[sev] = True
    out[f"{PRIORITY_FLAG}{view.priority}"] = True
    if view.flapping:
        out[FLAPPING_FLAG] = True
    for rule in view.rules:
        out[RULE_FLAG + rule] = True
    if with_cis:
        for ci in view.cis[:MAX_FLAG_CIS]:
            out[CI_FLAG + ci] = True
        if len(view.cis) > MAX_FLAG_CIS or not view.cis_complete:
            out[CI_OVERFLOW_FLAG] = True
    return out


def rows(view: IndexView) -> dict[Key, dict[str, Any]]:
    """Every index row the item should have, with its content (flags true only)."""
    key = sort_key(view.fired_at, view.item_id)
    base = {"itemId": view.item_id, "firedAt": iso(view.fired_at) or ""}
    month = {**base, **flags(view, with_cis=False)}
    if view.is_open:
        # Flagged Resolved ahead of time: month rows only ever gain flags, so resolving
        # (the path every alert takes) needs no write here; a listing of resolved items
        # pays one dropped read per item still open.
        month[STATE_FLAG + "Resolved"] = True
    scope = tenant_scope(view.tenant)
    out: dict[Key, dict[str, Any]] = {(month_partition(scope, month_of(view.fired_at)), key): month}
    if view.is_open:
        out[(open_partition(scope), key)] = {**base, **flags(view, with_cis=True)}
    for ci in view.cis:
        out[(ci_partition_key(ci), key)] = dict(base)
    return out


def all_rows(views: Iterable[IndexView]) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for view in views:
        out.update(rows(view))
    return out


def flag_names(props: Mapping[str, Any]) -> set[str]:
    return {k for k, v in props.items() if v is True and _is_flag(k)}


def _is_flag(name: str) -> bool:
    return name.startswith((STATE_FLAG, SEVERITY_FLAG, PRIORITY_FLAG, RULE_FLAG, CI_FLAG)) or (
        name == FLAPPING_FLAG
    )


def narrows(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when `old` has a flag that `new` does not: only a REPLACE can take it away."""
    return old is not None and not flag_names(old) <= flag_names(new)


def widens(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when a MERGE of `new` is needed: the row is new or gains a flag."""
    return old is None or not flag_names(new) <= flag_names(old)


def month_rows_of(keys: Iterable[Key]) -> set[str]:
    """The `months` rows (`<T>|<yyyy-mm>`) of the month rows among `keys`."""
    out = set()
    for pk, _ in keys:
        if is_month_partition(pk):
            out.add(months_row(scope_of(pk), pk[SCOPE_CHARS + 1 + len(MONTH_PREFIX) :]))
    return out


# -- reading an item row back -----------------------------------------------------------


def view_of_entity(entity: Mapping[str, Any]) -> IndexView | None:
    """The index view of a stored work item (what its rows should hold), None if unusable."""
    fired = to_micros(entity.get("firedAt"))
    item_id = entity.get("id")
    state = entity.get("state")
    if fired is None or not isinstance(item_id, str) or state not in STATES:
        return None
    severity_text = str(entity.get("severity") or "")
    severity = int(severity_text[3]) if re.fullmatch(r"Sev[0-4]", severity_text) else None
    priority = entity.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool):
        return None
    rules = tuple(r for r in str(entity.get("ruleHashes") or "").split(",") if r)
    cis, complete = item_ci_hashes(entity)
    tenant = table_keys.tenant_key(str(entity.get("tenantId") or ""))
    return IndexView(
        item_id=item_id,
        fired_at=fired,
        state=state,
        severity=severity,
        priority=priority,
        flapping=bool(entity.get("flapping")),
        rules=rules,
        cis=cis,
        cis_complete=complete,
        tenant=tenant,
    )


def item_ci_hashes(entity: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    """The item's CI hashes from its `configurationItems` JSON; False if it was truncated."""
    text = entity.get("configurationItems")
    try:
        listed = json.loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return (), False
    if not isinstance(listed, list):
        return (), False
    tenant = str(entity.get("tenantId") or "")
    out = []
    for ci in listed:
        if isinstance(ci, dict) and isinstance(ci.get("key"), str):
            out.append(ci_hash(ci["key"], tenant))
    return tuple(sorted(set(out))), True


# -- queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemFilter:
    """What `GET /api/workitems` asks for (validated by shared/api/params.py)."""

    states: tuple[str, ...] = OPEN_STATES
    severities: tuple[int, ...] = ()  # empty: any
    priorities: tuple[int, ...] = ()
    ci: str | None = None  # CI hash
    rule: str | None = None  # rule hash
    since: int | None = None  # firedAt >= since (µs)
    until: int | None = None  # firedAt < until (µs)
    flapping: bool | None = None
    # The tenant whose items to list (lowercase id); None: every tenant (operators, tools).
    # Listings read only this tenant's partitions: it is never a filter over other rows.
    tenant: str | None = None
    _key: str = field(default="", compare=False, repr=False)

    @property
    def open_only(self) -> bool:
        return set(self.states) <= set(OPEN_STATES)

    def scoped(self, tenant: str | None) -> ItemFilter:
        """The same filter for one tenant (None: every tenant)."""
        return replace(self, tenant=None if tenant is None else table_keys.tenant_key(tenant))

    def fingerprint(self) -> str:
        """Identifies the query, so a continuation token cannot be used with another one."""
        text = "|".join(
            (
                ",".join(self.states),
                ",".join(map(str, self.severities)),
                ",".join(map(str, self.priorities)),
                self.ci or "",
                self.rule or "",
                str(self.since),
                str(self.until),
                str(self.flapping),
                "*" if self.tenant is None else tenant_scope(self.tenant),
            )
        )
        return table_keys.digest(text, 12)

    def matches(self, entity: Mapping[str, Any], now_micros: int) -> bool:
        """The whole filter against the stored item: what readers check every index hit with."""
        view = view_of_entity(entity)
        if view is None:
            return False
        if self.tenant is not None and view.tenant != self.tenant:
            return False  # a CI listing's rows, or the item of a forged row: never shown
        if view.state not in self.states:
            return False
        if self.severities and view.severity not in self.severities:
            return False
        if self.priorities and view.priority not in self.priorities:
            return False
        if self.since is not None and view.fired_at < self.since:
            return False
        if self.until is not None and view.fired_at >= self.until:
            return False
        if self.flapping is not None and is_flapping(entity, now_micros) != self.flapping:
            return False
        if self.rule is not None and self.rule not in view.rules:
            return False
        return self.ci is None or self.ci in view.cis or not view.cis_complete


def is_flapping(entity: Mapping[str, Any], now_micros: int) -> bool:
    """Flapping as the API reports it: the stored flag, until it lapses (`flappingUntil`)."""
    if not entity.get("flapping"):
        return False
    until = to_micros(entity.get("flappingUntil"))
    return until is None or now_micros < until


def quote(value: str) -> str:
    return value.replace("'", "''")


def _any_flag(names: Iterable[str]) -> str:
    parts = [f"{name} eq true" for name in names]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def server_filter(flt: ItemFilter, *, stream: str) -> str:
    """The OData filter (besides PartitionKey/RowKey) an index stream can apply itself.

    `stream` is "open", "month" or "ci". Only flags are used: rows hold a superset of the
    item's current flags (see docs/data-model.md), so the server never drops a match.
    """
    if stream == "ci":
        return ""
    clauses = []
    if set(flt.states) != set(STATES):
        clauses.append(_any_flag(STATE_FLAG + s for s in flt.states))
    if flt.severities:
        clauses.append(_any_flag(f"{SEVERITY_FLAG}{s}" for s in flt.severities))
    if flt.priorities:
        clauses.append(_any_flag(f"{PRIORITY_FLAG}{p}" for p in flt.priorities))
    if flt.flapping is True:
        clauses.append(f"{FLAPPING_FLAG} eq true")
    if flt.rule is not None:
        clauses.append(f"{RULE_FLAG}{flt.rule} eq true")
    if flt.ci is not None and stream == "open":
        clauses.append(_any_flag((CI_FLAG + flt.ci, CI_OVERFLOW_FLAG)))
    return " and ".join(clauses)


def key_range(flt: ItemFilter, after: str | None, prefix: str = "") -> str:
    """RowKey bounds for firedAt in [since, until) and past the continuation position, for
    rows stored under `prefix` (see `location`)."""
    clauses = [f"RowKey gt '{prefix}' and RowKey lt '{prefix[:-1]}}}'"] if prefix else []
    if flt.until is not None:
        # firedAt <= until - 1  <=>  key >= prefix(until - 1)
        clauses.append(f"RowKey ge '{prefix}{sort_prefix(flt.until - 1)}'")
    if flt.since is not None:
        clauses.append(f"RowKey lt '{prefix}{sort_prefix(flt.since)}}}'")  # '}' sorts after '|'
    if after is not None:
        clauses.append(f"RowKey gt '{prefix}{quote(after)}'")
    return " and ".join(clauses)


def months_between(months: Iterable[str], flt: ItemFilter, after: str | None) -> list[str]:
    """The months to read, newest first, bounded by since/until and the position."""
    low = month_of(flt.since) if flt.since is not None else None
    high = month_of(flt.until - 1) if flt.until is not None else None
    if after is not None:
        pos = month_of(sort_key_micros(after))
        high = pos if high is None else min(high, pos)
    out = [m for m in months if (low is None or m >= low) and (high is None or m <= high)]
    return sorted(set(out), reverse=True)


__all__ = [
    "CI_NAMES_PARTITION",
    "INDEX_TABLE",
    "MONTHS_PARTITION",
    "OPEN_PARTITION",
    "OPEN_STATES",
    "STATES",
    "IndexView",
    "ItemFilter",
    "ci_hash",
    "ci_id",
    "parse_ci_id",
    "rows",
    "rule_hash",
    "sort_key",
]
