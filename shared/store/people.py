"""People's changes through the work item API (docs/data-model.md, "People's changes")."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared import alert_sync_plan, table_keys, workitem_rows
from shared.alert_events import GroupKey, iso
from shared.entity_props import SHORT_LIMIT, truncated
from shared.log_text import get_logger
from shared.store.base import (
    MAX_ATTEMPTS,
    ContentionError,
    InvalidTransition,
    ItemNotFound,
    PreconditionFailed,
    _backoff,
    _Broken,
    _Conflict,
    _now,
    _Root,
)
from shared.store.commits import _kept_history, _manual_rows
from shared.store.groups import _Groups
from shared.store.index import _index_ops, _index_plan, _IndexWrites, _with_index_seq
from shared.workitem_rows import CREATE, DELETE, MERGE, RowOp
from shared.workitems import (
    MANUAL,
    STATES,
    TRANSITIONS,
    HistoryView,
    Overlay,
    derive,
    overlay_changes,
    with_overlay,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class Change:
    """What a person changes (the work item API's PATCH), applied together or not at all."""

    state: str = ""  # "" keeps the state; "New" reopens
    note: str = ""
    assignee: str | None = None  # None keeps it, "" clears it
    assignment_group: str | None = None  # None keeps it, "" goes back to the alert's
    priority: int | None = None  # None keeps it, 0 goes back to the alert's


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the history records it (from the verified token)."""

    name: str  # shown in sentences: the user's upn, or "app <app id>"
    type: str = ""  # "user" or "application"
    oid: str = ""  # object id of the user or service principal
    app_id: str = ""  # the client app the request came through


MAX_NOTE = 4096


def _overlay(item_id: str, anchor: str, change: Change, actor: Actor, when: int) -> Overlay:
    fields = [
        item_id,
        change.state,
        when,
        actor.name,
        actor.oid,
        change.note,
        change.assignee,
        change.assignment_group,
        change.priority,
    ]
    return Overlay(
        id="M" + table_keys.digest(repr(fields), table_keys.EVENT_CHARS - 1),
        anchor=anchor,
        item_id=item_id,
        state=change.state,
        at=when,
        by=truncated(actor.name, SHORT_LIMIT) or "",
        note=truncated(change.note, MAX_NOTE) or "",
        by_type=actor.type,
        by_oid=actor.oid[:64],
        by_app=actor.app_id[:64],
        assignee=None if change.assignee is None else truncated(change.assignee, SHORT_LIMIT),
        assignment_group=(
            None
            if change.assignment_group is None
            else truncated(change.assignment_group, SHORT_LIMIT)
        ),
        priority=change.priority,
    )


def _with_person(
    ops: list[RowOp], group: GroupKey, item_id: str, overlay: Overlay, change: Change
) -> list[RowOp]:
    """A person's change: its history entry keeps the whole note, the item when it was."""
    entry = table_keys.history_row(group.hash, overlay.id)
    item = table_keys.item_row(item_id)
    out = []
    for op in ops:
        if op.row_key == entry and op.action == CREATE:
            op = RowOp(CREATE, entry, {**op.props, "note": truncated(change.note, MAX_NOTE) or ""})
        elif op.row_key == item and op.action != DELETE:
            op = RowOp(op.action, item, {**op.props, "lastManualAt": iso(overlay.at)})
            item = ""
        out.append(op)
    if item:
        out.append(RowOp(MERGE, item, {"lastManualAt": iso(overlay.at)}))
    return out


MAX_OUTBOX_RECORDS = 20  # unsent records read at once (normally 0 or 1)


@dataclass(frozen=True)
class OutboxRecord:
    """A committed state change's sync messages, not yet known to be queued."""

    item_id: str
    row_key: str
    seq: int
    at: int  # µs, when the change was made
    messages: list[str]
    etag: str


def _outbox_op(item_id: str, seq: int, old: Any, new: Any, actor: Actor, when: int) -> list[RowOp]:
    """The outbox record of a person's state change (none when the state stays).

    An item lists at most MAX_ALERT_IDS alerts, so the messages fit one property.
    `firing`: the item as a whole is not resolved (per-instance state is not kept here).
    """
    if new is None or old.state == new.state:
        return []
    alerts = tuple(alert_sync_plan.AlertRef(a, new.resolved_at is None) for a in new.alert_ids)
    change = alert_sync_plan.StateChange(
        item_id, seq, old.state, new.state, alert_sync_plan.PERSON, actor.name, alerts
    )
    messages = [r.to_message() for r in alert_sync_plan.plan(change).requests]
    if not messages:
        return []
    # µs overflow Int32 (the SDK's int): kept as text
    props = {"itemId": item_id, "seq": seq, "at": str(when), "messages": json.dumps(messages)}
    return [RowOp(CREATE, table_keys.outbox_row(item_id, seq), props)]


class _People(_Groups):
    """The store's people part (shared.store.WorkItemStore combines them)."""

    def set_state(
        self,
        item_id: str,
        state: str,
        *,
        by: str,
        note: str = "",
        at: int | None = None,
        if_match: str | None = None,
    ) -> Any:
        """A person's state change, conditional on the item's ETag when `if_match` is given.

        No transition rules (update_item applies them). Raises ItemNotFound,
        PreconditionFailed, ValueError (unknown state).
        """
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        return self.update_item(
            item_id,
            Change(state=state, note=note),
            Actor(by),
            if_match=None if if_match is None else (if_match,),
            at=at,
            check_transition=False,
        )

    def update_item(
        self,
        item_id: str,
        change: Change,
        actor: Actor,
        *,
        if_match: Sequence[str] | None = None,
        at: int | None = None,
        check_transition: bool = True,
        sync_alerts: bool = False,
        before_outbox: Callable[[str, int, int], None] | None = None,
        tenant: str | None = None,
    ) -> Any:
        """A person's change to a work item: all of it, in one conditional write, or nothing.

        `sync_alerts`: a state change also writes its outbox record (the Azure alert sync
        messages, docs/alert-sync.md) in the same transaction; `outbox` reads it back.
        `before_outbox(item_id, seq, at)` runs just before a transaction that writes one
        (the repair timer's index row, written first so a crash after the commit leaves it).

        `if_match`: the item ETags the caller accepts (None: any). The check is airtight:
        the item is read again after its group root, and the write is conditional on that
        root, so nothing can change the item between the check and the write. Raises
        ItemNotFound, PreconditionFailed (with the current ETag), InvalidTransition.
        `tenant`: the caller's; another tenant's item is ItemNotFound, as a missing one.
        """
        item_id = table_keys.normalize_item_id(item_id)
        when = at if at is not None else int(time.time() * 1_000_000)
        if change == Change(note=change.note) and change.note:
            return self._add_note(item_id, change, actor, if_match, when, tenant)
        index = _IndexWrites()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            item = self.get_item(item_id, tenant)
            if item is None:
                raise ItemNotFound(item_id)
            root = self._root_for(item)
            group = root.state.group
            if root.dirty or root.policy != self.policy.fingerprint():
                self._repair(root)
                continue
            if if_match is not None:
                item = self.get_item(item_id)  # as of the root we will write conditionally
                if item is None:
                    raise ItemNotFound(item_id)
                if item.metadata["etag"] not in if_match:
                    raise PreconditionFailed(item_id, str(item.metadata["etag"]))
            old = derive(root.state, self.policy)
            view = old.items.get(item_id)
            if view is None:  # archived (compaction): its rows are frozen for good
                current = str(item.get("state"))
                raise InvalidTransition(item_id, current, change.state or current, ())
            if check_transition and change.state and change.state not in TRANSITIONS[view.state]:
                raise InvalidTransition(item_id, view.state, change.state, TRANSITIONS[view.state])
            overlay = _overlay(item_id, view.anchor, change, actor, when)
            updated = with_overlay(root.state, overlay)
            new = derive(updated, self.policy)
            ops = workitem_rows.diff(
                workitem_rows.group_rows(old, group), workitem_rows.group_rows(new, group)
            )
            ops = _kept_history(_manual_rows(old, group), ops, set(new.history))
            ops = _with_person(ops, group, item_id, overlay, change)
            seq = root.seq + 1
            plan = _index_plan(old, new, updated)
            ops = _with_index_seq(ops, plan.changed, seq)
            if sync_alerts:
                outbox = _outbox_op(item_id, seq, view, new.items.get(item_id), actor, when)
                if outbox and before_outbox is not None:
                    before_outbox(item_id, seq, when)
                ops = outbox + ops
            index.start_attempt(seq)
            self._index_before(plan, _index_ops(plan, seq), index)
            try:
                self._write_group(updated, root.etag, ops, seq, root.state, root.stored)
            except _Conflict:
                _backoff(attempt)
                continue
            except _Broken as exc:
                log.warning("work item %s: rows disagree with the root (%s)", item_id, exc)
                self._repair(self._root_for(item), {op.row_key for op in ops})
                continue
            finally:
                self._forget_root(group)
            self._index_after(plan, index)
            found = self.get_item(item_id)
            if found is None:
                raise ItemNotFound(item_id)
            return found
        raise ContentionError(f"work item {item_id}: {MAX_ATTEMPTS} conflicting attempts")

    def _add_note(
        self,
        item_id: str,
        change: Change,
        actor: Actor,
        if_match: Sequence[str] | None,
        when: int,
        tenant: str | None = None,
    ) -> Any:
        """A note alone: its history entry and the item's `lastManualAt`, without the lock.

        No derived row depends on a note, so it needs neither the group root nor its lock:
        one transaction in the item's partition, conditional on the item's ETag (which it
        moves), creates the entry. However many notes an item gets, its root stays the same.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            item = self.get_item(item_id, tenant)
            if item is None:
                raise ItemNotFound(item_id)
            etag = str(item.metadata["etag"])
            if if_match is not None and etag not in if_match:
                raise PreconditionFailed(item_id, etag)
            overlay = _overlay(item_id, str(item.get("anchor", "")), change, actor, when)
            group = str(item["group"])
            entry = workitem_rows.history_props(
                HistoryView(
                    overlay.id, item_id, MANUAL, overlay_changes(overlay), when, False, overlay
                ),
                GroupKey("", "", group),
            )
            now = _now()
            pk = table_keys.item_partition(item_id)
            ops: list[tuple[Any, ...]] = [
                (
                    "update",
                    {
                        "PartitionKey": pk,
                        "RowKey": table_keys.item_row(item_id),
                        "lastManualAt": iso(when),
                        "updatedAt": now,
                    },
                    {
                        "mode": UpdateMode.MERGE,
                        "etag": etag,
                        "match_condition": MatchConditions.IfNotModified,
                    },
                ),
                (
                    "create",
                    {
                        "PartitionKey": pk,
                        "RowKey": table_keys.timeline_row(item_id, when, overlay.id),
                        "entryId": overlay.id,
                        "itemId": item_id,
                        "group": group,
                    },
                ),
                (
                    "create",
                    {
                        "PartitionKey": pk,
                        "RowKey": table_keys.history_row(group, overlay.id),
                        **entry,
                        "note": truncated(change.note, MAX_NOTE) or "",
                        "createdAt": now,
                        "updatedAt": now,
                    },
                ),
            ]
            try:
                self._submit(table_keys.WORKITEMS_TABLE, ops)
            except HttpResponseError as exc:
                if exc.status_code == 412 and int(getattr(exc, "index", 0)) == 0:
                    if if_match is not None:
                        current = self.get_item(item_id)
                        raise PreconditionFailed(
                            item_id, str(current.metadata["etag"]) if current else ""
                        ) from exc
                    _backoff(attempt)
                    continue
                if exc.status_code == 409:  # the same note at the same microsecond: done
                    break
                raise
            break
        found = self.get_item(item_id)
        if found is None:
            raise ItemNotFound(item_id)
        return found

    def outbox(self, item_id: str) -> list[OutboxRecord]:
        """The item's unsent outbox records, oldest first (one range query, bounded)."""
        item_id = table_keys.normalize_item_id(item_id)
        flt = (
            f"PartitionKey eq '{table_keys.item_partition(item_id)}' and "
            + table_keys.prefix_filter(table_keys.outbox_prefix(item_id))
        )
        found = self._call(
            table_keys.WORKITEMS_TABLE,
            lambda t: list(
                itertools.islice(
                    t.query_entities(flt, results_per_page=MAX_OUTBOX_RECORDS), MAX_OUTBOX_RECORDS
                )
            ),
        )
        out = []
        for e in found:
            messages = json.loads(str(e.get("messages", "[]")))
            out.append(
                OutboxRecord(
                    item_id,
                    str(e["RowKey"]),
                    int(e.get("seq", 0)),
                    int(e.get("at", 0)),
                    [str(m) for m in messages],
                    str(e.metadata["etag"]),
                )
            )
        return out

    def outbox_sent(self, record: OutboxRecord) -> None:
        """Delete a sent record (conditional: a record rewritten meanwhile stays)."""
        pk = table_keys.item_partition(record.item_id)
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            self._submit(
                table_keys.WORKITEMS_TABLE,
                [
                    (
                        "delete",
                        {"PartitionKey": pk, "RowKey": record.row_key},
                        {"etag": record.etag, "match_condition": MatchConditions.IfNotModified},
                    )
                ],
            )

    def _root_for(self, item: Mapping[str, Any]) -> _Root:
        root = self._read_state(str(item["group"]))
        if root is None:
            raise ItemNotFound(str(item.get("id")))
        return root
