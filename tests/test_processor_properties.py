"""Order independence, end to end: any permutation, any duplicates, sequential or concurrent.

For a random set of alert events (stateful alerts with Fired/Resolved, log alerts whose
Resolved has no resolvedAt, Service Health and Resource Health updates) and random
lifecycle settings, three deliveries must leave identical tables (ignoring write times and
which copy of an event arrived first):
1. every event once, in event-time order, straight through the processor (the reference);
2. a random permutation with random duplicates, one message at a time through the host;
3. the same deliveries through the host with 8 messages in flight and no in-process
   serialization, so that the workers race like separate instances and ETags decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.store import groups as store_groups
from tests import alert_factory as af
from tests.workitem_fixtures import WorkItemEnv, diff_snapshots

OTHER_VM = af.VM.replace("vm-web-01", "vm-web-02")


@dataclass(frozen=True)
class Scenario:
    mode: str
    reopen: int
    flap_threshold: int
    flap_window: int
    events: list[dict[str, Any]]  # each once
    deliveries: list[dict[str, Any]]  # a permutation of events plus redelivered copies

    def __repr__(self) -> str:  # what a failing example prints
        def name(a: dict[str, Any]) -> str:
            when = a["resolvedAt"] or a["occurredAt"] or a["receivedAt"]
            stage = (
                (a["lifecycle"] or {}).get("stage")
                or (a["lifecycle"] or {}).get("currentHealthStatus")
                or ""
            )
            return f"{a['originAlertId']}:{a['monitorCondition'][0]}{stage}@{when[11:16]}"

        return (
            f"Scenario(mode={self.mode}, reopen={self.reopen}, flap={self.flap_threshold}/"
            f"{self.flap_window}, deliveries={[name(a) for a in self.deliveries]})"
        )


def event_time(alert: Mapping[str, Any]) -> str:
    if alert["monitorCondition"] == "Resolved":
        return str(alert["resolvedAt"] or alert["receivedAt"])
    return str(alert["occurredAt"] or alert["firedAt"])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    events: list[dict[str, Any]] = []
    minutes = st.integers(0, 150)
    for n in range(draw(st.integers(1, 6))):
        name = f"a{n}"
        start = draw(minutes)
        shape = {
            "rule": draw(st.sampled_from(["CPU high", "Disk full"])),
            "cis": draw(st.sampled_from([(af.VM,), (OTHER_VM,), (af.VM, OTHER_VM)])),
            "severity": draw(st.sampled_from(["Sev1", "Sev3"])),
        }
        shape["rule_id"] = f"/subscriptions/s/rules/{shape['rule']}"
        events.append(af.fired(name, start, **shape))
        end = draw(st.sampled_from(["metric", "log", "open"]))
        duration = draw(st.integers(0, 60))
        if end == "metric":
            events.append(af.resolved(name, start, start + duration, **shape))
        elif end == "log":  # no resolvedAt: the receive time stands in
            events.append(af.resolved(name, start, None, received=start + duration + 0.5, **shape))
    for n in range(draw(st.integers(0, 3))):
        stage = draw(st.sampled_from(["Active", "Active", "Resolved"]))
        events.append(af.service_health("TRK-1", stage, draw(minutes) + n / 100))
    for n in range(draw(st.integers(0, 3))):
        status = draw(st.sampled_from(["Unavailable", "Degraded", "Available"]))
        events.append(af.resource_health(status, draw(minutes) + n / 100))
    copies = [
        af.redelivered(e, draw(st.sampled_from([0.1, 3]))) for e in events if draw(st.booleans())
    ]
    deliveries = draw(st.permutations([*events, *copies]))
    return Scenario(
        mode=draw(st.sampled_from(["alert", "rule"])),
        reopen=draw(st.sampled_from([0, 15, 60])),
        flap_threshold=draw(st.sampled_from([2, 3])),
        flap_window=draw(st.sampled_from([20, 60])),
        events=events,
        deliveries=list(deliveries),
    )


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_any_order_any_duplicates_any_concurrency_same_tables(
    workitem_env: WorkItemEnv, monkeypatch: pytest.MonkeyPatch, scenario: Scenario
) -> None:
    workitem_env.configure(
        scenario.mode, scenario.reopen, scenario.flap_threshold, scenario.flap_window
    )
    workitem_env.wipe()
    workitem_env.process(sorted(scenario.events, key=event_time))
    expected = workitem_env.snapshot()
    assert expected, "the reference run wrote nothing"

    workitem_env.wipe()
    workitem_env.enqueue(scenario.deliveries)
    stats = workitem_env.run_queue(workers=1)
    assert (stats.poisoned, stats.failed_attempts) == (0, 0), stats.errors
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""

    workitem_env.wipe()
    monkeypatch.setattr(store_groups, "SERIALIZE_GROUPS_IN_PROCESS", False)
    workitem_env.enqueue(scenario.deliveries)
    stats = workitem_env.run_queue(workers=8)
    monkeypatch.setattr(store_groups, "SERIALIZE_GROUPS_IN_PROCESS", True)
    assert (stats.poisoned, stats.failed_attempts) == (0, 0), stats.errors
    assert diff_snapshots(expected, workitem_env.snapshot()) == ""
