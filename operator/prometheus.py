"""The Prometheus analyzer: reads a canary's counters and histogram over the HTTP API.

`PrometheusAnalyzer.measure` never raises: an unreachable or erroring Prometheus is an `Error`
measurement, an absent series or too few requests an `Inconclusive` one. The rules themselves live
in `modelfleet.operator.analysis`.

Requests are counted exactly since the step's weight was set, not with `increase()`, whose
extrapolation turns 3 errors into 3.4 and whose first sample of a new series is lost: the raw
samples of every series in the window are read (`metric{…}[Ws]`), each diffed against its value at
`since` (absent there → it was created later, from 0: the 5xx series appears on the first error),
with counter resets (a restarted pod) counted from zero. A window in which no series has two
scrapes yet is Inconclusive: the counts would be mostly scrape lag.

The model-aware gates ride along: with `maxPredictionDrift` the `modelfleet_prediction` buckets of
both slots are counted the same exact way over the same window and judged by
`modelfleet.operator.drift`; with `minAgreement`/`maxScoreDelta` the `PairedGate` of
`modelfleet.operator.replay` replays rows to both slots' pods at the same time; with
`minAccuracyDelta` both slots' label counters (`modelfleet_feedback_*`) are counted the same way and
judged by `modelfleet.operator.feedback`. A Fail of any gate wins over a Prometheus that could not
be read.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from modelfleet.operator.analysis import (
    DEFAULT_Z,
    CheckResult,
    RequestShareResult,
    combine,
    judge_error_rate,
    judge_metric,
    judge_p99,
    judge_regression,
    judge_request_share,
    render_query,
)
from modelfleet.operator.api import AnalysisSpec, MetricCheck
from modelfleet.operator.drift import Cumulative, judge_drift, sum_buckets
from modelfleet.operator.feedback import COUNTERS as FEEDBACK_COUNTERS
from modelfleet.operator.feedback import FeedbackCounts, judge_accuracy, sum_feedback
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.replay import PairedGate, ReplayClient

REQUESTS_METRIC = "modelfleet_requests_total"
DURATION_BUCKETS_METRIC = "modelfleet_request_duration_seconds_bucket"
PREDICTION_BUCKETS_METRIC = "modelfleet_prediction_bucket"

Labels = frozenset[tuple[str, str]]
Sample = tuple[float, float]  # (unix time, value)


class PrometheusError(Exception):
    """Prometheus could not answer a query (unreachable, timed out, or refused the query)."""


@dataclass(frozen=True)
class _Read:
    """What Prometheus said: the checks judged on it and the numbers that go into status."""

    results: list[CheckResult]
    requests: float | None = None
    p99_ms: float | None = None
    stable_p99_ms: float | None = None


@dataclass(frozen=True)
class RequestCounts:
    requests: float
    errors: float
    most_scrapes: int  # most samples any one series has in the window
    series: int = 0  # series (pod × code) seen in the window


def selector(namespace: str, name: str, slot: str, revision: str) -> str:
    """The label matchers of one slot's pods: the server's own labels plus file-SD's namespace."""
    pairs = {"namespace": namespace, "deployment": name, "slot": slot, "revision": revision}
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def counter_increase(baseline: float | None, samples: Iterable[float]) -> float:
    """What a counter gained over its samples, from `baseline` (None: created inside the window).

    A drop is a reset (the process restarted): the new value is counted from zero.
    """
    previous = 0.0 if baseline is None else baseline
    gained = 0.0
    for value in samples:
        gained += value - previous if value >= previous else value
        previous = value
    return gained


def series_increase(
    baselines: Mapping[Labels, float], windows: Mapping[Labels, Sequence[Sample]], since: float
) -> dict[Labels, float]:
    """What each counter series gained since `since` (the same exact method as `count_requests`)."""
    return {
        labels: counter_increase(
            baselines.get(labels), [value for stamp, value in samples if stamp > since]
        )
        for labels, samples in windows.items()
    }


def count_requests(
    baselines: Mapping[Labels, float], windows: Mapping[Labels, Sequence[Sample]], since: float
) -> RequestCounts:
    """Requests and 5xx answers since `since`, summed over every series (pod × code)."""
    gains = series_increase(baselines, windows, since)
    errors = sum(
        gain for labels, gain in gains.items() if dict(labels).get("code", "").startswith("5")
    )
    most_scrapes = max(
        (sum(stamp > since for stamp, _ in samples) for samples in windows.values()), default=0
    )
    return RequestCounts(
        requests=sum(gains.values()),
        errors=float(errors),
        most_scrapes=most_scrapes,
        series=len(windows),
    )


