"""The Prometheus reader: a canary's counters and histograms over the HTTP API, judged.

`PrometheusReader.read` never raises: an unreachable or erroring Prometheus is an `Error` check,
an absent series or too few requests an `Inconclusive` one. The rules themselves live in
`modelfleet.operator.analysis`; counting is `modelfleet.operator.prometheus_counts`'s.

Requests are counted exactly since the step's weight was set. A window in which no series has two
scrapes yet is Inconclusive: the counts would be mostly scrape lag.

The model-aware gates that Prometheus can answer ride along: with `maxPredictionDrift` the
`modelfleet_prediction` buckets of both slots are counted the same exact way over the same window
and judged by `modelfleet.operator.drift`; with `minAccuracyDelta` both slots' label counters
(`modelfleet_feedback_*`) are counted the same way and judged by `modelfleet.operator.feedback`.
The paired replay gate asks the pods, not Prometheus: `modelfleet.operator.gates` runs both.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from modelfleet.operator.analysis import (
    DEFAULT_Z,
    CheckResult,
    judge_error_rate,
    judge_metric,
    judge_p99,
    judge_regression,
    render_query,
)
from modelfleet.operator.api import AnalysisSpec, MetricCheck, parse_duration
from modelfleet.operator.drift import Cumulative, judge_drift, sum_buckets
from modelfleet.operator.feedback import COUNTERS as FEEDBACK_COUNTERS
from modelfleet.operator.feedback import FeedbackCounts, judge_accuracy, sum_feedback
from modelfleet.operator.http_json import request_json
from modelfleet.operator.measurement import AnalysisTarget
from modelfleet.operator.prometheus_counts import (
    PREDICTION_BUCKETS_METRIC,
    RATE_LIMITED_METRIC,
    REQUESTS_METRIC,
    Labels,
    RequestCounts,
    Sample,
    count_requests,
    labels_of,
    named_labels_of,
    p99_query,
    routed,
    selector,
    series_increase,
    share_intervals,
)
from modelfleet.operator.request_share import (
    RequestShareResult,
    judge_request_share,
    judge_share_by_interval,
)


class PrometheusError(Exception):
    """Prometheus could not answer a query (unreachable, timed out, or refused the query)."""


@dataclass(frozen=True)
class PrometheusRead:
    """What Prometheus said: the checks judged on it and the numbers that go into status."""

    results: list[CheckResult]
    requests: float | None = None
    p99_ms: float | None = None
    stable_p99_ms: float | None = None


@dataclass(frozen=True)
class PrometheusReader:
    """The gates Prometheus answers, over its HTTP API with a passed-in httpx client."""

    client: httpx.AsyncClient
    default_url: str  # when the spec names no prometheusUrl
    timeout_s: float = 5.0
    z: float = DEFAULT_Z  # of the intervals the rules judge with

    async def read(
        self, target: AnalysisTarget, spec: AnalysisSpec, now: datetime, window_s: int
    ) -> PrometheusRead:
        """The checks over the last `window_s` seconds; a Prometheus that cannot be read is an
        `Error` check, never an exception."""
        url = (spec.prometheus_url or self.default_url).rstrip("/")
        try:
            return await self._read(url, target, spec, now, window_s)
        except PrometheusError as error:
            message = f"Prometheus at {url}: {error}"
        except (KeyError, TypeError, IndexError, ValueError) as error:  # a malformed answer
            message = f"Prometheus at {url}: unexpected answer ({error!r})"
        return PrometheusRead([CheckResult("prometheus", "Error", message)])

    async def _read(
        self, url: str, target: AnalysisTarget, spec: AnalysisSpec, now: datetime, window_s: int
    ) -> PrometheusRead:
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
        shared = (counts, stable_counts)
        if target.rate_limited and stable_counts is not None:
            slots = (selector(*canary), selector(*stable))
            shared = await self._routed(url, slots, (counts, stable_counts), since, at, window_s)
        shortfall = self._share(spec, target, *shared, at)
        if shortfall is not None and shortfall.phase != "Pass":
            # the stable slot's count says where the requests went: that explains an empty canary
            return PrometheusRead([shortfall], counts.requests)
        if counts.most_scrapes < 2:
            reason = (
                "no canary requests counted since the step began"
                if counts.series == 0
                else "fewer than two scrapes since the step began"
            )
            return PrometheusRead([CheckResult("window", "Inconclusive", reason)])
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
                *labels, spec.min_accuracy_delta, spec.min_labelled_rows, target.weight, self.z
            )
            if accuracy is not None:
                results.append(accuracy)
        results += await self._extra_checks(url, target, spec.metrics, at)
        return PrometheusRead(results, counts.requests, p99_ms, stable_p99_ms)

    async def _requests(
        self,
        url: str,
        matchers: str,
        since: float,
        at: float,
        window_s: int,
        *,
        metric: str = REQUESTS_METRIC,
        key: Callable[[Mapping[str, str]], Labels] = labels_of,
    ) -> RequestCounts:
        """One slot's requests and 5xx answers since `since`, counted exactly."""
        series = f"{metric}{matchers}"
        baselines, windows = await asyncio.gather(
            self._vector(url, series, since, key=key),
            self._matrix(url, f"{series}[{window_s}s]", at, key=key),
        )
        return count_requests(baselines, windows, since)

    async def _routed(
        self,
        url: str,
        slots: tuple[str, str],
        answered: tuple[RequestCounts, RequestCounts],
        since: float,
        at: float,
        window_s: int,
    ) -> tuple[RequestCounts, RequestCounts]:
        """Both slots' requests (canary, stable) with those the tenant rate limit refused."""
        refused = await asyncio.gather(
            *(
                self._requests(
                    url,
                    matchers,
                    since,
                    at,
                    window_s,
                    metric=RATE_LIMITED_METRIC,
                    key=named_labels_of,
                )
                for matchers in slots
            )
        )
        return routed(answered[0], refused[0]), routed(answered[1], refused[1])

    def _share(
        self,
        spec: AnalysisSpec,
        target: AnalysisTarget,
        counts: RequestCounts,
        stable: RequestCounts | None,
        at: float,
    ) -> RequestShareResult | None:
        """The canary's share against its router's, once the stable slot has two scrapes: since
        the step began, and in each of its intervals where the router splits by weight."""
        if stable is None or target.expected_share is None or stable.most_scrapes < 2:
            return None
        since_step = judge_request_share(
            counts.requests,
            stable.requests,
            target.weight,
            target.expected_share,
            spec.min_requests,
            self.z,
            splits_by_weight=target.splits_by_weight,
        )
        if since_step.phase != "Pass" or not target.splits_by_weight:
            return since_step
        interval_s = parse_duration(spec.interval)
        intervals = share_intervals(counts, stable, target.since.timestamp(), at, interval_s)
        return judge_share_by_interval(
            intervals, since_step, target.weight, target.expected_share, spec.min_requests, self.z
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
            gains = await self._gains(url, series, since, at, window_s, key=named_labels_of)
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
            judge_error_rate(counts.errors, counts.requests, spec.max_error_rate, minimum, self.z),
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
        return await query_api(self.client, url, query, at, self.timeout_s)

    async def _gains(
        self,
        url: str,
        series: str,
        since: float,
        at: float,
        window_s: int,
        *,
        key: Callable[[Mapping[str, str]], Labels] = labels_of,
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
        key: Callable[[Mapping[str, str]], Labels] = labels_of,
    ) -> dict[Labels, float]:
        kind, result = await self._query(url, query, at)
        _expect(kind, "vector", query)
        return {key(item["metric"]): float(item["value"][1]) for item in result}

    async def _matrix(
        self,
        url: str,
        query: str,
        at: float,
        *,
        key: Callable[[Mapping[str, str]], Labels] = labels_of,
    ) -> dict[Labels, list[Sample]]:
        kind, result = await self._query(url, query, at)
        _expect(kind, "matrix", query)
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
    code, body = await request_json(
        client,
        "GET",
        f"{url}/api/v1/query",
        params={"query": query, "time": f"{at:.3f}"},
        timeout_s=timeout_s,
        error=PrometheusError,
    )
    if code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(f"HTTP {code}: {detail or 'query failed'}")
    data = body["data"]
    result = data["result"]
    return data["resultType"], result if isinstance(result, list) else [result]


async def _none() -> None:
    return None


def _expect(kind: str, wanted: str, query: str) -> None:
    if kind != wanted:
        raise PrometheusError(f"{query!r} returned a {kind}, expected a {wanted}")
