"""A normalized alert (the queue message) as a work item event: its group, identity and time.

Pure functions. The decisions made here, each documented in docs/data-model.md:

- Group: which work items an event can touch. Service Health events group by tracking id,
  Resource Health by rule and resource, everything else by the correlation mode (setting
  CORRELATION_MODE, or the alert's custom property `itsm.correlation`): `alert` groups by
  alert id, `rule` by alert rule and CI set.
- Identity: a hash of the alert without its delivery fields (correlation id, receive time).
  Redeliveries and the copies that up to five action groups send are the same event; an
  alert whose content differs is a different event, so which copy wins never matters.
- Time: the event's own time (firedAt, resolvedAt, the activity log event time), never the
  arrival time; only a Resolved without resolvedAt (log alerts) falls back to the earliest
  time any copy of it was received.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import table_keys
from shared.alerts.errors import SchemaError
from shared.alerts.timestamps import format_micros
from shared.alerts.version import SUPPORTED_MAJOR, major_version

FIRED = "Fired"
RESOLVED = "Resolved"
OPEN = "open"
CLOSE = "close"

ALERT = "alert"
RULE = "rule"
SERVICE_HEALTH = "serviceHealth"
RESOURCE_HEALTH = "resourceHealth"
LEVEL_KINDS = (SERVICE_HEALTH, RESOURCE_HEALTH)  # lifecycle carried by each event's status

# Delivery metadata: differs between copies of one event, so it is not part of its identity.
DELIVERY_ALERT_FIELDS = ("correlationId", "receivedAt")

# Service Health stages after which the event needs nobody: resolved incidents, their
# post-incident review, finished or cancelled maintenance.
CLOSING_STAGES = frozenset(("resolved", "rca", "complete", "completed", "canceled", "cancelled"))
AVAILABLE = "available"

CORRELATION_PROPERTY = "itsm.correlation"
PRIORITY_PROPERTY = "itsm.priority"
ASSIGNMENT_PROPERTY = "itsm.assignmentGroup"
MAX_ASSIGNMENT_GROUP = 256


class InvalidAlert(Exception):
    """An alert that can never be processed (unknown major version, missing alert id, ...)."""


@dataclass(frozen=True)
class GroupKey:
    kind: str  # ALERT, RULE, SERVICE_HEALTH, RESOURCE_HEALTH
    key: str  # canonical text, e.g. "alert|<tenant>|<alert id>"
    hash: str  # base32 SHA-256 of `key`

    @classmethod
    def of(cls, kind: str, key: str) -> GroupKey:
        return cls(kind, key, table_keys.digest(key))

    @property
    def partition(self) -> str:
        return table_keys.group_partition(self.hash)

    @property
    def tenant(self) -> str:
        """The tenant the group's alerts came from (every group key is `kind|tenant|...`)."""
        parts = self.key.split("|", 2)
        return parts[1] if len(parts) > 2 else ""


@dataclass(frozen=True)
class Ci:
    key: str  # lowercased canonical key (ARM id or name)
    display: str  # original spelling
    data: Mapping[str, Any]  # the normalized CI: kind, subscriptionId, resourceGroup, ...


@dataclass(frozen=True)
class Event:
    id: str
    group: GroupKey
    alert_id: str
    condition: str  # FIRED or RESOLVED
    signal: str  # OPEN or CLOSE: what it says about its alert instance or tracked status
    time: int  # µs since the epoch, UTC
    implicit_time: bool  # True: `time` is the earliest receive time (no time in the payload)
    fired_at: int | None  # the payload's firedAt (a Resolved implies its alert fired then)
    severity: int | None  # 0..4
    priority_override: int | None
    assignment_group: str | None
    marker: str | None  # Service Health stage / Resource Health status
    cis: tuple[Ci, ...]
    rules: tuple[str, ...] = ()  # hashes of the rule key and the rule name (work item index)

    @property
    def seen_time(self) -> int | None:
        """The time CIs were seen: never a receive time, so it cannot move between copies."""
        return self.fired_at if self.implicit_time else self.time


# -- time -------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: object) -> int | None:
    """µs since the epoch for an ISO 8601 UTC string, None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso(micros: int | None) -> str | None:
    """The normalizer's timestamp format: UTC, microseconds, `Z`; fixed width, sortable."""
    if micros is None:
        return None
    return format_micros(micros)


# -- parsing ----------------------------------------------------------------------------


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def custom_property(alert: Mapping[str, Any], name: str) -> Any:
    """A custom property by case-insensitive name (rules are edited by hand)."""
    custom = alert.get("customProperties")
    if not isinstance(custom, dict):
        return None
    if name in custom:
        return custom[name]
    lowered = name.lower()
    for key, value in custom.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def severity_number(value: object) -> int | None:
    if isinstance(value, str) and len(value) == 4 and value[:3].lower() == "sev":
        digit = value[3]
        if digit in "01234":
            return int(digit)
    return None


