"""What a person's change to a work item asks of its Azure Monitor alerts: pure rules.

Azure Monitor gives every alert instance a *user state* (New, Acknowledged, Closed) that
people set in the portal; the Alerts Management "change state" operation sets it
(docs/alert-sync.md cites the REST specification). A person's change to a work item maps
onto it:

    Acknowledged, InProgress -> Acknowledged  (the instances still firing)
    Resolved, Closed         -> Closed        (every instance the item holds)
    New (a person's reopen)  -> New           (every instance the item holds)

Changes that came from Azure Monitor itself (an alert resolving) are never echoed back.

Ordering: every change of an item carries the item's change sequence number (`seq`).
`decide` is the per-alert rule the sync function follows against the alert's sync row:
a sync older than the newest one recorded is skipped, one already done is skipped, and
while another sync of the same alert holds its lease the newer one waits, so at most one
call per alert is in flight and the newest person's change is the last one Azure sees.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from shared import table_keys

# The Alerts Management user states (AlertState in the specification).
NEW = "New"
ACKNOWLEDGED = "Acknowledged"
CLOSED = "Closed"
USER_STATES = (NEW, ACKNOWLEDGED, CLOSED)

# Work item state (shared/workitems.py) -> the Azure alert's user state.
TARGET_STATE = {
    "New": NEW,
    "Acknowledged": ACKNOWLEDGED,
    "InProgress": ACKNOWLEDGED,
    "Resolved": CLOSED,
    "Closed": CLOSED,
}

PERSON = "person"  # a change made through the work item API (or the board)
AZURE_MONITOR = "alert"  # a change an alert event made (Fired, Resolved)

# Bounds: one queue message names at most BATCH_SIZE alerts (its calls finish well within
# the function's timeout), and one change syncs at most MAX_ALERTS_PER_ITEM of them.
BATCH_SIZE = 10
MAX_ALERTS_PER_ITEM = 500
MAX_COMMENT_CHARS = 500
MAX_ACTOR_CHARS = 200
MAX_ALERT_ID_CHARS = 1024
MESSAGE_VERSION = 1

# An Alerts Management alert id: /subscriptions/{guid}[/{scope...}]/providers/
# Microsoft.AlertsManagement/alerts/{guid}. Nothing else may reach the ARM URL: no query,
# fragment, percent-escape or dot segment can be smuggled into the path.
_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_ALERT_ID = re.compile(
    rf"/subscriptions/{_GUID}(?:/[A-Za-z0-9_()\-][A-Za-z0-9._()\-]*)*"
    rf"/providers/Microsoft\.AlertsManagement/alerts/{_GUID}",
    re.IGNORECASE,
)


class InvalidSyncMessage(ValueError):
    """A sync message that can never be carried out (not JSON, wrong shape, bad alert id)."""


def is_alert_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_ALERT_ID_CHARS
        and _ALERT_ID.fullmatch(value) is not None
    )


@dataclass(frozen=True)
class AlertRef:
    alert_id: str
    firing: bool  # the instance's monitor condition is Fired (not resolved by Azure Monitor)


@dataclass(frozen=True)
class StateChange:
    """One change of a work item's state, as the store committed it."""

    item_id: str
    seq: int  # the item's change sequence number, increasing with every change
    from_state: str
    to_state: str
    origin: str  # PERSON or AZURE_MONITOR
    actor: str  # who: upn, or app id, as the item's history names them
    alerts: tuple[AlertRef, ...]