def p99_query(namespace: str, name: str, slot: str, revision: str, window_s: int) -> str:
    """p99 of one slot's own histogram over the window, in seconds."""
    matchers = selector(namespace, name, slot, revision)
    return (
        f"histogram_quantile(0.99, sum by (le) "
        f"(increase({DURATION_BUCKETS_METRIC}{matchers}[{window_s}s])))"
    )


class PrometheusAnalyzer:
    """Implements `Analyzer` over the Prometheus HTTP API with a passed-in httpx client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        default_url: str,
        *,
        timeout_s: float = 5.0,
        z: float = DEFAULT_Z,
        paired: PairedGate | None = None,
    ) -> None:
        self._client = client
        self._default_url = default_url
        self._timeout = timeout_s
        self._z = z
        self._paired = paired or PairedGate(ReplayClient(client))

    async def measure(
        self, target: AnalysisTarget, spec: AnalysisSpec, now: datetime
    ) -> Measurement:
        url = (spec.prometheus_url or self._default_url).rstrip("/")
        window_s = math.ceil((now - target.since).total_seconds())
        if window_s <= 0:
            return combine([CheckResult("window", "Inconclusive", "the step has just begun")], now)
        read, paired = await asyncio.gather(
            self._read_or_error(url, target, spec, now, window_s),
            self._paired.check(target, spec),
        )
        return combine(
            [*read.results, *paired],
            now,
            requests=read.requests,
            p99_ms=read.p99_ms,
            stable_p99_ms=read.stable_p99_ms,
        )

    async def _read_or_error(
        self, url: str, target: AnalysisTarget, spec: AnalysisSpec, now: datetime, window_s: int
    ) -> _Read:
        try:
            return await self._read(url, target, spec, now, window_s)
        except PrometheusError as error:
            message = f"Prometheus at {url}: {error}"
        except (KeyError, TypeError, IndexError, ValueError) as error:  # a malformed answer
            message = f"Prometheus at {url}: unexpected answer ({error!r})"
        return _Read([CheckResult("prometheus", "Error", message)])

    async def _read(
        self, url: str, target: AnalysisTarget, spec: AnalysisSpec, now: datetime, window_s: int
    ) -> _Read:
        canary = (target.namespace, target.name, target.canary_slot, target.canary_revision)
        compare = spec.max_p99_regression_ratio is not None and target.stable_slot is not None
        drift = spec.max_prediction_drift is not None and target.stable_slot is not None
        stable = (
            target.namespace,
            target.name,
            target.stable_slot or "",
            target.stable_revision or "",
        )
        share = target.expected_share is not None and target.stable_slot is not None
        labelled = spec.min_accuracy_delta is not None and target.stable_slot is not None
        since, at = target.since.timestamp(), now.timestamp()
        counts, stable_counts, p99_s, stable_p99_s, predictions, labels = await asyncio.gather(
            self._requests(url, selector(*canary), since, at, window_s),
            self._requests(url, selector(*stable), since, at, window_s) if share else _none(),
            self._number(url, p99_query(*canary, window_s), at),
            self._number(url, p99_query(*stable, window_s), at) if compare else _none(),
            self._predictions(url, canary, stable, since, at, window_s) if drift else _none(),
            self._labels_counted(url, canary, stable, since, at, window_s) if labelled else _none(),
        )
        shortfall = self._share(spec, target, counts, stable_counts)
        if shortfall is not None and shortfall.phase != "Pass":
            # the stable slot's count says where the requests went: that explains an empty canary
            return _Read([shortfall], counts.requests)
        if counts.most_scrapes < 2:
            reason = (
                "no canary requests counted since the step began"
                if counts.series == 0
                else "fewer than two scrapes since the step began"
            )
            return _Read([CheckResult("window", "Inconclusive", reason)])
        p99_ms = None if p99_s is None else p99_s * 1000
        stable_p99_ms = None if stable_p99_s is None else stable_p99_s * 1000
        results = self._judge(spec, target, counts, p99_ms, stable_p99_ms)
        if shortfall is not None:
            results.append(shortfall)
        if predictions is not None and spec.max_prediction_drift is not None:
            drift_result = judge_drift(
                *predictions, spec.max_prediction_drift, spec.min_drift_samples, target.weight
            )
            if drift_result is not None:
                results.append(drift_result)
        if labels is not None and spec.min_accuracy_delta is not None:
            accuracy = judge_accuracy(
                *labels, spec.min_accuracy_delta, spec.min_labelled_rows, target.weight, self._z
            )
            if accuracy is not None:
                results.append(accuracy)
        results += await self._extra_checks(url, target, spec.metrics, at)
        return _Read(results, counts.requests, p99_ms, stable_p99_ms)

    async def _requests(
        self, url: str, matchers: str, since: float, at: float, window_s: int
    ) -> RequestCounts:
        """One slot's requests and 5xx answers since `since`, counted exactly."""
        series = f"{REQUESTS_METRIC}{matchers}"
        baselines, windows = await asyncio.gather(
            self._vector(url, series, since), self._matrix(url, f"{series}[{window_s}s]", at)
        )
        return count_requests(baselines, windows, since)

    def _share(
        self,
        spec: AnalysisSpec,
        target: AnalysisTarget,
        counts: RequestCounts,
        stable: RequestCounts | None,
    ) -> RequestShareResult | None:
        """The canary's share against its router's, once the stable slot has two scrapes."""
        if stable is None or target.expected_share is None or stable.most_scrapes < 2:
            return None
        return judge_request_share(
            counts.requests,
            stable.requests,
            target.weight,
            target.expected_share,
            spec.min_requests,
            self._z,
            splits_by_weight=target.splits_by_weight,
        )

    async def _predictions(
        self,
        url: str,
        canary: tuple[str, str, str, str],
        stable: tuple[str, str, str, str],
        since: float,
        at: float,
        window_s: int,
    ) -> tuple[Cumulative, Cumulative]:
        """Both slots' prediction buckets counted since `since`: output → le → cumulative count."""

        async def one(slot: tuple[str, str, str, str]) -> Cumulative:
            series = f"{PREDICTION_BUCKETS_METRIC}{selector(*slot)}"
            gains = await self._gains(url, series, since, at, window_s)
            return sum_buckets((dict(labels), gain) for labels, gain in gains.items())

        canary_counts, stable_counts = await asyncio.gather(one(canary), one(stable))
        return canary_counts, stable_counts

    async def _labels_counted(
        self,
        url: str,
        canary: tuple[str, str, str, str],
        stable: tuple[str, str, str, str],
        since: float,
        at: float,
        window_s: int,
    ) -> tuple[FeedbackCounts, FeedbackCounts]:
        """Both slots' labels counted since `since`, from their feedback counters."""

        async def one(slot: tuple[str, str, str, str]) -> FeedbackCounts:
            names = '{__name__=~"' + "|".join(FEEDBACK_COUNTERS) + '",'
            series = names + selector(*slot)[1:]
            gains = await self._gains(url, series, since, at, window_s, key=_named)
            summed = sum_feedback((dict(labels), gain) for labels, gain in gains.items())
            return summed.get((slot[2], slot[3]), FeedbackCounts())

        canary_labels, stable_labels = await asyncio.gather(one(canary), one(stable))
        return canary_labels, stable_labels

    def _judge(
        self,
        spec: AnalysisSpec,
        target: AnalysisTarget,
        counts: RequestCounts,
        p99_ms: float | None,
        stable_p99_ms: float | None,
    ) -> list[CheckResult]:
        weight, minimum = target.weight, spec.min_requests
        results: list[CheckResult] = [
            judge_error_rate(counts.errors, counts.requests, spec.max_error_rate, minimum, self._z),
            judge_p99(p99_ms, counts.requests, spec.max_p99_latency_ms, minimum),
        ]
        if spec.max_p99_regression_ratio is not None and target.stable_slot is not None:
            regression = judge_regression(
                p99_ms,
                stable_p99_ms,
                spec.max_p99_regression_ratio,
                counts.requests,
                minimum,
                weight,
            )
            if regression is not None:
                results.append(regression)
        return results

    async def _extra_checks(
        self, url: str, target: AnalysisTarget, checks: Sequence[MetricCheck], at: float
    ) -> list[CheckResult]:
        async def one(check: MetricCheck) -> CheckResult:
            try:
                query = render_query(
                    check.query,
                    namespace=target.namespace,
                    name=target.name,
                    slot=target.canary_slot,
                    revision=target.canary_revision,
                )
                return judge_metric(check, await self._number(url, query, at, strict=True))
            except (PrometheusError, ValueError) as error:
                return CheckResult(check.name, "Error", f"{check.name}: {error}")

        return list(await asyncio.gather(*(one(check) for check in checks)))

    # --- the HTTP API -------------------------------------------------------------------------

    async def _query(self, url: str, query: str, at: float) -> tuple[str, list[Any]]:
        return await query_api(self._client, url, query, at, self._timeout)

    async def _gains(
        self,
        url: str,
        series: str,
        since: float,
        at: float,
        window_s: int,
        *,
        key: Callable[[Mapping[str, str]], Labels] | None = None,
    ) -> dict[Labels, float]:
        """What each counter series matched by `series` gained since `since` (series_increase)."""
        baselines, windows = await asyncio.gather(
            self._vector(url, series, since, key=key),
            self._matrix(url, f"{series}[{window_s}s]", at, key=key),
        )
        return series_increase(baselines, windows, since)

    async def _vector(
        self,
        url: str,
        query: str,
        at: float,
        *,
        key: Callable[[Mapping[str, str]], Labels] | None = None,
    ) -> dict[Labels, float]:
        kind, result = await self._query(url, query, at)
        _expect(kind, "vector", query)
        key = key or _labels
        return {key(item["metric"]): float(item["value"][1]) for item in result}

    async def _matrix(
        self,
        url: str,
        query: str,
        at: float,
        *,
        key: Callable[[Mapping[str, str]], Labels] | None = None,
    ) -> dict[Labels, list[Sample]]:
        kind, result = await self._query(url, query, at)
        _expect(kind, "matrix", query)
        key = key or _labels
        return {
            key(item["metric"]): [(float(stamp), float(value)) for stamp, value in item["values"]]
            for item in result
        }

    async def _number(
        self, url: str, query: str, at: float, *, strict: bool = False
    ) -> float | None:
        """One number (scalar or one-element vector); None when empty or NaN."""
        kind, result = await self._query(url, query, at)
        if kind == "scalar":
            values = [float(result[1])]
        elif kind == "vector":
            values = [float(item["value"][1]) for item in result]
        else:
            raise PrometheusError(f"{query!r} returned a {kind}, not a number")
        if strict and len(values) > 1:
            raise PrometheusError(f"{query!r} returned {len(values)} series, not one number")
        finite = [value for value in values if not math.isnan(value)]
        return finite[0] if finite else None


