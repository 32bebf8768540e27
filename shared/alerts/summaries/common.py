"""What every per-type summary builder returns, and the helpers they share.

Typed fields are bounded by static per-field caps and collection limits, chosen so that
every summary stays under ~7 KB serialized (tests/test_alerts_bounds.py checks it with
every string and list of every sample blown up); free-form objects (properties, claims,
labels) are copied through a `Budget`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from shared.alerts.timestamps import timestamp
from shared.alerts.values import Keys, ci_get, number, text

MAX_CONDITIONS = 5
MAX_DIMENSIONS = 10  # across all conditions of one alert
TITLE_CAP = 256
FREE_FORM_BUDGET = 3072  # per summary, for copies of free-form objects

FAILING_PERIODS = Keys("numberOfEvaluationPeriods", "minFailingPeriodsToAlert")


class Extract(NamedTuple):
    """One pass over `alertContext`: everything the normalizer needs from it."""

    type: str
    title: str | None
    fields: dict[str, Any]
    lifecycle: dict[str, Any] | None = None
    search_links: Sequence[str] = ()
    ci_values: Sequence[object] = ()  # values to add to the CIs (log alert dimensions...)
    event_time: str | None = None  # the event's own time, for activity-log types


def show(value: object) -> str:
    """A value as it reads in a title: 3.0 -> "3", None -> "?"."""
    if value is None:
        return "?"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


def one_line(value: str | None, limit: int = 80) -> str | None:
    """`value` on one line, cut to `limit` characters ending in "..." when cut."""
    if not value:
        return None
    line = value if value.isprintable() else " ".join(value.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def moment(value: object) -> str | None:
    """A timestamp in the output format; unparseable text is kept as sent (for display)."""
    if value is None:
        return None
    ts = timestamp(value)
    return ts if ts is not None or value is None else text(value, 64)


class Dimensions:
    """Dimension lists `[{name, value}]` (or objects) as `{name: value}`, at most
    MAX_DIMENSIONS entries over all the conditions of one alert."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_DIMENSIONS

    def read(self, value: object) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(value, list):
            pairs: list[Any] = value
        elif isinstance(value, dict):
            pairs = [{"name": k, "value": v} for k, v in list(value.items())[: self.left + 1]]
        else:
            return out
        for dim in pairs:
            if not isinstance(dim, dict):
                continue
            if self.left <= 0:
                out["…"] = "[more dimensions truncated]"
                break
            name = dim.get("name")
            key = text(name if name is not None else ci_get(dim, "name"), 128)
            if key is not None:
                value_ = dim.get("value")
                out[key] = text(value_ if value_ is not None else ci_get(dim, "value"), 256)
                self.left -= 1
        return out


def failing_periods(value: object) -> dict[str, Any] | None:
    periods = FAILING_PERIODS.of(value)
    if periods is None:
        return None
    return {
        "numberOfEvaluationPeriods": number(periods.get("numberOfEvaluationPeriods")),
        "minFailingPeriodsToAlert": number(periods.get("minFailingPeriodsToAlert")),
    }
