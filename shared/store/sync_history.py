"""How a person's change reached the Azure alerts, as entries of the item's history.

docs/alert-sync.md, "History". The sync function (shared/alert_sync.py) records one entry
per change (`seq`) and outcome: `synced` once some alert of the change was set, and
`sync-failed` once one could not be (404, 403, another 4xx, retries exhausted), with the
first reason. Its id is a function of (item, seq, outcome), so a repeat, a redelivery or
the other batches of a large item find it written (409) and add nothing: at most two
entries per change, each of bounded size. Each alert's own status is the detail's
`alertSync`.

The entry and its timeline row go in one transaction in the item's partition, next to the
item and not through its group root: an outcome needs no lock, moves no ETag (a person's
If-Match stays valid) and never waits for alert events. Derived rows never include these
entries, and history rows are never deleted by a commit or a repair (shared/store/groups.py
`_kept_history`); retention deletes them with the item, through its timeline.
"""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError

from shared import table_keys
from shared.alert_events import iso
from shared.alert_sync_plan import DONE, MAX_ALERT_ID_CHARS
from shared.entity_props import json_text, truncated
from shared.store.base import _now
from shared.store.reads import _Reads

SYNCED = "synced"
SYNC_FAILED = "sync-failed"
SYNC_EFFECTS = (SYNCED, SYNC_FAILED)
MAX_REASON = 600  # ARM's error text is cut to 300 (shared/azure_alerts.py); ours is short


def entry_id(item_id: str, seq: int, status: str) -> str:
    """The entry of a change's outcome: "S" + 15 characters (alert events' ids are 16)."""
    return "S" + table_keys.digest(f"{item_id}|{seq}|{status}", table_keys.EVENT_CHARS - 1)


def sentence(status: str, target_state: str, reason: str, alerts: int) -> str:
    if status == DONE:
        return f"set the Azure alert{'s' if alerts > 1 else ''} to {target_state}"
    return truncated(reason, MAX_REASON) or f"could not set the Azure alert to {target_state}"


class _SyncHistory(_Reads):
    """The store's sync history part (shared.store.WorkItemStore combines them)."""

    def add_sync_entry(
        self,
        item_id: str,
        seq: int,
        status: str,
        target_state: str,
        alert_id: str,
        reason: str,
        at: int,
    ) -> bool:
        """Record change `seq`'s outcome `status` (done / failed) in the item's history,
        once. False: the item is gone (nothing to record it in)."""
        item = self.get_item(item_id)
        if item is None:
            return False
        item_id, group = str(item["id"]), str(item["group"])
        pk = table_keys.item_partition(item_id)
        entry = entry_id(item_id, seq, status)
        alerts = item.get("alertCount")
        text = sentence(status, target_state, reason, alerts if isinstance(alerts, int) else 1)
        now = _now()
        history = {
            "PartitionKey": pk,
            "RowKey": table_keys.history_row(group, entry),
            "entryId": entry,
            "group": group,
            "itemId": item_id,
            "effect": SYNCED if status == DONE else SYNC_FAILED,
            "changes": json_text([text]),
            "eventTime": iso(at),
            "ignored": False,
            "alertId": alert_id[:MAX_ALERT_ID_CHARS],
            "syncState": target_state,
            "syncSeq": seq,
            "createdAt": now,
            "updatedAt": now,
        }
        timeline = {
            "PartitionKey": pk,
            "RowKey": table_keys.timeline_row(item_id, at, entry),
            "entryId": entry,
            "itemId": item_id,
            "group": group,
        }
        try:
            self._submit(table_keys.WORKITEMS_TABLE, [("create", history), ("create", timeline)])
        except HttpResponseError as exc:
            if exc.status_code != 409:  # 409: recorded already (a repeat, another batch)
                raise
        return True
