"""The conditions say TrafficNotAsWeighted when the measured share stopped the canary: held
(Progressing) while it gets far less than its weight, rolled back (Degraded) when it got far more;
any other hold or rollback keeps its own reason. The machine is the real one (test_rollout's World);
the measurements carry the request-share rule's real messages."""

from __future__ import annotations

from datetime import datetime

import pytest

from modelfleet.operator import reasons
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.request_share import judge_request_share
from modelfleet.operator.status import summarize
from tests.unit.operator.test_rollout import World, measurement, new_revision, world

STARVED = judge_request_share(0, 400, 10, 0.10, min_requests=100)
FLOODED = judge_request_share(1000, 0, 10, 0.10, min_requests=100, splits_by_weight=True)


def _look(phase: str, message: str) -> object:
    def look(now: datetime) -> Measurement:
        return Measurement(phase=phase, message=message, measured_at=now)  # type: ignore[arg-type]

    return look


def _conditions(w: World) -> dict[str, tuple[str, str, str]]:
    summary = summarize(w.spec, w.status, w.observations(), {}, "http://fraud", 2, w.now)
    return {c.type: (c.status, c.reason, c.message) for c in summary.conditions}


def _canary_under(analyzer: object) -> World:
    w = new_revision(world().deployed())
    w.analyzer = analyzer  # type: ignore[assignment]
    w.run(60)
    return w


def test_a_canary_the_router_starves_is_held_as_traffic_not_as_weighted() -> None:
    w = _canary_under(_look("Inconclusive", STARVED.message))
    status, reason, message = _conditions(w)[reasons.PROGRESSING]
    assert (w.status.phase, status, reason) == ("Progressing", "True", "TrafficNotAsWeighted")
    assert message.startswith("holding at 10%: traffic is not reaching the canary: 0.0 %")


def test_a_canary_the_router_floods_is_rolled_back_as_traffic_not_as_weighted() -> None:
    w = _canary_under(_look("Fail", FLOODED.message))
    status, reason, message = _conditions(w)[reasons.DEGRADED]
    assert (w.status.phase, status, reason) == ("Degraded", "True", "TrafficNotAsWeighted")
    assert message.startswith("traffic to the canary far exceeds its weight: 100.0 %")
    warnings = [reason for kind, reason, _ in w.events if kind == "Warning"]
    assert warnings == [reasons.TRAFFIC_NOT_AS_WEIGHTED]  # the Event says so too


@pytest.mark.parametrize(
    ("phase", "kind", "reason"),
    [
        ("Inconclusive", reasons.PROGRESSING, reasons.ROLLOUT_IN_PROGRESS),
        ("Fail", reasons.DEGRADED, reasons.ROLLED_BACK),
    ],
)
def test_other_holds_and_rollbacks_keep_their_reasons(phase: str, kind: str, reason: str) -> None:
    w = _canary_under(lambda now: measurement(phase, now))
    assert _conditions(w)[kind][1] == reason
    if phase == "Fail":
        assert ("Warning", reasons.ANALYSIS_FAILED) in [(t, r) for t, r, _ in w.events]
