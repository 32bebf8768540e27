"""What a URL carries: path ids, the query string, the listing filters and the CI search.

Pure functions: every parameter is checked and turned into typed values, or refused with a
`BadRequest` that names it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from shared import table_keys, workitem_index
from shared.alert_events import to_micros
from shared.api.continuation import continuation
from shared.api.request_errors import BadRequest, show
from shared.workitem_index import OPEN_STATES, STATES, ItemFilter

DEFAULT_TOP = 50
MAX_TOP = 500
CI_DEFAULT_TOP = 50
MAX_QUERY_PARAMS = 32
MAX_PARAM_CHARS = 2048

LIST_PARAMS = (
    "state",
    "severity",
    "priority",
    "ci",
    "rule",
    "since",
    "until",
    "flapping",
    "tenant",
    "top",
    "continuationToken",
)
CI_SEARCH_PARAMS = ("query", "type", "subscription", "tenant", "top", "continuationToken")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


# -- ids ----------------------------------------------------------------------------------


def item_id(raw: str | None) -> str:
    """A work item id (`WI-` and 10 base32 characters, any case) in its canonical form."""
    text = (raw or "").strip()
    if len(text) > 64 or not table_keys.is_item_id(text.upper()):
        raise BadRequest(
            "invalid_id",
            f"{show(text)} is not a work item id: expected WI- and 10 characters "
            "(digits and letters except I, L, O, U), e.g. WI-7K3F9Q2MXA.",
            "id",
        )
    return text.upper()


def ci_id(raw: str | None) -> str:
    """The CI hash of a CI id (`CI-` and 20 base32 characters, any case)."""
    found = workitem_index.parse_ci_id(raw or "") if len(raw or "") <= 64 else None
    if found is None:
        raise BadRequest(
            "invalid_id",
            f"{show(raw or '')} is not a CI id: expected CI- and 20 characters, as the "
            "`id` of a CI in GET /api/cis or in a work item's configurationItems.",
            "id",
        )
    return found


# -- query strings --------------------------------------------------------------------------


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def query_params(url: str, allowed: Sequence[str]) -> dict[str, str]:
    """The query string as a dict; unknown or repeated parameters are refused."""
    query = url.partition("?")[2].partition("#")[0]
    try:
        pairs = parse_qsl(
            query,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_QUERY_PARAMS,
            errors="strict",
        )
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            "invalid_query",
            f"The query string is malformed or has more than {MAX_QUERY_PARAMS} parameters.",
        ) from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise BadRequest(
                "unknown_parameter",
                f"Unknown query parameter {show(name)}; this endpoint takes "
                f"{', '.join(allowed)} (names are case-sensitive).",
                name[:100],
            )
        if name in out:
            raise BadRequest("repeated_parameter", f"{name} is given more than once.", name)
        if len(value) > MAX_PARAM_CHARS:
            raise BadRequest(
                "parameter_too_long", f"{name} is longer than {MAX_PARAM_CHARS} characters.", name
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise BadRequest("invalid_parameter", f"{name} holds control characters.", name)
        if _SURROGATE.search(value):
            raise BadRequest("invalid_parameter", f"{name} holds an unpaired surrogate.", name)
        out[name] = value
    return out


def _csv(params: Mapping[str, str], name: str) -> list[str] | None:
    raw = params.get(name)
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",")]
    if not raw.strip() or any(not v for v in values):
        raise BadRequest(
            "invalid_parameter", f"{name} must not be empty or hold empty items.", name
        )
    return values


STATE_NAMES = {s.lower(): s for s in STATES}


def states(params: Mapping[str, str]) -> tuple[str, ...]:
    values = _csv(params, "state")
    if values is None:
        return OPEN_STATES
    out: set[str] = set()
    for value in values:
        lowered = value.lower()
        if lowered == "open":
            out.update(OPEN_STATES)
        elif lowered == "all":
            out.update(STATES)
        elif lowered in STATE_NAMES:
            out.add(STATE_NAMES[lowered])
        else:
            raise BadRequest(
                "invalid_parameter",
                f"state {show(value)} is unknown; use open (the default), all, or states "
                f"separated by commas: {', '.join(STATES)}.",
                "state",
            )
    return tuple(s for s in STATES if s in out)


def severities(params: Mapping[str, str]) -> tuple[int, ...]:
    values = _csv(params, "severity") or []
    out = set()
    for value in values:
        m = re.fullmatch(r"(?i)(?:sev)?([0-4])", value)
        if m is None:
            raise BadRequest(
                "invalid_parameter",
                f"severity {show(value)} is not Sev0..Sev4 (several: Sev0,Sev1).",
                "severity",
            )
        out.add(int(m.group(1)))
    return tuple(sorted(out))


def priorities(params: Mapping[str, str]) -> tuple[int, ...]:
    values = _csv(params, "priority") or []
    out = set()
    for value in values:
        if not re.fullmatch(r"[1-5]", value):
            raise BadRequest(
                "invalid_parameter",
                f"priority {show(value)} is not 1..5 (several: 1,2).",
                "priority",
            )
        out.add(int(value))
    return tuple(sorted(out))


def timestamp(params: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 date (UTC midnight) or date-time with a time zone, in µs since the epoch."""
    raw = params.get(name)
    if raw is None:
        return None
    text = raw.strip()
    problem = f"{name} {show(text)} is not an ISO 8601 date or date-time with a time zone"
    example = " (e.g. 2024-03-01 or 2024-03-01T08:00:00Z)."
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.,]+(Z|z|[+-]\d{2}(:?\d{2})?))?", text):
        raise BadRequest("invalid_parameter", problem + example, name)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadRequest("invalid_parameter", problem + example, name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        utc = parsed.astimezone(UTC)
    except (
        OverflowError
    ):  # 0001-01-01T00:00+01:00 is in year 0 in UTC, 9999-12-31T23:59-01:00 in 10000
        utc = None
    if utc is None or not 1971 <= utc.year <= 9999:
        raise BadRequest("invalid_parameter", f"{name} must be between 1971 and 9999.", name)
    micros = to_micros(utc.isoformat())
    if micros is None:  # pragma: no cover - fromisoformat accepted it
        raise BadRequest("invalid_parameter", problem + example, name)
    return micros


def boolean(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise BadRequest("invalid_parameter", f"{name} must be true or false.", name)
    return lowered == "true"


def top(params: Mapping[str, str], default: int = DEFAULT_TOP) -> int:
    raw = params.get("top")
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,6}", raw.strip()) or not 1 <= int(raw) <= MAX_TOP:
        raise BadRequest(
            "invalid_parameter", f"top must be a whole number from 1 to {MAX_TOP}.", "top"
        )
    return int(raw)


def _text_param(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.strip():
        raise BadRequest("invalid_parameter", f"{name} must not be empty.", name)
    return raw.strip()


def tenant_filter(params: Mapping[str, str], own: str, operator: bool) -> str | None:
    """The tenant a listing reads: the caller's own; for an operator (AAD_OPERATOR_TENANT_IDS)
    the `tenant` parameter's, or None (every tenant) without it. A caller of another tenant
    that names any tenant but its own gets 400, whatever exists (nothing to learn)."""
    raw = params.get("tenant")
    if raw is None:
        return None if operator else own
    value = raw.strip().lower()
    if not _GUID.match(value):
        raise BadRequest(
            "invalid_parameter", f"tenant {show(raw)} is not a tenant id (a GUID).", "tenant"
        )
    if not operator and value != own:
        raise BadRequest(
            "invalid_parameter",
            "tenant can name only your own tenant (your token's tid): only callers from an "
            "operator tenant (AAD_OPERATOR_TENANT_IDS) see other tenants.",
            "tenant",
        )
    return value


def ci_reference(
    value: str, tenant: str | None, by_name: Callable[[str], str | None] | None = None
) -> str:
    """A CI hash from a CI id (`CI-…`), an ARM resource id, or a name, in `tenant`'s CMDB.

    A name is looked up with `by_name` (the CMDB's name index: a resource named
    `vm-web-01` is found by that name); when it names no CI there, it is taken as the key
    of a CI known by name only (a computer name from a log alert). Across every tenant (an
    operator without `tenant`) only a CI id says which CI is meant.
    """
    found = workitem_index.parse_ci_id(value)
    if found is not None:
        return found
    if tenant is None:
        raise BadRequest(
            "tenant_required",
            "ci names a CI by name or resource id, and each tenant has its own CMDB: pass "
            "tenant as well, or the CI's id (CI-…, from GET /api/cis).",
            "ci",
        )
    if by_name is not None and not value.startswith("/"):
        named = by_name(value)
        if named is not None:
            return named
    return workitem_index.ci_hash(value, tenant)


def _named_in(ci_by_name: Callable[[str, str], str | None], tenant: str, name: str) -> str | None:
    return ci_by_name(name, tenant)


@dataclass(frozen=True)
class ListRequest:
    filter: ItemFilter
    top: int
    after: str | None


def list_request(
    url: str,
    own_tenant: str,
    operator: bool = False,
    ci_by_name: Callable[[str, str], str | None] | None = None,
) -> ListRequest:
    """The list query of a caller of `own_tenant` (an operator tenant's: see tenant_filter);
    `ci_by_name` resolves a CI given by name in a tenant (see ci_reference)."""
    params = query_params(url, LIST_PARAMS)
    tenant = tenant_filter(params, own_tenant, operator)
    ci = _text_param(params, "ci")
    rule = _text_param(params, "rule")
    by_name = None
    if ci_by_name is not None and tenant is not None:
        by_name = functools.partial(_named_in, ci_by_name, tenant)
    flt = ItemFilter(
        states=states(params),
        severities=severities(params),
        priorities=priorities(params),
        ci=ci_reference(ci, tenant, by_name) if ci is not None else None,
        rule=workitem_index.rule_hash(rule) if rule is not None else None,
        since=timestamp(params, "since"),
        until=timestamp(params, "until"),
        flapping=boolean(params, "flapping"),
        tenant=tenant,
    )
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise BadRequest("invalid_parameter", "since must be earlier than until.", "since")
    token = params.get("continuationToken")
    after = None
    if token is not None:
        after = continuation(token, flt.fingerprint(), workitem_index.is_sort_key)
    return ListRequest(flt, top(params), after)


@dataclass(frozen=True)
class CiSearch:
    query: str | None
    resource_type: str | None
    subscription: str | None
    top: int
    after: str | None
    tenant: str | None = None  # None: every tenant (an operator without `tenant`)

    def fingerprint(self) -> str:
        text = f"{self.query}|{self.resource_type}|{self.subscription}|{self.tenant or '*'}"
        return table_keys.digest(text, 12)


def ci_search(url: str, own_tenant: str, operator: bool = False) -> CiSearch:
    """The CI search of a caller of `own_tenant` (an operator tenant's: see tenant_filter)."""
    params = query_params(url, CI_SEARCH_PARAMS)
    tenant = tenant_filter(params, own_tenant, operator)
    query = params.get("query")
    query = query.strip() if query is not None and query.strip() else None
    resource_type = _text_param(params, "type")
    if resource_type is not None and not re.fullmatch(
        r"[A-Za-z0-9.\-]+(/[A-Za-z0-9.\-]+)+", resource_type
    ):
        raise BadRequest(
            "invalid_parameter",
            f"type {show(resource_type)} is not an ARM resource type "
            "(e.g. Microsoft.Compute/virtualMachines).",
            "type",
        )
    subscription = _text_param(params, "subscription")
    if subscription is not None and not _GUID.match(subscription):
        raise BadRequest(
            "invalid_parameter",
            f"subscription {show(subscription)} is not a subscription id (a GUID).",
            "subscription",
        )
    if tenant is None and query is not None and query.lower().startswith("/subscriptions/"):
        raise BadRequest(
            "tenant_required",
            "query is a resource id, and each tenant has its own CMDB: pass tenant as well.",
            "query",
        )
    search = CiSearch(
        query=query,
        resource_type=resource_type.lower() if resource_type else None,
        subscription=subscription.lower() if subscription else None,
        top=top(params, CI_DEFAULT_TOP),
        after=None,
        tenant=tenant,
    )
    token = params.get("continuationToken")
    if token is None:
        return search
    after = continuation(
        token, search.fingerprint(), lambda v: 0 < len(v) <= 1024 and table_keys.is_key_text(v)
    )
    return CiSearch(
        search.query, search.resource_type, search.subscription, search.top, after, tenant
    )
