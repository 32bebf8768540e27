"""Request parsing and validation for the work item API: pure functions, no I/O.

Everything a client sends is checked here and turned into typed values, or refused with
`BadRequest` (400), `PayloadTooLarge` (413) or `UnsupportedMediaType` (415), each saying
what is wrong and naming the parameter or field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from shared import table_keys, workitem_index
from shared.alert_events import to_micros
from shared.log_text import quoted
from shared.workitem_index import OPEN_STATES, STATES, ItemFilter

DEFAULT_TOP = 50
MAX_TOP = 500
CI_DEFAULT_TOP = 50
MAX_QUERY_PARAMS = 32
MAX_PARAM_CHARS = 2048
MAX_TOKEN_CHARS = 2048
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = 256  # assignee, assignment group
MAX_NOTE = 4000
TOKEN_VERSION = 1

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
PATCH_FIELDS = ("state", "assignee", "assignmentGroup", "priority", "note")
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class BadRequest(Exception):
    """400: the request is malformed; `field` names the parameter or body field."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = None if field is None else quoted(field, 100)  # names can be hostile too


class PayloadTooLarge(Exception):
    pass


class UnsupportedMediaType(Exception):
    pass


# -- ids ----------------------------------------------------------------------------------


def item_id(raw: str | None) -> str:
    """A work item id (`WI-` and 10 base32 characters, any case) in its canonical form."""
    text = (raw or "").strip()
    if len(text) > 64 or not table_keys.is_item_id(text.upper()):
        raise BadRequest(
            "invalid_id",
            f"{_show(text)} is not a work item id: expected WI- and 10 characters "
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
            f"{_show(raw or '')} is not a CI id: expected CI- and 20 characters, as the "
            "`id` of a CI in GET /api/cis or in a work item's configurationItems.",
            "id",
        )
    return found


def _show(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[:limit] + "…"
    return json.dumps(shown, ensure_ascii=True)


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
                f"Unknown query parameter {_show(name)}; this endpoint takes "
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


_STATE_NAMES = {s.lower(): s for s in STATES}


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
        elif lowered in _STATE_NAMES:
            out.add(_STATE_NAMES[lowered])
        else:
            raise BadRequest(
                "invalid_parameter",
                f"state {_show(value)} is unknown; use open (the default), all, or states "
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
                f"severity {_show(value)} is not Sev0..Sev4 (several: Sev0,Sev1).",
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
                f"priority {_show(value)} is not 1..5 (several: 1,2).",
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
    problem = f"{name} {_show(text)} is not an ISO 8601 date or date-time with a time zone"
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
            "invalid_parameter", f"tenant {_show(raw)} is not a tenant id (a GUID).", "tenant"
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
            f"type {_show(resource_type)} is not an ARM resource type "
            "(e.g. Microsoft.Compute/virtualMachines).",
            "type",
        )
    subscription = _text_param(params, "subscription")
    if subscription is not None and not _GUID.match(subscription):
        raise BadRequest(
            "invalid_parameter",
            f"subscription {_show(subscription)} is not a subscription id (a GUID).",
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


# -- continuation tokens ----------------------------------------------------------------------


def make_token(fingerprint: str, after: str) -> str:
    doc = {"v": TOKEN_VERSION, "q": fingerprint, "a": after}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def continuation(token: str, fingerprint: str, valid_position: Any) -> str:
    """The position a continuation token holds; 400 if it is not one of ours for this query."""
    bad = BadRequest(
        "invalid_continuation_token",
        "continuationToken is not a token this API returned: pass the continuationToken of "
        "the previous page unchanged, with the same filters.",
        "continuationToken",
    )
    text = token.strip()
    if not text or len(text) > MAX_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("v") != TOKEN_VERSION:
        raise bad
    after = doc.get("a")
    if not isinstance(after, str) or not valid_position(after):
        raise bad
    if any(ord(c) < 0x20 for c in after):
        raise bad
    if doc.get("q") != fingerprint:
        raise BadRequest(
            "invalid_continuation_token",
            "continuationToken belongs to a query with other filters: repeat the filters of "
            "the request that returned it (top may change).",
            "continuationToken",
        )
    return after


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
            f"Content-Type {_show(main)} is not supported; send application/json "
            "(or application/merge-patch+json)."
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest("invalid_body", f"The field {_show(key)} appears twice.", key)
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
    if not isinstance(value, str) or value.strip().lower() not in _STATE_NAMES:
        raise BadRequest(
            "invalid_field",
            f"state must be one of {', '.join(STATES)} (New reopens a Resolved or Closed item).",
            "state",
        )
    return _STATE_NAMES[value.strip().lower()]


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
            f"Unknown field(s) {', '.join(_show(k, 40) for k in unknown[:5])}; a PATCH takes "
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