def _priority(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and float(value).is_integer():
        value = str(int(value))
    if isinstance(value, str) and value.strip() in ("1", "2", "3", "4", "5"):
        return int(value.strip())
    return None


def correlation_mode(alert: Mapping[str, Any], default: str) -> str:
    override = custom_property(alert, CORRELATION_PROPERTY)
    if isinstance(override, str) and override.strip().lower() in (ALERT, RULE):
        return override.strip().lower()
    return default


def _cis(alert: Mapping[str, Any]) -> tuple[Ci, ...]:
    items = alert.get("configurationItems")
    found: dict[str, Ci] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        key = _text(item.get("key"))
        if key is None:
            continue
        display = _text(item.get("display")) or key
        ci = Ci(key=key, display=display, data=item)
        # Deterministic when one alert lists a CI twice: keep the first spelling in order.
        if key not in found or display < found[key].display:
            found[key] = ci
    return tuple(found[k] for k in sorted(found))


def rule_key(alert: Mapping[str, Any]) -> str:
    """The alert rule, case-insensitively; budgets have none and fall back to service and scope."""
    rule = _text(alert.get("alertRuleId")) or _text(alert.get("alertRule"))
    if rule is None:
        service = _text(alert.get("monitoringService")) or "unknown"
        rule = f"{service}|{_text(alert.get('subscriptionId')) or ''}"
    return rule.lower()


def group_key(alert: Mapping[str, Any], default_mode: str, cis: tuple[Ci, ...]) -> GroupKey:
    tenant = (_text(alert.get("tenantId")) or "").lower()
    lifecycle = alert.get("lifecycle")
    kind = lifecycle.get("kind") if isinstance(lifecycle, dict) else None
    ci_set = json.dumps([c.key for c in cis], ensure_ascii=False)
    if kind == SERVICE_HEALTH and isinstance(lifecycle, dict):
        tracking = _text(lifecycle.get("trackingId"))
        if tracking is not None:
            return GroupKey.of(SERVICE_HEALTH, f"{SERVICE_HEALTH}|{tenant}|{tracking.lower()}")
    if kind == RESOURCE_HEALTH:
        return GroupKey.of(
            RESOURCE_HEALTH, f"{RESOURCE_HEALTH}|{tenant}|{rule_key(alert)}|{ci_set}"
        )
    if correlation_mode(alert, default_mode) == RULE:
        return GroupKey.of(RULE, f"{RULE}|{tenant}|{rule_key(alert)}|{ci_set}")
    alert_id = str(alert["alertId"]).strip().lower()
    return GroupKey.of(ALERT, f"{ALERT}|{tenant}|{alert_id}")


def event_id(alert: Mapping[str, Any]) -> str:
    content = {k: v for k, v in alert.items() if k not in DELIVERY_ALERT_FIELDS}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return table_keys.digest(text, table_keys.EVENT_CHARS)


def check_version(alert: Mapping[str, Any]) -> None:
    try:
        major = major_version(alert)
    except SchemaError as exc:
        raise InvalidAlert(exc.message) from None
    if major != SUPPORTED_MAJOR:
        raise InvalidAlert(
            f"schemaVersion {alert.get('schemaVersion')} has major version {major}; this "
            f"receiver reads major version {SUPPORTED_MAJOR} only (deploy a newer receiver, "
            "then requeue the message from the poison queue)"
        )


def _signal(kind: str, condition: str, marker: str | None) -> str:
    if condition == RESOLVED:
        return CLOSE
    if kind == SERVICE_HEALTH and marker is not None and marker.lower() in CLOSING_STAGES:
        return CLOSE
    if kind == RESOURCE_HEALTH and marker is not None and marker.lower() == AVAILABLE:
        return CLOSE
    return OPEN


def _marker(alert: Mapping[str, Any]) -> str | None:
    lifecycle = alert.get("lifecycle")
    if not isinstance(lifecycle, dict):
        return None
    if lifecycle.get("kind") == SERVICE_HEALTH:
        return _text(lifecycle.get("stage"))
    if lifecycle.get("kind") == RESOURCE_HEALTH:
        return _text(lifecycle.get("currentHealthStatus"))
    return None


def event_from_alert(alert: Mapping[str, Any], default_mode: str) -> Event:
    """The event a normalized alert describes; InvalidAlert if it can never be processed."""
    check_version(alert)
    alert_id = _text(alert.get("alertId"))
    if alert_id is None:
        raise InvalidAlert("the alert has no alertId")
    condition = alert.get("monitorCondition")
    if condition not in (FIRED, RESOLVED):
        raise InvalidAlert(f"monitorCondition {str(condition)[:40]!r} is not Fired or Resolved")
    cis = _cis(alert)
    group = group_key(alert, default_mode, cis)
    marker = _marker(alert)
    fired_at = to_micros(alert.get("firedAt"))
    if condition == RESOLVED:
        payload_time = to_micros(alert.get("resolvedAt"))
        if payload_time is None and group.kind in LEVEL_KINDS:
            payload_time = to_micros(alert.get("occurredAt")) or fired_at
    else:
        payload_time = to_micros(alert.get("occurredAt")) or fired_at
    implicit = payload_time is None
    time = payload_time if payload_time is not None else to_micros(alert.get("receivedAt"))
    if time is None:
        raise InvalidAlert("the alert has neither an event time nor a valid receivedAt")
    assignment = _text(custom_property(alert, ASSIGNMENT_PROPERTY))
    return Event(
        id=event_id(alert),
        group=group,
        alert_id=alert_id,
        condition=condition,
        signal=_signal(group.kind, condition, marker),
        time=time,
        implicit_time=implicit,
        fired_at=fired_at,
        severity=severity_number(alert.get("severity")),
        priority_override=_priority(custom_property(alert, PRIORITY_PROPERTY)),
        assignment_group=assignment[:MAX_ASSIGNMENT_GROUP] if assignment else None,
        marker=marker,
        cis=cis,
        rules=rule_hashes(alert),
    )


RULE_HASH_CHARS = 16


def rule_hashes(alert: Mapping[str, Any]) -> tuple[str, ...]:
    """What `GET /api/workitems?rule=` matches: the rule key (id, else name, lowercase) and
    the rule's name, each hashed (shared.workitem_index.rule_hash is the same function)."""
    texts = {rule_key(alert)}
    name = _text(alert.get("alertRule"))
    if name is not None:
        texts.add(name.lower())
    return tuple(sorted(table_keys.digest(t, RULE_HASH_CHARS) for t in texts))
