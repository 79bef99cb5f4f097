"""Advisory (dryRun) gates: measured and reported, never acted on.

The verdict (`advisory_gates`, `combine`, `tally_advisory`) on the real judge functions, then the
state machine driven by the simulated cluster of test_rollout: an advisory Fail neither rolls back
nor holds, and the history and the notices count how often it would have failed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator.analysis import (
    CheckResult,
    advisory_gates,
    combine,
    judge_error_rate,
    judge_metric,
    judge_p99,
    tally_advisory,
)
from modelfleet.operator.api import AdvisoryCheck, AnalysisSpec, MetricCheck
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.notify import facts, notices
from tests.unit.operator.test_rollout import new_revision, world

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
CHECK = {"name": "queue depth", "query": "sum(q)", "max": 5}


def spec(**fields: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate(fields)


def bad_error_rate() -> CheckResult:
    """60 errors in 1,000 requests against a 1 % limit: surely above it."""
    return judge_error_rate(60, 1000, 0.01, 100)


# --- which checks are advisory ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {}),
        ({"dryRun": ["errorRate"]}, {"error rate": "errorRate"}),
        (
            {"dryRun": ["p99", "p99Regression", "drift", "accuracy"]},
            {
                "p99": "p99",
                "p99 regression": "p99Regression",
                "prediction drift": "drift",
                "live accuracy": "accuracy",
            },
        ),
        ({"metrics": [{**CHECK, "dryRun": True}]}, {"queue depth": "queue depth"}),
        ({"metrics": [CHECK]}, {}),
        # the replay's own results follow the paired checks only when every one configured is dry
        (
            {"minAgreement": 0.99, "replay": {"liveSample": True}, "dryRun": ["agreement"]},
            {"agreement": "agreement", "replay": "replay"},
        ),
        (
            {
                "minAgreement": 0.99,
                "maxScoreDelta": 0.1,
                "replay": {"liveSample": True},
                "dryRun": ["agreement"],
            },
            {"agreement": "agreement"},
        ),
    ],
)
def test_advisory_gates_name_the_checks_they_cover(
    fields: dict[str, Any], expected: dict[str, str]
) -> None:
    assert advisory_gates(spec(**fields)) == expected


def test_dry_run_refuses_an_unknown_gate_name() -> None:
    with pytest.raises(ValueError, match="dryRun"):
        spec(dryRun=["latency"])


# --- the verdict ----------------------------------------------------------------------------------


def test_an_advisory_fail_decides_nothing_but_is_reported_with_its_value_and_limit() -> None:
    results = [bad_error_rate(), judge_p99(12.0, 1000, 200, 100)]
    acted = combine(results, NOW, requests=1000)
    assert acted.phase == "Fail"  # the same looks, not advisory: rolled back
    advisory = combine(
        results, NOW, requests=1000, advisory=advisory_gates(spec(dryRun=["errorRate"]))
    )
    assert advisory.phase == "Pass"
    assert advisory.error_rate == pytest.approx(0.06)  # still measured, still in status
    assert advisory.advisory == (
        AdvisoryCheck(gate="errorRate", phase="Fail", message=results[0].message),
    )
    assert advisory.message.startswith("p99 12 ms ≤ 200 ms over 1,000 requests (advisory")
    assert "advisory, not acted on: error rate 6.0 %" in advisory.message
    assert "> 1.0 % over 1,000 requests" in advisory.message
    assert advisory.to_status().advisory[0].phase == "Fail"


@pytest.mark.parametrize("phase", ["Inconclusive", "Error"])
def test_an_advisory_gate_never_holds(phase: str) -> None:
    results = [
        CheckResult("queue depth", phase, "queue depth: no data"),  # type: ignore[arg-type]
        judge_p99(12.0, 1000, 200, 100),
    ]
    gates = advisory_gates(spec(metrics=[{**CHECK, "dryRun": True}]))
    measured = combine(results, NOW, advisory=gates)
    assert measured.phase == "Pass"
    assert "advisory" not in measured.message  # only would-be failures are named in the message
    assert [check.phase for check in measured.advisory] == [phase]


def test_an_advisory_metric_fail_beside_an_acting_one() -> None:
    gates = advisory_gates(spec(metrics=[{**CHECK, "dryRun": True}, {**CHECK, "name": "backlog"}]))
    results = [
        judge_metric(MetricCheck.model_validate(CHECK), 9),
        judge_metric(MetricCheck.model_validate({**CHECK, "name": "backlog"}), 9),
    ]
    measured = combine(results, NOW, advisory=gates)
    assert measured.phase == "Fail"
    assert measured.message.startswith("backlog = 9 > 5")
    assert "advisory, not acted on: queue depth = 9 > 5" in measured.message


def test_every_gate_advisory_passes_and_says_so() -> None:
    gates = advisory_gates(spec(dryRun=["errorRate", "p99"]))
    measured = combine([bad_error_rate(), judge_p99(900, 1000, 200, 100)], NOW, advisory=gates)
    assert measured.phase == "Pass"
    assert measured.message.startswith("every gate advisory (advisory, not acted on: error rate")
    assert "p99 900 ms > 200 ms" in measured.message


def test_tally_counts_looks_and_would_be_failures_per_gate() -> None:
    fail = AdvisoryCheck(gate="errorRate", phase="Fail", message="error rate 6.0 % > 1.0 %")
    passing = AdvisoryCheck(gate="p99", phase="Pass", message="p99 12 ms ≤ 200 ms")
    tallies = tally_advisory([], [fail, passing], "2026-12-06T02:00:00Z")
    tallies = tally_advisory(tallies, [fail.model_copy(update={"message": "later"})], "T2")
    tallies = tally_advisory(tallies, [passing], "T3")
    by_gate = {tally.gate: tally for tally in tallies}
    assert by_gate["errorRate"].looks == 2
    assert by_gate["errorRate"].would_fail == 2
    assert by_gate["errorRate"].first_failed_at == "2026-12-06T02:00:00Z"
    assert by_gate["errorRate"].last_failure == "later"
    assert (by_gate["p99"].looks, by_gate["p99"].would_fail) == (2, 0)
    assert by_gate["p99"].first_failed_at is None


# --- the state machine ----------------------------------------------------------------------------


def advisory_fail(now: datetime) -> Measurement:
    """What `combine` makes of a 6 % canary whose error-rate gate is advisory."""
    return combine(
        [bad_error_rate(), judge_p99(12.0, 1000, 200, 100)],
        now,
        requests=1000,
        advisory=advisory_gates(spec(dryRun=["errorRate"])),
    )


def test_an_advisory_fail_is_promoted_and_the_history_counts_its_would_be_failures() -> None:
    w = new_revision(world().deployed())
    w.analyzer = advisory_fail
    messages: list[str] = []
    for _ in range(100):
        w.step()
        messages.append(w.status.message or "")
        w.now += timedelta(seconds=5)
        if w.status.canary is None:
            break
    assert w.weights == [0, 10, 25, 50, 100, 0]
    assert w.status.phase == "Healthy"
    assert w.status.active_revision == "r2"
    entry = w.status.history[0]
    assert entry.outcome == "Promoted"
    assert len(entry.advisory) == 1
    tally = entry.advisory[0]
    assert tally.gate == "errorRate"
    assert tally.looks == tally.would_fail == w.looks
    assert tally.first_failed_at is not None
    assert "error rate 6.0 %" in (tally.last_failure or "")
    assert f"advisory errorRate would have failed {w.looks} of {w.looks} looks" in entry.message
    assert any(
        "passing (advisory, not acted on: error rate 6.0 %" in message for message in messages
    )


def test_the_promotion_notice_carries_the_advisory_counts() -> None:
    w = new_revision(world().deployed())
    w.analyzer = advisory_fail
    told = []
    for _ in range(100):
        old = w.status
        look = advisory_fail(w.now)
        w.analyzer = lambda now, look=look: look  # type: ignore[misc]
        transition = w.step()
        told += notices("ml", "fraud", old, transition, look, w.now)
        w.now += timedelta(seconds=5)
        if w.status.canary is None:
            break
    promoted = next(notice for notice in told if notice.event == "Promoted")
    assert promoted.advisory[0].would_fail == w.looks
    assert promoted.data()["advisory"][0]["wouldFail"] == w.looks
    assert promoted.analysis["advisory"][0]["gate"] == "errorRate"
    assert ("Advisory gates", f"errorRate would have failed {w.looks} of {w.looks} looks") in facts(
        promoted
    )
    started = next(notice for notice in told if notice.event == "Started")
    assert started.advisory == ()
