"""Applying alert events under the group lock: the window and its folds, the plan, too-late
events (docs/data-model.md, "Lifecycle" and "Correctness under concurrency and failure");
the commit itself and its repair are shared.store.commits."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
)
from azure.data.tables import UpdateMode

from shared import table_keys, workitem_rows
from shared.alert_events import ALERT, FIRED, Event, GroupKey, iso
from shared.entity_props import json_text
from shared.log_text import get_logger
from shared.store.base import (
    _GROUP_LOCKS,
    _ROOT_CACHE,
    MAX_ATTEMPTS,
    MAX_TRANSACTION_OPS,
    PERMANENT_STATUSES,
    SERIALIZE_GROUPS_IN_PROCESS,
    ApplyResult,
    ContentionError,
    StoreInconsistent,
    WriteRefused,
    _backoff,
    _Broken,
    _Conflict,
    _now,
    _Root,
)
from shared.store.commits import _Commits, _kept_history, _manual_rows
from shared.store.index import (
    _index_ops,
    _index_plan,
    _index_views,
    _IndexPlan,
    _IndexWrites,
    _with_index_seq,
)
from shared.workitem_rows import CREATE, DELETE, Props, RowOp
from shared.workitems import (
    Derived,
    GroupState,
    Policy,
    Record,
    before_horizon,
    derive,
    folding,
    hidden_key,
    merge,
    needs_hidden,
    record_json,
    record_of,
)

log = get_logger(__name__)


def _refusal(exc: HttpResponseError) -> str:
    """What Table Storage said, in one line: status, error code, the message's first line."""
    code = getattr(exc, "error_code", None)
    message = str(getattr(exc, "message", None) or exc).strip().splitlines()
    first = message[0][:300] if message else ""
    return f"Table Storage answered {exc.status_code} {getattr(code, 'value', code)}: {first}"


def _probably_opens_its_group(event: Event) -> bool:
    """In alert mode a group is one alert instance, and its Fired nearly always comes first
    (a retry, a copy or an early Resolved are the exceptions, and cost one request)."""
    return event.group.kind == ALERT and event.condition == FIRED


def _own_entry(derived: Derived, group: GroupKey, event: Event, facts: Props) -> list[RowOp]:
    entry = derived.history.get(event.id)
    if entry is None:
        return []
    own = table_keys.history_row(group.hash, event.id)
    ops = [RowOp(CREATE, own, {**facts, **workitem_rows.history_props(entry, group)})]
    if entry.item_id:
        place = workitem_rows.timeline_key(entry)
        ops.append(RowOp(CREATE, place, workitem_rows.timeline_props(entry, group)))
    return ops


def _fold_all(state: GroupState, policy: Policy) -> tuple[GroupState, tuple[Record, ...]]:
    """Fold until nothing more folds: once for a group that gets events one at a time, a
    few times for a root written before the state was bounded (up to 1,500 events)."""
    hidden: tuple[Record, ...] = ()
    for _ in range(64):
        folded, newly = folding(state, policy)
        hidden += newly
        if folded == state:
            break
        state = folded
    return state, hidden


def _rows_of(rows: Mapping[str, Props], item_ids: set[str]) -> set[str]:
    """Row keys of the given items' rows: the items, their bindings, their history."""
    if not item_ids:
        return set()
    return {rk for rk, props in rows.items() if props.get("id", props.get("itemId")) in item_ids}


