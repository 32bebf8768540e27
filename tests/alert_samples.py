"""The published alert samples in samples/ (copied verbatim, sources in samples/README.md),
for tests and benchmarks. Importable without pytest (the benchmarks use it too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "samples"

# Essentials for wrapping an `alertContext` fragment: (monitoringService, signalType).
CONTEXT_ESSENTIALS: dict[str, tuple[str, str]] = {
    "context-activity-log-administrative": ("Activity Log - Administrative", "Activity Log"),
    "context-activity-log-autoscale": ("Activity Log - Autoscale", "Activity Log"),
    "context-activity-log-policy": ("Activity Log - Policy", "Activity Log"),
    "context-activity-log-security": ("Activity Log - Security", "Activity Log"),
    "context-application-insights": ("Application Insights", "Log"),
    "context-log-alerts-v2": ("Log Alerts V2", "Log"),
    "context-log-analytics": ("Log Analytics", "Log"),
    "context-metric-availability": ("Platform", "Metric"),
    "context-metric-dynamic": ("Platform", "Metric"),
    "context-metric-static": ("Platform", "Metric"),
    "context-prometheus": ("Prometheus", "Metric"),
    "context-resource-health": ("Resource Health", "Activity Log"),
    "context-service-health": ("ServiceHealth", "Activity Log"),
    "context-service-health-numeric-enums": ("ServiceHealth", "Activity Log"),
    "context-simple-log-alert": ("Simple Log Alert", "Log"),
}

WRAP_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
WRAP_TARGET = (
    f"/subscriptions/{WRAP_SUBSCRIPTION}/resourceGroups/rg-samples"
    "/providers/Microsoft.Compute/virtualMachines/vm-samples"
)


def samples_dir() -> Path:
    return SAMPLES_DIR


def _names(prefix: str | None = None) -> list[str]:
    names = sorted(p.stem for p in samples_dir().glob("*.json"))
    if prefix is None:
        return [n for n in names if not n.startswith(("context-", "noncommon-"))]
    return [n for n in names if n.startswith(prefix)]


def envelope_samples() -> list[str]:
    """Full common-schema envelopes (schemaId + data)."""
    return _names()


def context_samples() -> list[str]:
    """`alertContext`-only fragments."""
    return _names("context-")


def noncommon_samples() -> list[str]:
    """Payloads sent when the common schema is off."""
    return _names("noncommon-")


def load_bytes(name: str) -> bytes:
    return (samples_dir() / f"{name}.json").read_bytes()


def load(name: str) -> Any:
    return json.loads(load_bytes(name))


def wrap_context(name: str) -> dict[str, Any]:
    """A full envelope around a context fragment, essentials matching its service."""
    if name not in CONTEXT_ESSENTIALS:
        raise KeyError(
            f"No essentials known for {name}: add its (monitoringService, signalType) to "
            "CONTEXT_ESSENTIALS in tests/alert_samples.py"
        )
    service, signal = CONTEXT_ESSENTIALS[name]
    fragment = load(name)
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{WRAP_SUBSCRIPTION}/providers/"
                f"Microsoft.AlertsManagement/alerts/{name}",
                "alertRule": f"rule-{name}",
                "severity": "Sev3",
                "signalType": signal,
                "monitorCondition": "Fired",
                "monitoringService": service,
                "alertTargetIDs": [WRAP_TARGET],
                "originAlertId": f"origin-{name}",
                "firedDateTime": "2024-01-02T03:04:05.678Z",
                "description": f"Wrapped {name}",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": fragment["alertContext"],
            "customProperties": None,
        },
    }


def all_payloads() -> dict[str, bytes]:
    """Every common-schema sample as request bytes: envelopes and wrapped fragments."""
    out = {name: load_bytes(name) for name in envelope_samples()}
    for name in context_samples():
        out[name] = json.dumps(wrap_context(name), indent=2).encode()
    return out
