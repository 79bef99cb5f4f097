"""What the active slot's pods counted over the monitoring window, read from Prometheus.

Counters are counted exactly, the way the rollout gates count them (`series_increase`: each
series diffed against its value at the window's start, absent there = born inside the window,
resets counted from zero), then summed over the pods. Without a reset the last sample in the window
says all that its raw samples would, so per counter three small answers (the values at the start,
`last_over_time` and `resets` over the window and the lookback before it) replace a window of raw
samples; only a counter with a reset (a restarted pod) has its raw samples read. The cost of a look
then grows with the series, not with window ÷ scrape interval (an hour at 15 s is 240 samples a
series). The baseline's gauges are identical on every pod of a revision: the largest value over
the pods is kept.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx

from modelfleet.operator.drift import parse_le
from modelfleet.operator.prometheus import query_api
from modelfleet.operator.prometheus_counts import (
    PREDICTION_BUCKETS_METRIC,
    Sample,
    selector,
    series_increase,
)

INPUT_BUCKETS = "modelfleet_input_bucket"
INPUT_ROWS = "modelfleet_input_rows_total"
INPUT_MISSING = "modelfleet_input_missing_total"
INPUT_OUT_OF_RANGE = "modelfleet_input_out_of_range_total"
COUNTERS = (INPUT_BUCKETS, INPUT_ROWS, INPUT_MISSING, INPUT_OUT_OF_RANGE, PREDICTION_BUCKETS_METRIC)

BASELINE_LOADED = "modelfleet_baseline_loaded"
BASELINE_ROWS = "modelfleet_baseline_rows"
BASELINE_INPUT_SHARE = "modelfleet_baseline_input_share"
BASELINE_MISSING = "modelfleet_baseline_input_missing_ratio"
BASELINE_OUT_OF_RANGE = "modelfleet_baseline_input_out_of_range_ratio"
BASELINE_STDDEV = "modelfleet_baseline_input_stddev"
BASELINE_PREDICTION_SHARE = "modelfleet_baseline_prediction_share"
GAUGES = (
    BASELINE_LOADED,
    BASELINE_ROWS,
    BASELINE_INPUT_SHARE,
    BASELINE_MISSING,
    BASELINE_OUT_OF_RANGE,
    BASELINE_STDDEV,
    BASELINE_PREDICTION_SHARE,
)

K = TypeVar("K")
Labels = frozenset[tuple[str, str]]
LOOKBACK_S = 300  # Prometheus' default lookback: how old the value at the window's start may be

# a column (feature or output) → le → value
Histograms = dict[str, dict[float, float]]


@dataclass(frozen=True)
class Slot:
    """The pods to read: one slot's revision of one ModelDeployment."""

    namespace: str
    name: str
    slot: str
    revision: str


@dataclass(frozen=True)
class BaselineFigures:
    """The baseline as the pods describe it (their `modelfleet_baseline_*` gauges)."""

    loaded: bool = False
    rows: float = 0.0
    input_shares: Histograms = field(default_factory=dict)  # feature → le → cumulative share
    missing_ratio: dict[str, float] = field(default_factory=dict)
    out_of_range_ratio: dict[str, float] = field(default_factory=dict)
    stddev: dict[str, float] = field(default_factory=dict)
    prediction_shares: Histograms = field(default_factory=dict)  # output → le → cumulative share


@dataclass(frozen=True)
class SlotCounts:
    """What the slot's pods counted in the window (summed over pods) and the baseline they hold."""

    pods: int  # pods that reported any monitored series (a counter or a baseline gauge)
    rows: float  # rows scored
    inputs: Histograms  # feature → le → cumulative non-missing count
    missing: dict[str, float]
    out_of_range: dict[str, float]
    outputs: Histograms  # output → le → cumulative count
    baseline: BaselineFigures


class WindowReader(Protocol):
    """Reads a slot's window (the Prometheus one in production, a fake in unit tests)."""

    async def read(self, target: Slot, window_s: float, now: float) -> SlotCounts: ...