@dataclass(frozen=True)
class SyncRequest:
    """One queue message: set these alerts to `target_state` for the item's change `seq`."""

    item_id: str
    seq: int
    target_state: str
    alert_ids: tuple[str, ...]
    actor: str
    comment: str

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "itemId": self.item_id,
                "seq": self.seq,
                "targetState": self.target_state,
                "alertIds": list(self.alert_ids),
                "actor": self.actor,
                "comment": self.comment,
            },
            ensure_ascii=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, text: str) -> SyncRequest:
        """Parse and validate a queue message; InvalidSyncMessage says what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidSyncMessage(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidSyncMessage("not a JSON object")
        if data.get("v") != MESSAGE_VERSION:
            raise InvalidSyncMessage(f"unknown message version {str(data.get('v'))[:20]!r}")
        item_id, seq, state = data.get("itemId"), data.get("seq"), data.get("targetState")
        alert_ids, actor, comment = data.get("alertIds"), data.get("actor"), data.get("comment")
        if not isinstance(item_id, str) or not table_keys.is_item_id(item_id):
            raise InvalidSyncMessage("itemId must be a work item id (WI- and 10 characters)")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**53:
            raise InvalidSyncMessage("seq must be a non-negative integer")
        if state not in USER_STATES:
            raise InvalidSyncMessage(f"targetState must be one of {', '.join(USER_STATES)}")
        if not isinstance(alert_ids, list) or not 0 < len(alert_ids) <= BATCH_SIZE:
            raise InvalidSyncMessage(f"alertIds must hold 1 to {BATCH_SIZE} alert ids")
        for alert_id in alert_ids:
            if not is_alert_id(alert_id):
                raise InvalidSyncMessage("alertIds holds a value that is not an alert id")
        if not isinstance(actor, str) or not isinstance(comment, str):
            raise InvalidSyncMessage("actor and comment must be strings")
        return cls(
            item_id=item_id,
            seq=seq,
            target_state=state,
            alert_ids=tuple(dict.fromkeys(alert_ids)),
            actor=_clean(actor, MAX_ACTOR_CHARS),
            comment=_clean(comment, MAX_COMMENT_CHARS),
        )


@dataclass(frozen=True)
class Plan:
    requests: tuple[SyncRequest, ...]
    omitted: int  # alerts beyond MAX_ALERTS_PER_ITEM, not synced (the item says so)


def _clean(text: str, limit: int) -> str:
    """Printable text only: a comment lands in Azure's alert history as people wrote it."""
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    return " ".join(kept.split())[:limit]


def comment_for(actor: str, item_id: str, to_state: str) -> str:
    who = _clean(actor, MAX_ACTOR_CHARS) or "someone"
    return _clean(f"{to_state} by {who} in ITSM work item {item_id}", MAX_COMMENT_CHARS)


def target_alerts(target_state: str, alerts: Iterable[AlertRef]) -> list[str]:
    """Which instances a change touches: acknowledging concerns the ones still firing;
    closing and reopening concern every one, so no closed incident leaves a New alert."""
    chosen = (a.alert_id for a in alerts if a.firing or target_state != ACKNOWLEDGED)
    return sorted(dict.fromkeys(a for a in chosen if is_alert_id(a)))


def plan(change: StateChange) -> Plan:
    """The sync messages a committed state change asks for (none for Azure's own events)."""
    if change.origin != PERSON or change.from_state == change.to_state:
        return Plan((), 0)
    target = TARGET_STATE.get(change.to_state)
    if target is None:
        return Plan((), 0)
    alert_ids = target_alerts(target, change.alerts)
    kept, omitted = alert_ids[:MAX_ALERTS_PER_ITEM], max(0, len(alert_ids) - MAX_ALERTS_PER_ITEM)
    comment = comment_for(change.actor, change.item_id, change.to_state)
    actor = _clean(change.actor, MAX_ACTOR_CHARS)
    return Plan(
        tuple(
            SyncRequest(change.item_id, change.seq, target, tuple(batch), actor, comment)
            for batch in batches(kept, BATCH_SIZE)
        ),
        omitted,
    )


def batches(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# -- per alert: may this sync call Azure now? ----------------------------------------------

PENDING = "pending"
DONE = "done"
FAILED = "failed"
STATUSES = (PENDING, DONE, FAILED)


@dataclass(frozen=True)
class SyncRow:
    """An alert's sync status within one work item (what the item's detail shows)."""

    seq: int
    status: str
    target_state: str
    lease_until: float  # epoch seconds; a pending sync past it crashed mid-call
    reason: str = ""

    def to_view(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "state": self.target_state,
            "status": self.status,
            "reason": self.reason,
        }


class Decision(Enum):
    CLAIM = "claim"  # take the lease and call Azure
    STALE = "stale"  # a newer person's change is recorded for this alert: skip
    DUPLICATE = "duplicate"  # this very sync already ended (done or failed): skip
    WAIT = "wait"  # another sync of this alert holds the lease: try again later


def decide(row: SyncRow | None, seq: int, now: float) -> Decision:
    if row is None:
        return Decision.CLAIM
    if seq < row.seq:
        return Decision.STALE
    if seq == row.seq and row.status != PENDING:
        return Decision.DUPLICATE
    if row.status == PENDING and now < row.lease_until:
        return Decision.WAIT
    return Decision.CLAIM
