"""Applying alert events under the group lock: the root, the window and its folds, the commit,
repair (docs/data-model.md, "Lifecycle" and "Correctness under concurrency and failure")."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
)
from azure.data.tables import UpdateMode

from shared import table_keys, workitem_index, workitem_rows
from shared.alert_events import ALERT, FIRED, Event, GroupKey, iso, to_micros
from shared.entity_props import SHORT_LIMIT, join_chunks, json_text, split_chunks, truncated
from shared.log_text import get_logger
from shared.store.base import (
    _GROUP_LOCKS,
    _ROOT_CACHE,
    MAX_ATTEMPTS,
    MAX_TRANSACTION_OPS,
    PERMANENT_STATUSES,
    ROOT_CACHE_MAX_EVENTS,
    SERIALIZE_GROUPS_IN_PROCESS,
    STATE_PREFIX,
    ApplyResult,
    ContentionError,
    StoreInconsistent,
    WriteRefused,
    _backoff,
    _Broken,
    _Conflict,
    _now,
    _operation,
    _Root,
)
from shared.store.index import (
    _index_ops,
    _index_plan,
    _index_views,
    _IndexPlan,
    _IndexWrites,
    _with_index_seq,
)
from shared.store.reads import _Reads
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


def _root_of(entity: Any, rows: Mapping[str, Any]) -> _Root:
    state = workitem_rows.state_of(join_chunks(entity, STATE_PREFIX), rows)
    seq = entity.get("seq")
    return _Root(
        state,
        entity.metadata["etag"],
        bool(entity.get("dirty")),
        str(entity.get("policy")),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else 0,
        frozenset(rows),
    )


def _folded(item: Mapping[str, Any], horizon: int | None) -> bool:
    """An item whose last event is at or before the horizon: folded, its rows frozen."""
    last = to_micros(item.get("lastEventAt"))
    return horizon is not None and last is not None and last <= horizon


def _manual_rows(derived: Derived, group: GroupKey) -> set[str]:
    """History row keys of people's changes (written once, when they are made)."""
    return {
        table_keys.history_row(group.hash, h.entry_id)
        for h in derived.history.values()
        if h.actor is not None
    }


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


def _kept_history(
    manual: set[str], ops: list[RowOp], entries: set[str] | None = None
) -> list[RowOp]:
    """History rows are never deleted (a folded event's entry stays as it was, and so does
    its place in its item's timeline), and a person's change is written once, when it is
    made (its note in full: the state keeps only the start of it)."""
    out = []
    for op in ops:
        history = op.row_key.startswith(table_keys.HISTORY_PREFIX)
        if history and op.action == DELETE:
            continue
        if history and op.action != CREATE and op.row_key in manual:
            continue
        if (
            op.row_key.startswith(table_keys.TIMELINE_PREFIX)
            and op.action == DELETE
            and entries is not None
            and op.row_key.rsplit("|", 1)[-1] not in entries
        ):
            continue
        out.append(op)
    return out


def _rows_of(rows: Mapping[str, Props], item_ids: set[str]) -> set[str]:
    """Row keys of the given items' rows: the items, their bindings, their history."""
    if not item_ids:
        return set()
    return {rk for rk, props in rows.items() if props.get("id", props.get("itemId")) in item_ids}


