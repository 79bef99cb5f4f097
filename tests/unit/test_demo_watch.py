"""The demo's step records and lines (hack/modelfleet_dev/demo/watch.py), pure: status snapshots in, events out."""

from __future__ import annotations

from typing import Any

import pytest
from modelfleet_dev.demo.watch import RolloutWatch, describe, measured_error_rate


def _status(weight: int, measured_at: str | None = None, **analysis: Any) -> dict[str, Any]:
    canary = {"version": "v2", "revision": "abc", "weight": weight, "stepIndex": 0}
    if measured_at:
        canary["analysis"] = {"measuredAt": measured_at, **analysis}
    return {"phase": "Progressing", "canary": canary}


def test_steps_are_timed_from_their_first_weight_to_the_next() -> None:
    watch = RolloutWatch("v2", started=0.0, phase="Healthy")
    assert watch.observe(_status(0), 1.0) == ["phase Progressing"]  # warm-up is not a step
    assert watch.observe(_status(10), 5.0) == ["weight 10 % (step 1)"]
    events = watch.observe(_status(10, "t1", phase="Pass", errorRate=0.0, requests=80), 8.0)
    assert events == ["analysis Pass: error rate 0.0 %, 80 requests"]
    assert watch.observe(_status(10, "t1", phase="Pass"), 9.0) == []  # same measurement
    watch.observe(_status(25), 20.0)
    watch.observe({"phase": "Healthy", "history": [{"version": "v2"}]}, 36.0)
    watch.finish(36.0)

    assert watch.weights() == [10, 25]
    assert [step.seconds(99.0) for step in watch.steps] == [15.0, 16.0]
    assert watch.steps[0].analysis["requests"] == 80
    assert watch.steps_seconds() == 31.0
    assert watch.revision == "abc"


def test_another_versions_canary_is_not_recorded() -> None:
    watch = RolloutWatch("v3", started=0.0, phase="Progressing")
    assert watch.observe(_status(10), 1.0) == []
    assert watch.steps == []


def test_describe_keeps_only_the_reason_of_an_inconclusive_measurement() -> None:
    analysis = {
        "phase": "Inconclusive",
        "errorRate": 0.0,
        "errorRateLower": 0.0,
        "errorRateUpper": 0.3,
        "p99Ms": 20.04,
        "requests": 13,
        "message": "error rate 0.0 % [0.0–30.0 %] vs 1.0 % over 13 requests (fewer than 50 "
        "requests); p99 20 ms vs 500 ms over 13 requests (fewer than 50 requests)",
    }
    assert describe(analysis) == (
        "Inconclusive: error rate 0.0 % [0.0–30.0 %], p99 20.0 ms, 13 requests "
        "(fewer than 50 requests)"
    )
    assert describe({"phase": "Error", "message": "Prometheus unreachable"}) == (
        "Error (Prometheus unreachable)"
    )


@pytest.mark.parametrize(
    ("message", "rate"),
    [
        ("error rate 4.7 % [1.0–13.3 %] > 1.0 % over 169 requests at 10%", 0.047),
        ("error rate 0.05 % [0.00–1.1 %] > 0.01 % over 9 requests", 0.0005),
        ("p99 1,016 ms > 500 ms over 61 requests at 10%", None),
    ],
)
def test_the_measured_rate_is_read_from_the_condition_message(
    message: str, rate: float | None
) -> None:
    assert measured_error_rate(message) == (pytest.approx(rate) if rate is not None else None)