async def query_api(
    client: httpx.AsyncClient, url: str, query: str, at: float, timeout_s: float
) -> tuple[str, list[Any]]:
    """One instant query at `at`: the result type and the result list; `PrometheusError` when
    Prometheus is unreachable, times out or refuses the query."""
    try:
        response = await client.get(
            f"{url}/api/v1/query",
            params={"query": query, "time": f"{at:.3f}"},
            timeout=timeout_s,
        )
    except httpx.TimeoutException as error:
        raise PrometheusError(f"timed out after {timeout_s:g} s") from error
    except httpx.HTTPError as error:
        raise PrometheusError(f"unreachable ({type(error).__name__}: {error})") from error
    try:
        body = response.json()
    except ValueError as error:
        raise PrometheusError(f"HTTP {response.status_code}, not a JSON answer") from error
    if response.status_code != 200 or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(f"HTTP {response.status_code}: {detail or 'query failed'}")
    data = body["data"]
    result = data["result"]
    return data["resultType"], result if isinstance(result, list) else [result]


async def _none() -> None:
    return None


def _labels(metric: Mapping[str, str]) -> Labels:
    return frozenset((key, value) for key, value in metric.items() if key != "__name__")


def _named(metric: Mapping[str, str]) -> Labels:
    """A series' labels with its metric name: one query reads several counters."""
    return frozenset(metric.items())


def _expect(kind: str, wanted: str, query: str) -> None:
    if kind != wanted:
        raise PrometheusError(f"{query!r} returned a {kind}, expected a {wanted}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
