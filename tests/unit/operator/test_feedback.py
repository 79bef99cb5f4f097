"""Ground truth in the operator (operator/feedback.py, feedback_read.py): label counts summed per
slot and revision, the minAccuracyDelta gate's judgement (and its false-fail rate over repeated
looks), the gate through a scripted Prometheus, and live accuracy in status.monitoring and on the
operator's gauges through the monitoring loop."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from modelfleet.operator.api import AnalysisSpec
from modelfleet.operator.feedback import (
    FeedbackCounts,
    accuracy_difference_interval,
    feedback_status,
    judge_accuracy,
    sum_feedback,
)
from modelfleet.operator.feedback_read import PrometheusFeedbackReader
from modelfleet.operator.monitor_loop import MonitorDeps
from modelfleet.operator.prometheus import PrometheusError
from tests.unit.operator.test_monitor_loop import FakeReader, Loop, _counts
from tests.unit.operator.test_prometheus import T0, _matrix, _measure, _vector, healthy_prometheus


def _classifier(correct: float, rows: float) -> FeedbackCounts:
    return FeedbackCounts(rows=rows, correct=correct, log_loss=rows * 0.3)


def test_sum_feedback_adds_pods_per_slot_and_revision() -> None:
    def series(name: str, pod: str, slot: str = "blue", revision: str = "r1") -> dict[str, str]:
        return {"__name__": name, "pod": pod, "slot": slot, "revision": revision}

    gains = [
        (series("modelfleet_feedback_rows_total", "a"), 100.0),
        (series("modelfleet_feedback_rows_total", "b"), 50.0),
        (series("modelfleet_feedback_correct_total", "a"), 90.0),
        (series("modelfleet_feedback_correct_total", "b"), 40.0),
        (series("modelfleet_feedback_log_loss_sum", "a"), 30.0),
        (series("modelfleet_feedback_rows_total", "c", "green", "r2"), 10.0),
        (series("modelfleet_feedback_abs_error_sum", "c", "green", "r2"), 5.0),
        (series("modelfleet_requests_total", "a"), 1e6),  # not a label counter
    ]
    summed = sum_feedback(gains)
    assert summed == {
        ("blue", "r1"): FeedbackCounts(rows=150, correct=130, log_loss=30),
        ("green", "r2"): FeedbackCounts(rows=10, abs_error=5),
    }
    assert summed["blue", "r1"].accuracy == pytest.approx(130 / 150)
    assert summed["blue", "r1"].mean_log_loss == pytest.approx(0.2)
    assert summed["blue", "r1"].mae is None
    assert summed["green", "r2"].mae == pytest.approx(0.5)
    assert summed["green", "r2"].accuracy is None


def test_feedback_status_lists_the_active_slot_first_even_without_labels() -> None:
    counts = {
        ("green", "r2"): FeedbackCounts(rows=40, correct=30, log_loss=8),
        ("blue", "r0"): FeedbackCounts(rows=0, correct=0),
    }
    figures = feedback_status(counts, ("blue", "r1"))
    assert [(f.slot, f.revision, f.rows) for f in figures] == [
        ("blue", "r1", 0),
        ("green", "r2", 40),
    ]
    assert figures[0].accuracy is None
    assert figures[1].accuracy == 0.75
    assert figures[1].log_loss == 0.2


def test_the_interval_holds_its_difference() -> None:
    lower, upper = accuracy_difference_interval((900, 1000), (9000, 10000), z=1.96)
    assert lower < 0 < upper
    assert upper - lower == pytest.approx(2 * 1.96 * (0.09 / 1000 + 0.09 / 10000) ** 0.5, rel=0.1)
    lower, upper = accuracy_difference_interval((800, 1000), (9000, 10000))
    assert upper < -0.05  # 10 points worse over 1,000 rows is sure


@pytest.mark.parametrize(
    ("canary", "stable", "min_delta", "phase", "words"),
    [
        ((900, 1000), (9000, 10000), -0.02, "Pass", "≥ −2.0 pt over 1,000 labelled canary rows"),
        ((800, 1000), (9000, 10000), -0.02, "Fail", "live accuracy 80.0 % vs stable 90.0 %: −10.0"),
        ((880, 1000), (9000, 10000), 0.0, "Inconclusive", "(not yet significant)"),
        ((20, 100), (9000, 10000), -0.02, "Inconclusive", "fewer than 200 labelled canary rows"),
        ((900, 1000), (90, 100), -0.02, "Inconclusive", "fewer than 200 labelled stable rows"),
        ((950, 1000), (9000, 10000), 0.02, "Pass", "≥ +2.0 pt"),
    ],
)
def test_judge_accuracy(
    canary: tuple[int, int],
    stable: tuple[int, int],
    min_delta: float,
    phase: str,
    words: str,
) -> None:
    result = judge_accuracy(
        _classifier(*canary), _classifier(*stable), min_delta, min_rows=200, weight=25
    )
    assert result is not None
    assert result.phase == phase, result.message
    assert words in result.message
    assert result.measured()["labelled_rows"] == canary[1]
    assert result.measured()["accuracy"] == pytest.approx(canary[0] / canary[1])


def test_without_labels_or_accuracy_the_gate_never_passes() -> None:
    none = judge_accuracy(FeedbackCounts(), _classifier(900, 1000), -0.02, 200, 25)
    assert none is not None
    assert (none.phase, none.message) == (
        "Inconclusive",
        "no labels for canary answers since the step",
    )
    regressor = FeedbackCounts(rows=500, abs_error=40)
    result = judge_accuracy(regressor, regressor, -0.02, 200, 25)
    assert result is not None
    assert result.phase == "Inconclusive"
    assert "needs a classifier" in result.message
    lonely = judge_accuracy(_classifier(900, 1000), FeedbackCounts(), -0.02, 200, 25)
    assert lonely is not None
    assert lonely.phase == "Inconclusive"
    assert "no stable labels" in lonely.message


def test_at_100_percent_without_new_stable_labels_the_gate_steps_aside() -> None:
    assert judge_accuracy(_classifier(900, 1000), FeedbackCounts(), -0.02, 200, 100) is None
    kept = judge_accuracy(_classifier(700, 1000), _classifier(900, 1000), -0.02, 200, 100)
    assert kept is not None
    assert kept.phase == "Fail"


def test_equal_models_are_never_failed_over_a_step_of_looks() -> None:
    """1,000 canaries as accurate as the stable (90 %), looked at 60 times as labels accumulate
    (10 canary and 90 stable labels per look): no Fail; a canary 10 points worse fails in most."""
    rng = np.random.default_rng(7)

    def fails(canary_accuracy: float) -> int:
        failed = 0
        for _ in range(1000):
            canary = np.cumsum(rng.random(600) < canary_accuracy)
            stable = np.cumsum(rng.random(5400) < 0.9)
            for look in range(1, 61):
                rows_c, rows_s = 10 * look, 90 * look
                result = judge_accuracy(
                    _classifier(float(canary[rows_c - 1]), rows_c),
                    _classifier(float(stable[rows_s - 1]), rows_s),
                    -0.02,
                    200,
                    25,
                )
                if result is not None and result.phase == "Fail":
                    failed += 1
                    break
        return failed

    assert fails(0.9) == 0
    assert fails(0.8) > 950


# --- the gate through a scripted Prometheus -------------------------------------------------


def labelled_prometheus(canary: tuple[int, int], stable: tuple[int, int]) -> Any:
    """A healthy canary whose labels (correct, rows) arrived since the step began, on top of the
    stable's older labels (1,000 rows, 900 right, before the step)."""
    requests = healthy_prometheus()

    def answer(query: str, at: float) -> dict[str, Any]:
        if "modelfleet_feedback" not in query:
            return requests(query, at)
        green = 'slot="green"' in query
        slot, revision = ("green", "r2") if green else ("blue", "r1")
        before = (0, 0) if green else (900, 1000)
        correct, rows = canary if green else stable
        after = (before[0] + correct, before[1] + rows)
        labels = {"pod": "a", "slot": slot, "revision": revision, "namespace": "ml"}
        names = ("modelfleet_feedback_correct_total", "modelfleet_feedback_rows_total")
        if query.endswith("s]"):
            return _matrix(
                *(
                    ({"__name__": name, **labels}, [(T0 + 10, new / 2), (T0 + 20, float(new))])
                    for name, new in zip(names, after, strict=True)
                )
            )
        if green:
            return _vector()
        return _vector(
            *(({"__name__": n, **labels}, float(v)) for n, v in zip(names, before, strict=True))
        )

    return answer