class _Groups(_Reads):
    """The store's groups part (shared.store.WorkItemStore combines them)."""

    def _read_root(self, group: GroupKey) -> _Root:
        root = self._read_state(group.hash)
        if root is None:
            return _Root(GroupState(group), None, False, self.policy.fingerprint())
        if root.state.group != group:
            raise RuntimeError(f"group root of {group.hash[:16]} belongs to another group")
        self._remember_root(root)
        return root

    def _read_state(self, group_hash: str) -> _Root | None:
        """The root and its rows (window, people's changes, carry): one range query."""
        found = self._query(table_keys.WORKITEMS_TABLE, table_keys.root_range(group_hash))
        low = table_keys.root_row(group_hash)
        entity = next((e for e in found if e["RowKey"] == low), None)
        if entity is None:
            return None
        return _root_of(entity, {e["RowKey"]: e for e in found if e["RowKey"] != low})

    def _root_key(self, group: GroupKey) -> tuple[str, str]:
        return (self._account, f"{group.partition}/{table_keys.root_row(group.hash)}")

    def _remember_root(self, root: _Root) -> None:
        clean = root.etag is not None and not root.dirty
        clean = clean and root.policy == self.policy.fingerprint()
        clean = clean and len(root.state.events) <= ROOT_CACHE_MAX_EVENTS
        _ROOT_CACHE.put(self._root_key(root.state.group), root if clean else None)

    def _forget_root(self, group: GroupKey) -> None:
        _ROOT_CACHE.put(self._root_key(group), None)

    def _root_entity(self, state: GroupState, dirty: bool, seq: int, text: str) -> Props:
        group = state.group
        return {
            "seq": seq,
            "PartitionKey": group.partition,
            "RowKey": table_keys.root_row(group.hash),
            "groupHash": group.hash,
            "groupKind": group.kind,
            "correlationKey": truncated(group.key, SHORT_LIMIT * 2),
            "policy": self.policy.fingerprint(),
            "dirty": dirty,
            "eventCount": state.seen,
            "updatedAt": _now(),
            **split_chunks(text, STATE_PREFIX),
        }

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
                self._repair(root)
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

    def _history_facts(self, group: GroupKey, event_id: str) -> Mapping[str, Any]:
        entity = self._get(
            table_keys.WORKITEMS_TABLE,
            group.partition,
            table_keys.history_row(group.hash, event_id),
        )
        if entity is None:
            log.warning(
                "history entry %s of group %s is missing: item facts left empty",
                event_id,
                group.key[:200],
            )
            return {}
        return dict(entity)

    def _write_group(
        self,
        state: GroupState,
        etag: str | None,
        ops: list[RowOp],
        seq: int = 0,
        old: GroupState | None = None,
        stored: frozenset[str] | None = None,
    ) -> str | None:
        """Commit the root and `ops` atomically; past 100 operations, in chained transactions.

        Each later transaction also updates the root conditionally, and the root says
        `dirty` until the last one: a crash or a competing writer in between leaves a
        dirty root, which the next reader repairs from the rows it finds.
        """
        group = state.group
        pk, root_rk = group.partition, table_keys.root_row(group.hash)
        text, rows = workitem_rows.state_entities(state)
        before = workitem_rows.state_entities(old)[1] if old is not None else rows
        if stored is not None:  # rows the root's JSON still holds are not rows yet
            before = {k: v for k, v in before.items() if k in stored}
        # The state's own rows go with the root, in its transaction: always consistent.
        own = workitem_rows.diff(before, rows)
        if len(own) >= MAX_TRANSACTION_OPS:
            raise StoreInconsistent(f"group {group.key[:200]}: {len(own)} state row changes")
        ops = own + ops
        room = MAX_TRANSACTION_OPS - 1
        chunks = [ops[i : i + room] for i in range(0, len(ops), room)] or [[]]
        now = _now()
        for n, chunk in enumerate(chunks):
            dirty = n < len(chunks) - 1
            if n == 0:
                root = self._root_entity(state, dirty, seq, text)
                if etag is None:
                    root_op: tuple[Any, ...] = ("create", root)
                else:
                    root_op = (
                        "update",
                        root,
                        {
                            "mode": UpdateMode.REPLACE,
                            "etag": etag,
                            "match_condition": MatchConditions.IfNotModified,
                        },
                    )
            else:
                flag = {"PartitionKey": pk, "RowKey": root_rk, "dirty": dirty, "updatedAt": now}
                root_op = (
                    "update",
                    flag,
                    {
                        "mode": UpdateMode.MERGE,
                        "etag": etag,
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            batch = [root_op, *(_operation(pk, op, now) for op in chunk)]
            try:
                result = self._submit(table_keys.WORKITEMS_TABLE, batch)
            except HttpResponseError as exc:
                index = int(getattr(exc, "index", 0))
                if index == 0 and exc.status_code in (404, 409, 412):  # the root moved
                    if n == 0:
                        raise _Conflict() from exc
                    return None  # a repairer took over the rows; the event itself is durable
                if index == 0 or exc.status_code not in (404, 409):
                    raise  # throttling, timeouts, 5xx, bad requests: the storage error itself
                failed = batch[index] if 0 <= index < len(batch) else ("?", {"RowKey": "?"})
                raise _Broken(
                    f"{exc.status_code} {getattr(exc, 'error_code', '')} at operation "
                    f"{index} ({failed[0]} {failed[1]['RowKey']})"
                ) from exc
            etag = result[0]["etag"]
        return etag

    def _repair(self, root: _Root) -> None:
        """Rewrite a group's rows from its root, reading what they hold (rare: see _write_group)."""
        group = root.state.group
        self._forget_root(group)
        short = group.hash[: table_keys.GROUP_CHARS]
        archived = set(root.state.archived)
        horizon = root.state.horizon
        found = self._query(table_keys.WORKITEMS_TABLE, f"PartitionKey eq '{group.partition}'")
        actual: dict[str, Props] = {}
        history: dict[str, Mapping[str, Any]] = {}
        for entity in found:
            rk = entity["RowKey"]
            if entity.get("group") != short or rk.startswith(table_keys.ROOT_PREFIX):
                continue
            if entity.get("itemId") in archived or entity.get("id") in archived:
                continue  # archived items' rows are frozen
            if rk.startswith(table_keys.ITEM_PREFIX) and _folded(entity, horizon):
                continue  # items that ended before the horizon: archived long ago
            actual[rk] = dict(entity)
            if rk.startswith(table_keys.HISTORY_PREFIX):
                history[str(entity.get("entryId"))] = entity
        derived = derive(root.state, self.policy)
        desired = workitem_rows.group_rows(derived, group)
        ops: list[RowOp] = []
        kept = {rk for rk in actual if rk.startswith(table_keys.ITEM_PREFIX)}
        items = {str(actual[rk].get("id")) for rk in kept}
        diffs = workitem_rows.diff(actual, desired)
        for op in _kept_history(_manual_rows(derived, group), diffs, set(derived.history)):
            if (
                op.action == DELETE
                and op.row_key.startswith(table_keys.BINDING_PREFIX)
                and str(actual[op.row_key].get("itemId")) not in items
            ):
                continue  # a binding of an archived item
            if op.row_key.startswith(table_keys.ITEM_PREFIX) and op.action != DELETE:
                view = derived.items[op.row_key[len(table_keys.ITEM_PREFIX) :]]
                before = actual.get(op.row_key, {})
                if before.get("factsEvent") != view.facts_event:
                    facts = workitem_rows.item_facts(history.get(view.facts_event, {}))
                    op = RowOp(op.action, op.row_key, {**op.props, **facts})
            ops.append(op)
        log.warning("repairing group %s: %d row operations", group.key[:200], len(ops))
        old_views = [
            v
            for rk, entity in actual.items()
            if rk.startswith(table_keys.ITEM_PREFIX)
            for v in [workitem_index.view_of_entity(entity)]
            if v is not None
        ]
        plan = _IndexPlan.of(old_views, _index_views(derived))
        seq = root.seq + 1
        ops = _with_index_seq(ops, plan.changed, seq)
        index = _IndexWrites()
        index.start_attempt(seq)
        self._index_before(plan, _index_ops(plan, seq), index)
        try:
            self._write_group(root.state, root.etag, ops, seq, root.state, root.stored)
        except (_Conflict, _Broken) as exc:
            log.warning(
                "repair of group %s interrupted (%s); the next attempt retries",
                group.key[:200],
                exc,
            )
            return
        self._index_after(plan, index)
