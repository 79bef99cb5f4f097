"""monitor_read: the active slot's window read from a fake Prometheus (httpx.MockTransport) and
summed exactly over pods, the baseline's gauges taken once."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from typing import Any

import httpx
import pytest

from modelfleet.operator.monitor_read import (
    BASELINE_INPUT_SHARE,
    BASELINE_LOADED,
    BASELINE_MISSING,
    BASELINE_PREDICTION_SHARE,
    BASELINE_ROWS,
    BASELINE_STDDEV,
    INPUT_BUCKETS,
    INPUT_MISSING,
    INPUT_ROWS,
    PrometheusWindowReader,
    Slot,
    SlotCounts,
)
from modelfleet.operator.prometheus import PrometheusError
from modelfleet.operator.prometheus_counts import PREDICTION_BUCKETS_METRIC

NOW = 1_800_000_000.0
WINDOW = 60.0
SINCE = NOW - WINDOW
TARGET = Slot("ml", "fraud", "blue", "abc123")
IDENTITY = {
    "namespace": "ml",
    "deployment": "fraud",
    "slot": "blue",
    "revision": "abc123",
}


def _series(name: str, pod: str, **labels: str) -> dict[str, str]:
    return {"__name__": name, **IDENTITY, "pod": pod, **labels}


# (labels, value at the window's start or None, samples in the window)
Counter = tuple[dict[str, str], float | None, list[float]]
COUNTERS: list[Counter] = [
    # pod a: 100 rows before the window, 300 more in it
    (_series(INPUT_ROWS, "a"), 100.0, [200.0, 400.0]),
    # pod b restarted inside the window: 50 before the reset, then 0 → 30
    (_series(INPUT_ROWS, "b"), 1000.0, [1050.0, 10.0, 30.0]),
    (_series(INPUT_BUCKETS, "a", feature="f0", le="-0.5"), 10.0, [40.0]),
    (_series(INPUT_BUCKETS, "a", feature="f0", le="+Inf"), 90.0, [290.0]),
    # pod b's series of f0 appear inside the window: counted from zero
    (_series(INPUT_BUCKETS, "b", feature="f0", le="-0.5"), None, [5.0, 20.0]),
    (_series(INPUT_BUCKETS, "b", feature="f0", le="+Inf"), None, [40.0, 75.0]),
    (_series(INPUT_MISSING, "a", feature="f0"), 0.0, [0.0, 7.0]),
    (_series(PREDICTION_BUCKETS_METRIC, "a", output="probabilities[1]", le="0.5"), 3.0, [9.0]),
    (_series(PREDICTION_BUCKETS_METRIC, "a", output="probabilities[1]", le="+Inf"), 3.0, [13.0]),
]
GAUGES: list[tuple[dict[str, str], float]] = [
    (_series(BASELINE_LOADED, "a"), 1.0),
    (_series(BASELINE_LOADED, "b"), 0.0),  # a pod whose baseline failed: another pod has it
    (_series(BASELINE_LOADED, "c"), 1.0),  # a pod that has counted nothing yet
    (_series(BASELINE_ROWS, "a"), 5000.0),
    (_series(BASELINE_INPUT_SHARE, "a", feature="f0", le="-0.5"), 0.3),
    (_series(BASELINE_INPUT_SHARE, "b", feature="f0", le="-0.5"), 0.3),
    (_series(BASELINE_INPUT_SHARE, "a", feature="f0", le="+Inf"), 1.0),
    (_series(BASELINE_MISSING, "a", feature="f0"), 0.01),
    (_series(BASELINE_STDDEV, "a", feature="f0"), 2.0),
    (_series(BASELINE_STDDEV, "b", feature="f0"), float("nan")),
    (_series(BASELINE_PREDICTION_SHARE, "a", output="probabilities[1]", le="0.5"), 0.6),
]


class FakePrometheus:
    """Answers the reader's queries (a counter at the window's start, its last value, its resets,
    its raw samples; the gauges) from COUNTERS and GAUGES; records what was asked."""

    def __init__(self, status: int = 200, counters: list[Counter] | None = None) -> None:
        self.queries: list[tuple[str, float]] = []
        self.status = status
        self.counters = COUNTERS if counters is None else counters

    def handle(self, request: httpx.Request) -> httpx.Response:
        query, at = request.url.params["query"], float(request.url.params["time"])
        self.queries.append((query, at))
        if self.status != 200:
            return httpx.Response(self.status, json={"status": "error", "error": "overloaded"})
        if "modelfleet_baseline" in query:
            return _answer("vector", [{"metric": m, "value": [at, str(v)]} for m, v in GAUGES])
        function, name = re.fullmatch(r"(?:(\w+)\()?(\w+)\{.*", query).groups()  # type: ignore[union-attr]
        mine = [(m, start, samples) for m, start, samples in self.counters if m["__name__"] == name]
        unnamed = [
            ({k: v for k, v in m.items() if k != "__name__"}, start, samples)
            for m, start, samples in mine
        ]
        if function == "last_over_time":
            values = [{"metric": m, "value": [at, str(samples[-1])]} for m, _, samples in unnamed]
            return _answer("vector", values)
        if function == "resets":
            seconds = float(re.findall(r"\[(\d+)s\]", query)[0])

            def reach(start: float | None) -> list[float | None]:
                return [start] if seconds > WINDOW else []

            counted = [
                {"metric": m, "value": [at, str(_resets([*reach(start), *samples]))]}
                for m, start, samples in unnamed
            ]
            return _answer("vector", counted)
        if query.endswith("s]"):
            step = WINDOW / 4
            result = [
                {
                    "metric": m,
                    "values": [[SINCE + step * (i + 1), str(v)] for i, v in enumerate(samples)],
                }
                for m, _, samples in mine
            ]
            return _answer("matrix", result)
        start = [{"metric": m, "value": [at, str(v)]} for m, v, _ in mine if v is not None]
        return _answer("vector", start)

    def raw_reads(self) -> list[str]:
        return [query for query, _ in self.queries if query.endswith("s]") and "(" not in query]


def _resets(values: list[float | None]) -> int:
    known = [value for value in values if value is not None]
    return sum(1 for before, after in itertools.pairwise(known) if after < before)


def _answer(kind: str, result: list[Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"status": "success", "data": {"resultType": kind, "result": result}}
    )


def _read(prometheus: FakePrometheus) -> SlotCounts:
    async def go() -> SlotCounts:
        async with httpx.AsyncClient(transport=httpx.MockTransport(prometheus.handle)) as client:
            reader = PrometheusWindowReader(client, "http://prometheus:9090/")
            return await reader.read(TARGET, WINDOW, NOW)

    return asyncio.run(go())


def test_counters_are_counted_exactly_over_the_window_and_summed_over_pods() -> None:
    counts = _read(FakePrometheus())
    assert counts.rows == 300 + (50 + 10 + 20)  # pod b's reset counted from zero
    assert counts.inputs == {"f0": {-0.5: 30 + 20, math.inf: 200 + 75}}
    assert counts.missing == {"f0": 7}
    assert counts.outputs == {"probabilities[1]": {0.5: 6, math.inf: 10}}
    assert counts.pods == 3  # pod c reports only its gauges


def test_the_baseline_gauges_are_read_once_whatever_the_pods() -> None:
    baseline = _read(FakePrometheus()).baseline
    assert baseline.loaded  # one pod holds it
    assert baseline.rows == 5000
    assert baseline.input_shares == {"f0": {-0.5: 0.3, math.inf: 1.0}}
    assert baseline.missing_ratio == {"f0": 0.01}
    assert baseline.stddev == {"f0": 2.0}  # NaN from a pod is no value
    assert baseline.prediction_shares == {"probabilities[1]": {0.5: 0.6}}


def test_the_queries_select_the_active_slot_and_its_revision() -> None:
    prometheus = FakePrometheus()
    _read(prometheus)
    for query, _ in prometheus.queries:
        for key, value in IDENTITY.items():
            assert f'{key}="{value}"' in query
    at_start = [q for q, at in prometheus.queries if at == SINCE]
    assert len(at_start) == 5  # each counter at the window's start
    assert f"resets({INPUT_ROWS}" in " ".join(q for q, _ in prometheus.queries)
    assert any(q.endswith("[360s])") for q, _ in prometheus.queries)  # window + lookback


def test_raw_samples_are_read_only_for_a_counter_with_a_reset() -> None:
    prometheus = FakePrometheus()
    _read(prometheus)
    assert [q.split("{")[0] for q in prometheus.raw_reads()] == [INPUT_ROWS]  # pod b restarted


def test_a_reset_before_the_window_s_first_sample_is_counted_from_zero() -> None:
    # 100 at the start, the pod restarts, then 30 and 150: 150 counted, not 150 − 100
    restarted: list[Counter] = [(_series(INPUT_ROWS, "a"), 100.0, [30.0, 150.0])]
    counts = _read(FakePrometheus(counters=restarted))
    assert counts.rows == 150


def test_without_resets_the_last_value_stands_for_the_samples() -> None:
    steady: list[Counter] = [
        (_series(INPUT_ROWS, "a"), 100.0, [200.0, 400.0]),
        (_series(INPUT_ROWS, "b"), None, [5.0, 20.0]),  # born inside the window
    ]
    prometheus = FakePrometheus(counters=steady)
    counts = _read(prometheus)
    assert counts.rows == 300 + 20
    assert prometheus.raw_reads() == []


@pytest.mark.parametrize("status", [500, 503])
def test_a_refusing_prometheus_is_a_prometheus_error(status: int) -> None:
    with pytest.raises(PrometheusError, match="overloaded"):
        _read(FakePrometheus(status))


def test_an_unreachable_prometheus_is_a_prometheus_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            await PrometheusWindowReader(client, "http://prometheus:9090").read(TARGET, 60, NOW)

    with pytest.raises(PrometheusError, match="unreachable"):
        asyncio.run(go())