class _Groups(_Commits):
    """The store's groups part (shared.store.WorkItemStore combines them)."""

    def apply(
        self,
        event: Event,
        facts: Callable[[], Props],
    ) -> ApplyResult:
        """Merge `event` into its group and write every consequence, conditionally.

        `facts` builds the history entry's facts (it stores the raw payload, so it is
        called only when the event is new). Returns once everything is durable; raises
        AzureError for storage faults and ContentionError when conflicts persist.
        """
        if not SERIALIZE_GROUPS_IN_PROCESS:
            return self._apply(event, facts)
        with _GROUP_LOCKS.hold(event.group.hash):
            return self._apply(event, facts)

    def _apply(self, event: Event, facts: Callable[[], Props]) -> ApplyResult:
        touched: list[str] = []  # the work items the event belongs to, once known
        try:
            return self._attempts(event, facts, touched)
        except HttpResponseError as exc:
            if exc.status_code not in PERMANENT_STATUSES:
                raise  # throttling, timeouts, 5xx: the host retries
            raise WriteRefused(touched, _refusal(exc)) from exc
        except ValueError as exc:  # a value no entity can hold: a bug, or a limit we missed
            raise WriteRefused(touched, f"{type(exc).__name__}: {exc}") from exc

    def _attempts(
        self, event: Event, facts: Callable[[], Props], touched: list[str]
    ) -> ApplyResult:
        group = event.group
        event_facts: Props | None = None
        repair = False
        suspects: set[str] = set()  # the rows of a commit that broke: repair reads them
        broken = 0
        index = _IndexWrites()
        guessed = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            # The root this process committed last saves a read, unless the event is in it
            # already: a duplicate is confirmed by the table, never by a cache.
            cached = _ROOT_CACHE.get(self._root_key(group)) if attempt == 1 else None
            if cached is not None and cached.policy == self.policy.fingerprint():
                root = cached if merge(cached.state, event) is not None else self._read_root(group)
            elif attempt == 1 and _probably_opens_its_group(event):
                # Skip the read: the commit creates the root only if it is absent, and a
                # wrong guess costs one failed request, then the usual read and retry.
                root = _Root(GroupState(group), None, False, self.policy.fingerprint())
                guessed = True
            else:
                root = self._read_root(group)
            if root.etag is not None and (
                repair or root.dirty or root.policy != self.policy.fingerprint()
            ):
                self._repair(root, suspects)
                repair = False
                continue
            if before_horizon(root.state, event):
                if root.etag is None:  # a guess: the group exists after all, read it
                    continue
                return self._too_late(root, event, facts, attempt, touched)
            if self._folded_copy(root.state, event):
                return ApplyResult("duplicate", group, (), attempt)
            revived, hidden_row = self._hidden_instance(root.state, event)
            merged = merge(root.state, event, revived)
            newly: tuple[Record, ...] = ()
            unfolded = merged
            if merged is not None:
                merged, newly = _fold_all(merged, self.policy)
            new = derive(merged or root.state, self.policy)
            items = tuple(sorted(i.id for i in new.items.values() if event.id in i.events))
            touched[:] = items
            if merged is None:
                if index.etags:  # a guess widened index rows for a state that is not there
                    index.start_attempt(index.seq)
                    self._index_after(_IndexPlan.of((), _index_views(new)), index)
                return ApplyResult("duplicate", group, items, attempt)
            if event_facts is None:
                event_facts = facts()
            old = derive(root.state, self.policy)
            ops = self._plan(group, old, new, event, event_facts)
            if event.id not in new.history and unfolded is not None:
                # Folded by its own commit (it came late, but within the horizon): its
                # entry is written now, as the state with it said, and then stays.
                ops = _own_entry(derive(unfolded, self.policy), group, event, event_facts) + ops
            seq = root.seq + 1
            plan = _index_plan(old, new, merged)
            ops = _with_index_seq(ops, plan.changed, seq)
            index.start_attempt(seq)
            index_ops = self._known_etags(_index_ops(plan, seq), index)
            rest = self._touch_cis(group, root.state, event, index_ops, index)
            self._index_before(plan, rest, index)
            if revived is not None:  # back in the window: its row goes with the commit
                ops.append(RowOp(DELETE, hidden_row, {}))
            self._hide(group, newly)
            try:
                etag = self._write_group(merged, root.etag, ops, seq, root.state, root.stored)
            except _Conflict:
                self._forget_root(group)
                if not (guessed and attempt == 1):  # a wrong guess is no contention
                    _backoff(attempt)
                continue
            except _Broken as exc:
                self._forget_root(group)
                broken += 1
                if broken > 2:  # a repair did not help: not something a retry fixes
                    raise StoreInconsistent(f"group {group.key[:200]}: {exc}") from exc
                log.warning(
                    "work item rows of group %s disagree with its root (%s): repairing",
                    group.key[:200],
                    exc,
                )
                repair = True
                suspects = {op.row_key for op in ops}
                continue
            self._remember_root(_Root(merged, etag, False, self.policy.fingerprint(), seq))
            self._index_after(plan, index)
            return ApplyResult("applied", group, items, attempt)
        raise ContentionError(f"group {group.key[:200]}: {MAX_ATTEMPTS} conflicting attempts")

    def _folded_copy(self, state: GroupState, event: Event) -> bool:
        """A later copy of a folded event whose time is its receive time (a log alert's
        Resolved): its own time is after the horizon, the first copy's was not. Its history
        row says (one point read, only for such events in folded groups)."""
        if not event.implicit_time or state.horizon is None or state.record(event.id):
            return False
        row = table_keys.history_row(event.group.hash, event.id)
        return self._get(table_keys.WORKITEMS_TABLE, event.group.partition, row) is not None

    def _hidden_instance(self, state: GroupState, event: Event) -> tuple[Record | None, str]:
        """The hidden open alert instance `event` belongs to, if any (one point read, only
        in a group whose live item hides some: see shared.workitems.fold)."""
        if not needs_hidden(state, event):
            return None, ""
        group = event.group
        row = table_keys.hidden_row(group.hash, hidden_key(event.alert_id))
        entity = self._get(table_keys.WORKITEMS_TABLE, group.partition, row)
        if entity is None:
            return None, row
        return record_of(json.loads(str(entity["rec"]))), row

    def _hide(self, group: GroupKey, records: Sequence[Record]) -> None:
        """Rows for the open alert instances a fold hides, before the commit that hides them
        (blind upserts: a commit that then fails leaves rows nobody asks for)."""
        ops = [
            (
                "upsert",
                {
                    "PartitionKey": group.partition,
                    "RowKey": table_keys.hidden_row(group.hash, hidden_key(r.alert_id)),
                    "rec": json.dumps(record_json(r), separators=(",", ":")),
                },
                {"mode": UpdateMode.REPLACE},
            )
            for r in records
        ]
        for start in range(0, len(ops), MAX_TRANSACTION_OPS):
            self._submit(table_keys.WORKITEMS_TABLE, ops[start : start + MAX_TRANSACTION_OPS])

    def _too_late(
        self,
        root: _Root,
        event: Event,
        facts: Callable[[], Props],
        attempt: int,
        touched: list[str],
    ) -> ApplyResult:
        """An event at or before the group's horizon: a duplicate, or recorded, not applied.

        Its history entry is the proof either way: present, the event was applied (or
        recorded) before; absent, it is written now (create-if-absent, outside the lock:
        no derived row depends on it) and a warning names the alert, the item and why.
        """
        group = event.group
        row = table_keys.history_row(group.hash, event.id)
        if self._get(table_keys.WORKITEMS_TABLE, group.partition, row) is not None:
            return ApplyResult("duplicate", group, (), attempt)
        carry = root.state.carry
        item_id = carry.item_id if carry is not None and event.time >= carry.fired_at else ""
        touched[:] = [item_id] if item_id else []
        horizon = iso(root.state.horizon) or ""
        reason = (
            f"arrived after the group's horizon ({horizon}: events up to then are folded): "
            "recorded, not applied"
        )
        entry = {
            **facts(),
            "entryId": event.id,
            "group": group.hash[: table_keys.GROUP_CHARS],
            "itemId": item_id,
            "effect": "ignored",
            "changes": json_text([reason]),
            "eventTime": iso(event.time),
            "ignored": True,
        }
        now = _now()
        stamp = {"createdAt": now, "updatedAt": now}
        ops: list[tuple[Any, ...]] = [
            ("create", {"PartitionKey": group.partition, "RowKey": row, **entry, **stamp})
        ]
        if item_id:
            place = table_keys.timeline_row(item_id, event.time, event.id)
            pointer = {"entryId": event.id, "itemId": item_id, "group": entry["group"]}
            ops.append(("create", {"PartitionKey": group.partition, "RowKey": place, **pointer}))
        with contextlib.suppress(ResourceExistsError):
            self._submit(table_keys.WORKITEMS_TABLE, ops)
        log.warning(
            "alert %s (event %s) of group %s, work item %s: %s",
            event.alert_id[:300],
            event.id,
            group.key[:200],
            item_id or "-",
            reason,
        )
        return ApplyResult("late", group, (item_id,) if item_id else (), attempt)

    def _plan(
        self, group: GroupKey, old: Derived, new: Derived, event: Event, facts: Props
    ) -> list[RowOp]:
        """Row operations from the old view to the new one, the event's own entry first."""
        ops = workitem_rows.diff(
            workitem_rows.group_rows(old, group), workitem_rows.group_rows(new, group)
        )
        manual = _manual_rows(old, group)
        own = table_keys.history_row(group.hash, event.id)
        copied = {
            table_keys.item_row(item_id): workitem_rows.item_facts(
                facts if event_id == event.id else self._history_facts(group, event_id)
            )
            for item_id, event_id in workitem_rows.facts_needed(old, new).items()
        }
        # Rows of items archived by this commit stay as they are (shared.workitems.fold).
        frozen = _rows_of(
            workitem_rows.group_rows(old, group), set(new.archived) - set(old.archived)
        )
        kept = [op for op in ops if not (op.action == DELETE and op.row_key in frozen)]
        ops = _kept_history(manual, kept, set(new.history))
        first = [
            RowOp(CREATE, own, {**facts, **op.props}) if op.action == CREATE else op
            for op in ops
            if op.row_key == own
        ]
        rest = [
            RowOp(op.action, op.row_key, {**op.props, **copied[op.row_key]})
            if op.row_key in copied and op.action != DELETE
            else op
            for op in ops
            if op.row_key != own
        ]
        return first + rest
