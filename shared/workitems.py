"""Work items and their lifecycle, as pure functions of the SET of events a group has seen.

A group (one alert, one rule and CI set, one Service Health tracking id, ...) keeps the
events it has seen in a grow-only set (`GroupState`); `merge` adds one idempotently. What
is stored about its work items -- which items exist, their states, occurrences, reopens,
flapping, every history entry and what it changed -- is `derive(state, policy)`: a
function of the set, computed by replaying it in event-time order. Arrival order,
duplicates and concurrency therefore cannot change the tables: the same set of events
always gives the same work items, exactly as if each event had arrived once, in order.

The replay, step by step:
1. segments: each alert instance is open from its earliest fire to its latest resolve
   (Resolved wins for one alert id, like Alertmanager's earliest start / latest end);
   Service Health and Resource Health follow each event's stage/status instead;
2. periods: overlapping segments merge (the item is open while any alert in it fires);
3. episodes: periods closer than the reopen window form one work item (a reopen), farther
   apart they become separate items; a Closed item keeps what it had when it was closed;
4. each work item's state, severity, priority, flapping and history follow from its periods.

The entry point: the names below, from the modules that hold them (docs/data-model.md, "Code
map"): shared/workitem_state.py (the group state, `merge`, `with_overlay`),
shared/workitem_periods.py (steps 1-2 and flapping), shared/workitem_derive.py (`derive`),
shared/workitem_folds.py (`fold`: the window and the horizon) and shared/workitem_codec.py
(the state's JSON).
"""

from __future__ import annotations

from shared.alert_events import CLOSE, OPEN
from shared.workitem_codec import (
    carry_json,
    carry_of,
    overlay_json,
    overlay_of,
    record_json,
    record_of,
    state_from_json,
    state_to_json,
)
from shared.workitem_derive import (
    MANUAL,
    Derived,
    HistoryView,
    ItemView,
    derive,
    overlay_changes,
)
from shared.workitem_folds import (
    FOLD_AT,
    LATENESS,
    MAX_CARRIED_OPEN,
    WINDOW_CAP,
    fold,
    folding,
    hidden_key,
    needs_hidden,
)
from shared.workitem_state import (
    ACKNOWLEDGED,
    CLOSED,
    IN_PROGRESS,
    MAX_OVERLAYS,
    MINUTE,
    NEW,
    OPEN_STATES,
    ROOT_NOTE,
    STATE_RESOLVED,
    STATES,
    TRANSITIONS,
    Carry,
    CiSeen,
    GroupState,
    Overlay,
    Policy,
    Record,
    before_horizon,
    ci_covered,
    merge,
    merge_ci,
    with_overlay,
)

__all__ = [
    "ACKNOWLEDGED",
    "CLOSE",
    "CLOSED",
    "FOLD_AT",
    "IN_PROGRESS",
    "LATENESS",
    "MANUAL",
    "MAX_CARRIED_OPEN",
    "MAX_OVERLAYS",
    "MINUTE",
    "NEW",
    "OPEN",
    "OPEN_STATES",
    "ROOT_NOTE",
    "STATES",
    "STATE_RESOLVED",
    "TRANSITIONS",
    "WINDOW_CAP",
    "Carry",
    "CiSeen",
    "Derived",
    "GroupState",
    "HistoryView",
    "ItemView",
    "Overlay",
    "Policy",
    "Record",
    "before_horizon",
    "carry_json",
    "carry_of",
    "ci_covered",
    "derive",
    "fold",
    "folding",
    "hidden_key",
    "merge",
    "merge_ci",
    "needs_hidden",
    "overlay_changes",
    "overlay_json",
    "overlay_of",
    "record_json",
    "record_of",
    "state_from_json",
    "state_to_json",
    "with_overlay",
]