@pytest.mark.parametrize(
    ("canary", "phase"),
    [((450, 500), "Pass"), ((350, 500), "Fail"), ((45, 50), "Inconclusive")],
)
def test_the_accuracy_gate_counts_labels_since_the_step(
    canary: tuple[int, int], phase: str
) -> None:
    spec = AnalysisSpec(min_accuracy_delta=-0.02)
    measurement, queries = _measure(labelled_prometheus(canary, (4500, 5000)), spec)
    assert measurement.phase == phase, measurement.message
    assert measurement.labelled_rows == canary[1]
    assert measurement.accuracy == pytest.approx(canary[0] / canary[1])
    assert measurement.stable_accuracy == pytest.approx(0.9)  # only the labels since the step
    assert any('{__name__=~"modelfleet_feedback_rows_total|' in q for q in queries)
    status = measurement.to_status()
    assert status.labelled_rows == canary[1]


def test_without_minaccuracydelta_labels_are_not_queried() -> None:
    _, queries = _measure(healthy_prometheus())
    assert not any("modelfleet_feedback" in q for q in queries)


# --- the reader and the monitoring loop -----------------------------------------------------


def test_the_reader_counts_every_slot_of_the_deployment_exactly() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        seen.append(query)
        blue = {"__name__": "modelfleet_feedback_rows_total", "slot": "blue", "revision": "r1"}
        right = {**blue, "__name__": "modelfleet_feedback_correct_total"}
        if query.endswith("[3600s]"):
            data = _matrix((blue, [(T0 + 5, 150.0), (T0 + 9, 20.0)]), (right, [(T0 + 9, 18.0)]))
        else:
            data = _vector((blue, 100.0))  # `right` was born inside the window
        return httpx.Response(200, json={"status": "success", "data": data})

    async def run() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            reader = PrometheusFeedbackReader(client, "http://prometheus:9090/")
            return await reader.read("ml", "fraud", 3600, T0 + 10)

    counts = asyncio.run(run())
    assert counts == {("blue", "r1"): FeedbackCounts(rows=70.0, correct=18.0)}  # 50 + a reset to 20
    assert seen[0].startswith('{__name__=~"modelfleet_feedback_rows_total|')
    assert seen[0].endswith(',namespace="ml",deployment="fraud"}')