class PrometheusWindowReader:
    """`WindowReader` over the Prometheus HTTP API; raises `PrometheusError` when it cannot read."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float = 10.0) -> None:
        self._client = client
        self.url = url.rstrip("/")
        self._timeout = timeout_s

    async def read(self, target: Slot, window_s: float, now: float) -> SlotCounts:
        matchers = selector(target.namespace, target.name, target.slot, target.revision)
        since = now - window_s
        counters, gauges = await asyncio.gather(
            asyncio.gather(*(self._counter(name, matchers, since, now) for name in COUNTERS)),
            self._vector(_with_names(GAUGES, matchers), now),
        )
        baselines: dict[Labels, float] = {}
        samples: dict[Labels, list[Sample]] = {}
        for at_start, window in counters:
            baselines.update(at_start)
            samples.update(window)
        return window_counts(baselines, samples, since, list(gauges.items()))

    async def _counter(
        self, name: str, matchers: str, since: float, now: float
    ) -> tuple[dict[Labels, float], dict[Labels, list[Sample]]]:
        """One counter's values at the window's start and what stands for its samples in it."""
        series, seconds = f"{name}{matchers}", math.ceil(now - since)
        at_start, last, resets = await asyncio.gather(
            self._vector(series, since),
            self._vector(f"last_over_time({series}[{seconds}s])", now, name),
            # the lookback too: a reset between the start's value and the window's first sample
            self._vector(f"resets({series}[{seconds + LOOKBACK_S}s])", now, name),
        )
        if not any(count > 0 for count in resets.values()):
            return at_start, {labels: [(now, value)] for labels, value in last.items()}
        _, window = await self._query(f"{series}[{seconds}s]", now)
        raw = {
            _labels(item["metric"]): [(float(t), float(v)) for t, v in item["values"]]
            for item in window
        }
        return at_start, raw

    async def _vector(self, query: str, at: float, name: str | None = None) -> dict[Labels, float]:
        """An instant vector; `name` puts back the metric name a function dropped."""
        _, result = await self._query(query, at)
        extra = {"__name__": name} if name is not None else {}
        return {_labels({**item["metric"], **extra}): float(item["value"][1]) for item in result}

    async def _query(self, query: str, at: float) -> tuple[str, list[Any]]:
        return await query_api(self._client, self.url, query, at, self._timeout)


def window_counts(
    at_start: Mapping[frozenset[tuple[str, str]], float],
    window: Mapping[frozenset[tuple[str, str]], list[Sample]],
    since: float,
    gauges: Iterable[tuple[frozenset[tuple[str, str]], float]],
) -> SlotCounts:
    """The window's counts from raw Prometheus answers (pure: the reader's arithmetic)."""
    gains = series_increase(at_start, window, since)
    gauge_values = list(gauges)
    inputs: Histograms = {}
    outputs: Histograms = {}
    missing: dict[str, float] = {}
    out_of_range: dict[str, float] = {}
    rows = 0.0
    every_series = [*gains, *(labels for labels, _ in gauge_values)]
    pods = {
        dict(labels).get("instance", "") + dict(labels).get("pod", "") for labels in every_series
    }
    for labels, gain in gains.items():
        tags = dict(labels)
        name, feature = tags.get("__name__"), tags.get("feature", "")
        if name == INPUT_BUCKETS:
            _add(inputs.setdefault(feature, {}), parse_le(tags["le"]), gain)
        elif name == PREDICTION_BUCKETS_METRIC:
            _add(outputs.setdefault(tags.get("output", ""), {}), parse_le(tags["le"]), gain)
        elif name == INPUT_MISSING:
            _add(missing, feature, gain)
        elif name == INPUT_OUT_OF_RANGE:
            _add(out_of_range, feature, gain)
        elif name == INPUT_ROWS:
            rows += gain
    return SlotCounts(
        len(pods), rows, inputs, missing, out_of_range, outputs, _baseline(gauge_values)
    )


def _baseline(gauges: Iterable[tuple[frozenset[tuple[str, str]], float]]) -> BaselineFigures:
    """The baseline's figures: the largest value over the pods of each gauge series."""
    loaded, rows = False, 0.0
    shares: Histograms = {}
    predictions: Histograms = {}
    per_feature: dict[str, dict[str, float]] = {
        BASELINE_MISSING: {},
        BASELINE_OUT_OF_RANGE: {},
        BASELINE_STDDEV: {},
    }
    for labels, value in gauges:
        if math.isnan(value):
            continue
        tags = dict(labels)
        name = tags.get("__name__", "")
        if name == BASELINE_LOADED:
            loaded = loaded or value >= 1
        elif name == BASELINE_ROWS:
            rows = max(rows, value)
        elif name == BASELINE_INPUT_SHARE:
            _keep_max(shares.setdefault(tags.get("feature", ""), {}), parse_le(tags["le"]), value)
        elif name == BASELINE_PREDICTION_SHARE:
            output = predictions.setdefault(tags.get("output", ""), {})
            _keep_max(output, parse_le(tags["le"]), value)
        elif name in per_feature:
            _keep_max(per_feature[name], tags.get("feature", ""), value)
    return BaselineFigures(
        loaded=loaded,
        rows=rows,
        input_shares=shares,
        missing_ratio=per_feature[BASELINE_MISSING],
        out_of_range_ratio=per_feature[BASELINE_OUT_OF_RANGE],
        stddev=per_feature[BASELINE_STDDEV],
        prediction_shares=predictions,
    )


def _add(into: dict[K, float], key: K, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def _keep_max(into: dict[K, float], key: K, value: float) -> None:
    into[key] = max(into.get(key, value), value)


def _with_names(names: Iterable[str], matchers: str) -> str:
    """One selector over several metric names: `{__name__=~"a|b", namespace="…", …}`."""
    return '{__name__=~"' + "|".join(names) + '",' + matchers[1:]


def _labels(metric: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(metric.items())
