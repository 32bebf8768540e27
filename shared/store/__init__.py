"""Table Storage for work items, history, bindings and CMDB: the only package that uses tables.

Writes follow one invariant: every write to a group's rows (its work items, item -> CI
bindings and history, all in the group's partition of `workitems`) is an entity group
transaction that also writes the group root conditionally (ETag, or create-if-absent).
Concurrent writers therefore serialize on the root: the loser gets 412/409, re-reads and
retries, and no update is ever lost. The rows are a function of the group state
(shared.workitems.derive), so a writer knows what they hold without reading them.

One module per job, as docs/data-model.md's sections (its "Code map" lists them):
`base` (tables, caches, locks), `index` (the API's index rows around each commit),
`cmdb` (CIs and their bindings), `ci_reads` (the API's CMDB reads), `reads` (what the API
reads), `commits` (a group's commit and its repair), `groups` (applying events under the
group lock), `people` (people's changes), `retention` (deleting expired items),
`sync_history` (how people's changes reached the Azure alerts, in the items' history).
`WorkItemStore` combines them.
"""

from __future__ import annotations

from functools import cache

from shared import storage
from shared.config import Settings, StorageSettings
from shared.store.base import (
    ApplyResult,
    ContentionError,
    InvalidTransition,
    ItemNotFound,
    Page,
    PreconditionFailed,
    StoreInconsistent,
    WriteRefused,
    clear_caches,
)
from shared.store.people import MAX_NOTE, Actor, Change, OutboxRecord
from shared.store.retention import Purged, _Retention
from shared.store.sync_history import _SyncHistory
from shared.workitems import Policy


class WorkItemStore(_Retention, _SyncHistory):
    """Reads and conditional writes of work items, history, bindings and CIs."""


@cache
def _store(storage_settings: StorageSettings, policy: Policy) -> WorkItemStore:
    return WorkItemStore(storage.table_service(storage_settings), policy)


def store_for(settings: Settings) -> WorkItemStore:
    """The store for the app's settings (one per distinct storage account and policy)."""
    policy = Policy.of_minutes(
        settings.correlation_mode,
        settings.reopen_window_minutes,
        settings.flap_threshold,
        settings.flap_window_minutes,
    )
    return _store(settings.storage, policy)


__all__ = [
    "MAX_NOTE",
    "Actor",
    "ApplyResult",
    "Change",
    "ContentionError",
    "InvalidTransition",
    "ItemNotFound",
    "OutboxRecord",
    "Page",
    "PreconditionFailed",
    "Purged",
    "StoreInconsistent",
    "WorkItemStore",
    "WriteRefused",
    "clear_caches",
    "store_for",
]