class FakeFeedbackReader:
    def __init__(self, *answers: dict[tuple[str, str], FeedbackCounts] | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str, float]] = []

    async def read(
        self, namespace: str, name: str, window_s: float, now: float
    ) -> dict[tuple[str, str], FeedbackCounts]:
        self.asked.append((namespace, name, window_s))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class LabelledLoop(Loop):
    def __init__(self, reader: FakeReader, labels: FakeFeedbackReader) -> None:
        super().__init__(reader)
        self.labels = labels

    def deps(self, http: httpx.AsyncClient) -> MonitorDeps:
        deps = super().deps(http)
        deps.feedback_reader_for = lambda url: self.labels
        return deps

    def accuracy(self, slot: str, revision: str) -> float | None:
        labels = {"namespace": "ml", "deployment": "fraud", "slot": slot, "revision": revision}
        return self.metrics.registry.get_sample_value("modelfleet_monitoring_accuracy", labels)


def test_live_accuracy_falls_in_status_and_on_the_gauges() -> None:
    good = {("blue", "rev1"): FeedbackCounts(rows=1000, correct=930, log_loss=180)}
    worse = {
        ("blue", "rev1"): FeedbackCounts(rows=2000, correct=1500, log_loss=900),
        ("green", "rev0"): FeedbackCounts(rows=10, correct=9, log_loss=1),
    }
    labels = FakeFeedbackReader(good, worse, PrometheusError("unreachable"), {})
    loop = LabelledLoop(FakeReader(_counts(6000)), labels)

    loop.run()
    feedback = loop.body["status"]["monitoring"]["feedback"]
    assert feedback == [
        {"slot": "blue", "revision": "rev1", "rows": 1000, "accuracy": 0.93, "logLoss": 0.18}
    ]
    assert labels.asked == [("ml", "fraud", 60.0)]  # spec.monitoring.window
    assert loop.accuracy("blue", "rev1") == 0.93
    assert loop.body["status"]["monitoring"]["features"]  # the drift figures are still there

    loop.run()
    feedback = loop.body["status"]["monitoring"]["feedback"]
    assert [(f["slot"], f["accuracy"]) for f in feedback] == [("blue", 0.75), ("green", 0.9)]
    assert loop.accuracy("blue", "rev1") == 0.75
    assert loop.accuracy("green", "rev0") == 0.9

    loop.run()  # Prometheus down for the labels: the last figures stay
    assert loop.body["status"]["monitoring"]["feedback"][0]["accuracy"] == 0.75

    loop.run()  # no labels in the window: rows 0, no accuracy, no gauge
    assert loop.body["status"]["monitoring"]["feedback"] == [
        {"slot": "blue", "revision": "rev1", "rows": 0}
    ]
    assert loop.accuracy("blue", "rev1") is None
    assert loop.accuracy("green", "rev0") is None
    rows = loop.metrics.registry.get_sample_value(
        "modelfleet_monitoring_labelled_rows",
        {"namespace": "ml", "deployment": "fraud", "slot": "blue", "revision": "rev1"},
    )
    assert rows == 0
    loop.metrics.forget_monitoring("ml", "fraud")
    assert "modelfleet_monitoring_labelled_rows{" not in _exposition(loop)


def _exposition(loop: Loop) -> str:
    from prometheus_client import generate_latest

    return generate_latest(loop.metrics.registry).decode()
