"""Canonical spellings for the small vocabularies of the common alert schema."""

from __future__ import annotations

import math

from shared.alerts.values import text

FIRED = "Fired"
RESOLVED = "Resolved"

_CONDITIONS = {"fired": FIRED, "resolved": RESOLVED}

# Azure's own names for the severities (alert rule "Severity" picker), accepted too.
_SEVERITIES = {
    **{f"sev{i}": f"Sev{i}" for i in range(5)},
    **{str(i): f"Sev{i}" for i in range(5)},
    "critical": "Sev0",
    "error": "Sev1",
    "warning": "Sev2",
    "informational": "Sev3",
    "verbose": "Sev4",
}
_SEVERITY_EXACT = {f"Sev{i}": f"Sev{i}" for i in range(5)}

_SIGNAL_TYPES = {"metric": "Metric", "log": "Log", "activitylog": "ActivityLog"}
_SIGNAL_EXACT = {
    "Metric": "Metric",
    "Log": "Log",
    "Activity Log": "ActivityLog",
    "ActivityLog": "ActivityLog",
}

# MonitorEventLevel (Azure.ResourceManager.Monitor): Critical=0 ... Verbose=4. The two
# published Service Health samples agree: level 3 in one is "Informational" in the other.
_EVENT_LEVELS = ("Critical", "Error", "Warning", "Informational", "Verbose")

_OPERATORS = {
    "greaterthan": ">",
    "greaterthanorequal": ">=",
    "greaterthanorequalto": ">=",
    "greaterorequal": ">=",
    "lessthan": "<",
    "lowerthan": "<",
    "lessthanorequal": "<=",
    "lessthanorequalto": "<=",
    "lowerthanorequal": "<=",
    "lessorequal": "<=",
    "equal": "=",
    "equals": "=",
    "equalto": "=",
    "notequal": "!=",
    "notequals": "!=",
    "greaterorlessthan": "outside",
}


def _squash(s: str) -> str:
    return s.strip().lower().replace(" ", "").replace("_", "").replace("-", "")


def monitor_condition(value: object) -> str | None:
    """ "Fired" or "Resolved" in any casing, else None (the caller rejects the alert)."""
    if value in (FIRED, RESOLVED):
        return str(value)
    if isinstance(value, str) and len(value) <= 32:
        return _CONDITIONS.get(value.strip().lower())
    return None


def severity(value: object) -> str | None:
    """ "Sev0".."Sev4" from "Sev2", "sev 2", "2", 2, 2.0 or "Warning"; else None."""
    if isinstance(value, str):
        exact = _SEVERITY_EXACT.get(value)
        if exact is not None or len(value) > 32:
            return exact
        return _SEVERITIES.get(_squash(value))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"Sev{value}" if 0 <= value <= 4 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return f"Sev{int(value)}" if 0 <= value <= 4 else None
    return None


def signal_type(value: object) -> str | None:
    """ "Metric", "Log" or "ActivityLog" ("Activity Log", "activity_log"...); else None."""
    if not isinstance(value, str):
        return None
    exact = _SIGNAL_EXACT.get(value)
    if exact is not None or len(value) > 32:
        return exact
    return _SIGNAL_TYPES.get(_squash(value))


def event_level(value: object) -> str | None:
    """An activity log level name; numeric levels (Service Health sends 3) mapped."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _EVENT_LEVELS[value] if 0 <= value < len(_EVENT_LEVELS) else str(value)
    if isinstance(value, str) and len(value) == 1 and value in "01234":
        return _EVENT_LEVELS[int(value)]
    return text(value, 32)


_OPERATOR_EXACT = {
    "GreaterThan": ">",
    "GreaterThanOrEqual": ">=",
    "LessThan": "<",
    "LowerThan": "<",
    "LessThanOrEqual": "<=",
    "LowerThanOrEqual": "<=",
    "Equals": "=",
    "Greater Than": ">",
    "Less Than": "<",
    "Equal": "=",
    "GreaterOrLessThan": "outside",
}


def operator_symbol(value: object) -> str | None:
    """ ">", "<=", ... for the operator spellings of metric and log alerts, else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    exact = _OPERATOR_EXACT.get(value)
    return exact if exact is not None else _OPERATORS.get(_squash(value))
