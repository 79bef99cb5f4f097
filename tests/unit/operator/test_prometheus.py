"""The Prometheus analyzer: exact counting from raw samples, and every way a query can go wrong.

A scripted Prometheus (an httpx transport passed into the client) answers the API calls here; the
same analyzer against a real Prometheus scraping real servers is in tests/e2e/test_analysis.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.operator.analysis import CheckResult
from modelfleet.operator.api import AnalysisSpec, MetricCheck
from modelfleet.operator.gates import PrometheusAndPairedGates
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.prometheus_counts import (
    count_requests,
    counter_increase,
    interval_bounds,
    p99_query,
    requests_by_window,
    scrape_gap,
    selector,
)
from modelfleet.operator.replay import Comparison, PairedGate, judge_paired
from modelfleet.operator.request_share import FAR_ABOVE

SINCE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = SINCE + timedelta(seconds=30)
T0 = SINCE.timestamp()
TARGET = AnalysisTarget(
    namespace="ml",
    name="fraud",
    canary_slot="green",
    canary_revision="r2",
    stable_slot="blue",
    stable_revision="r1",
    weight=25,
    since=SINCE,
)


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


# --- counting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "samples", "expected"),
    [
        (10.0, [12.0, 15.0, 20.0], 10.0),
        (None, [1.0, 3.0], 3.0),  # created inside the window (the 5xx series on the first error)
        (100.0, [110.0, 4.0, 9.0], 19.0),  # reset: 10 before it, then 9 from zero
        (5.0, [], 0.0),
        (None, [], 0.0),
    ],
)
def test_counter_increase(baseline: float | None, samples: list[float], expected: float) -> None:
    assert counter_increase(baseline, samples) == expected


@given(
    baseline=st.integers(min_value=0, max_value=10**6),
    steps=st.lists(st.integers(min_value=0, max_value=1000), max_size=50),
)
def test_counter_increase_without_resets_is_last_minus_first(
    baseline: int, steps: list[int]
) -> None:
    values, running = [], baseline
    for step in steps:
        running += step
        values.append(float(running))
    assert counter_increase(float(baseline), values) == sum(steps)


def test_count_requests_sums_pods_and_codes_and_ignores_samples_before_since() -> None:
    ok_a = _labels(pod="a", code="200")
    ok_b = _labels(pod="b", code="200")
    error_a = _labels(pod="a", code="500")
    bad_request = _labels(pod="a", code="400")
    windows = {
        ok_a: [(T0 - 1, 50.0), (T0 + 1, 60.0), (T0 + 2, 80.0)],
        ok_b: [(T0 + 1, 5.0), (T0 + 2, 7.0)],
        error_a: [(T0 + 2, 3.0)],
        bad_request: [(T0 + 1, 2.0), (T0 + 2, 2.0)],
    }
    counts = count_requests({ok_a: 50.0, bad_request: 1.0}, windows, T0)
    assert counts.requests == 30 + 7 + 3 + 1
    assert counts.errors == 3  # 4xx are the client's mistakes, not the canary's
    assert counts.most_scrapes == 2


def test_requests_by_window_count_each_scrape_gain_in_the_window_of_its_scrape() -> None:
    steady = _labels(pod="a", code="200")
    restarted = _labels(pod="b", code="200")
    born_late = _labels(pod="c", code="200")
    windows = {
        steady: [(T0, 0.0), (T0 + 5, 10.0), (T0 + 10, 40.0), (T0 + 15, 70.0)],
        restarted: [(T0 + 5, 10.0), (T0 + 15, 4.0)],  # reset: 4 from zero
        born_late: [(T0 + 12, 6.0)],
    }
    counts = count_requests({steady: 0.0, restarted: 0.0}, windows, T0)
    assert counts.samples is not None
    by_window = requests_by_window(counts.samples, T0, [T0 + 5, T0 + 10, T0 + 20])
    assert by_window == [30, 30 + 4 + 6]  # the gains scraped at T0 + 5 come before the first
    assert scrape_gap(counts.samples) == 5


@pytest.mark.parametrize(
    ("at", "gap", "bounds"),
    [
        (15, 2, []),  # shorter than the first interval and one more
        (20, 2, [10, 20]),
        (45, 2, [10, 25, 35, 45]),  # the oldest takes the 5 s left over
        (45, 5, [10, 45]),  # 4 scrapes of 5 s: intervals of 20 s at least
        (50, 5, [10, 30, 50]),
    ],
)
def test_interval_bounds(at: float, gap: float, bounds: list[float]) -> None:
    assert interval_bounds(0, at, 10, gap) == bounds


def test_selector_and_p99_query() -> None:
    matchers = selector("ml", "fraud", "green", 'r"2')
    assert matchers == '{namespace="ml",deployment="fraud",slot="green",revision="r\\"2"}'
    assert p99_query("ml", "fraud", "green", "r2", 30) == (
        "histogram_quantile(0.99, sum by (le) (increase(modelfleet_request_duration_seconds_bucket"
        '{namespace="ml",deployment="fraud",slot="green",revision="r2"}[30s])))'
    )


# --- the analyzer against a scripted Prometheus -----------------------------------------------

Answer = Callable[[str, float], dict[str, Any]]


def _vector(*items: tuple[dict[str, str], float]) -> dict[str, Any]:
    return {
        "resultType": "vector",
        "result": [{"metric": m, "value": [0, str(v)]} for m, v in items],
    }


def _matrix(*items: tuple[dict[str, str], list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "resultType": "matrix",
        "result": [
            {"metric": m, "values": [[t, str(v)] for t, v in samples]} for m, samples in items
        ],
    }


def healthy_prometheus(
    ok: int = 2000, errors: int = 6, p99_s: float = 0.012, extra: float | None = 0.9
) -> Answer:
    """Answers like Prometheus would for a canary that served `ok` + `errors` requests."""
    series_ok = {"__name__": "modelfleet_requests_total", "pod": "a", "code": "200"}
    series_error = {"__name__": "modelfleet_requests_total", "pod": "a", "code": "503"}

    def answer(query: str, at: float) -> dict[str, Any]:
        if query.startswith("histogram_quantile"):
            return _vector(({}, p99_s))
        if query.startswith("modelfleet_requests_total") and query.endswith("s]"):
            return _matrix(
                (series_ok, [(T0 + 10, ok / 2), (T0 + 20, float(ok))]),
                (series_error, [(T0 + 20, float(errors))]),
            )
        if query.startswith("modelfleet_requests_total"):
            assert at == pytest.approx(T0)
            return _vector()  # nothing before the step: both series are new
        return _vector() if extra is None else _vector(({}, extra))

    return answer


def _measure(
    answer: Answer | Exception,
    spec: AnalysisSpec | None = None,
    target: AnalysisTarget = TARGET,
    now: datetime = NOW,
) -> tuple[Measurement, list[str]]:
    queries: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query, at = request.url.params["query"], float(request.url.params["time"])
        queries.append(query)
        assert request.url.path == "/api/v1/query"
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, json={"status": "success", "data": answer(query, at)})

    async def run() -> Measurement:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            analyzer = PrometheusAndPairedGates(client, "http://prometheus.test:9090/")
            return await analyzer.measure(target, spec or AnalysisSpec(), now)

    return asyncio.run(run()), queries


def test_healthy_canary_passes_with_its_numbers() -> None:
    measurement, queries = _measure(healthy_prometheus())
    assert measurement.phase == "Pass", measurement.message
    assert measurement.requests == 2006
    assert measurement.error_rate == pytest.approx(6 / 2006)
    assert measurement.p99_ms == pytest.approx(12.0)
    assert all('revision="r2"' in q for q in queries)


def test_erroring_canary_fails_with_the_measured_rate() -> None:
    measurement, _ = _measure(healthy_prometheus(ok=1736, errors=76))
    assert measurement.phase == "Fail"
    assert measurement.message == ("error rate 4.2 % [2.9–6.0 %] > 1.0 % over 1,812 requests")


def test_slow_canary_fails_on_p99() -> None:
    measurement, _ = _measure(healthy_prometheus(p99_s=0.45))
    assert measurement.phase == "Fail"
    assert measurement.message == "p99 450 ms > 200 ms over 2,006 requests"


def test_absent_series_is_inconclusive_never_pass_or_fail() -> None:
    def empty(query: str, at: float) -> dict[str, Any]:
        return _matrix() if query.endswith("s]") else _vector()

    measurement, _ = _measure(empty)
    assert measurement.phase == "Inconclusive"
    assert "no canary requests" in measurement.message


def test_a_window_of_one_scrape_is_inconclusive() -> None:
    def one_scrape(query: str, at: float) -> dict[str, Any]:
        if query.endswith("s]"):
            return _matrix(({"code": "500"}, [(T0 + 1, 900.0)]))
        return _vector(({}, 0.01)) if query.startswith("histogram") else _vector()

    measurement, _ = _measure(one_scrape)
    assert measurement.phase == "Inconclusive"
    assert "two scrapes" in measurement.message


def test_the_step_that_just_began_is_inconclusive_without_a_query() -> None:
    measurement, queries = _measure(healthy_prometheus(), now=SINCE)
    assert measurement.phase == "Inconclusive"
    assert queries == []


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ConnectError("connection refused"), "unreachable"),
        (httpx.ReadTimeout("slow"), "timed out after 5 s"),
    ],
)
def test_unreachable_prometheus_is_an_error_measurement(failure: Exception, words: str) -> None:
    measurement, _ = _measure(failure)
    assert measurement.phase == "Error"
    assert measurement.message.startswith("Prometheus at http://prometheus.test:9090: ")
    assert words in measurement.message


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        (503, "Service Unavailable", "not a JSON answer"),
        (200, {"status": "success", "data": {"resultType": "vector"}}, "unexpected answer"),
    ],
)
def test_a_refused_or_malformed_answer_is_an_error_measurement(
    status: int, body: Any, words: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, str) else json.dumps(body)
        return httpx.Response(status, content=content.encode())

    async def run() -> Measurement:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await PrometheusAndPairedGates(client, "http://p:9090").measure(
                TARGET, AnalysisSpec(), NOW
            )

    measurement = asyncio.run(run())
    assert measurement.phase == "Error"
    assert words in measurement.message


def test_spec_url_overrides_the_default() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        raise httpx.ConnectError("no")

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            spec = AnalysisSpec(prometheus_url="http://other.test:9090")
            await PrometheusAndPairedGates(client, "http://p:9090").measure(TARGET, spec, NOW)

    asyncio.run(run())
    assert set(seen) == {"other.test"}


@pytest.mark.parametrize(
    ("stable_p99_s", "phase"), [(0.010, "Pass"), (0.004, "Fail"), (None, "Inconclusive")]
)
def test_regression_against_stable_in_the_same_window(
    stable_p99_s: float | None, phase: str
) -> None:
    canary = healthy_prometheus(p99_s=0.012)

    def answer(query: str, at: float) -> dict[str, Any]:
        if query.startswith("histogram_quantile") and 'slot="blue"' in query:
            return _vector() if stable_p99_s is None else _vector(({}, stable_p99_s))
        return canary(query, at)

    measurement, _ = _measure(answer, AnalysisSpec(max_p99_regression_ratio=2.0))
    assert measurement.phase == phase, measurement.message


@pytest.mark.parametrize(("value", "phase"), [(0.9, "Pass"), (0.2, "Fail"), (None, "Inconclusive")])
def test_extra_checks_are_templated_and_judged(value: float | None, phase: str) -> None:
    check = MetricCheck(
        name="agreement",
        query='avg(agree{namespace="{{namespace}}",slot="{{slot}}",revision="{{revision}}"})',
        min=0.5,
    )
    measurement, queries = _measure(healthy_prometheus(extra=value), AnalysisSpec(metrics=[check]))
    assert measurement.phase == phase
    assert 'avg(agree{namespace="ml",slot="green",revision="r2"})' in queries


def test_a_broken_extra_check_is_an_error_not_a_crash() -> None:
    check = MetricCheck(name="bad", query="x{pod='{{pod}}'}", max=1)
    measurement, _ = _measure(healthy_prometheus(), AnalysisSpec(metrics=[check]))
    assert measurement.phase == "Error"
    assert "unknown placeholder {{pod}}" in measurement.message


# --- prediction drift and the paired gate ride along ------------------------------------------

EDGES = ("0.25", "0.5", "0.75", "1.0", "+Inf")


def _buckets(pod: str, counts: list[int]) -> list[tuple[dict[str, str], float]]:
    """Cumulative bucket series of `probabilities[1]` for one pod, as the server exposes them."""
    series, total = [], 0
    for le, count in zip(EDGES, [*counts, 0], strict=True):
        total += count
        labels = {"__name__": "modelfleet_prediction_bucket", "pod": pod, "le": le}
        series.append(({**labels, "output": "probabilities[1]"}, float(total)))
    return series


def drifting_prometheus(canary: list[int], stable: list[int]) -> Answer:
    """Request counts of a healthy canary; prediction buckets grown by `canary` / `stable` since
    the step began, on top of a baseline of 100 per bucket for the stable's older rows."""
    requests = healthy_prometheus()

    def answer(query: str, at: float) -> dict[str, Any]:
        if not query.startswith("modelfleet_prediction_bucket"):
            return requests(query, at)
        grown = canary if 'slot="green"' in query else stable
        baseline = [0] * len(grown) if 'slot="green"' in query else [100] * len(grown)
        before = _buckets("a", baseline)
        after = _buckets("a", [b + g for b, g in zip(baseline, grown, strict=True)])
        if query.endswith("s]"):
            return _matrix(
                *(
                    (labels, [(T0 + 10, (old + new) / 2), (T0 + 20, new)])
                    for (labels, old), (_, new) in zip(before, after, strict=True)
                )
            )
        return _vector(*before) if 'slot="blue"' in query else _vector()

    return answer


@pytest.mark.parametrize(
    ("canary", "phase"),
    [
        ([400, 400, 400, 400], "Pass"),
        ([40, 60, 300, 1200], "Fail"),
        ([10, 10, 10, 10], "Inconclusive"),
    ],
)
def test_prediction_drift_is_counted_exactly_and_judged(canary: list[int], phase: str) -> None:
    answer = drifting_prometheus(canary, stable=[3000, 3000, 3000, 3000])
    measurement, queries = _measure(answer, AnalysisSpec(max_prediction_drift=0.2))
    assert measurement.phase == phase, measurement.message
    assert any(
        q.startswith('modelfleet_prediction_bucket{namespace="ml",deployment="fraud",slot="blue"')
        for q in queries
    )
    assert measurement.drift_output == "probabilities[1]"
    assert measurement.prediction_drift is not None
    if phase == "Fail":
        assert measurement.message.endswith(
            "> 0.20 on output `probabilities[1]` over 1,600 canary rows"
        )
        assert measurement.prediction_drift > 0.2
    if phase == "Pass":
        assert measurement.prediction_drift == pytest.approx(0.0, abs=1e-9)


def test_without_a_drift_limit_predictions_are_not_queried() -> None:
    _, queries = _measure(healthy_prometheus())
    assert not any("modelfleet_prediction" in q for q in queries)


class FailingPairs(PairedGate):
    """A paired gate that always finds the canary disagreeing."""

    def __init__(self) -> None:
        pass

    async def check(self, target: AnalysisTarget, spec: AnalysisSpec) -> list[CheckResult]:
        comparison = Comparison(rows=512, agreement=0.431, delta_mean=0.3, delta_max=0.9)
        return list(judge_paired(comparison, spec))


def _measure_paired(answer: Answer | Exception) -> Measurement:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        query, at = request.url.params["query"], float(request.url.params["time"])
        return httpx.Response(200, json={"status": "success", "data": answer(query, at)})

    async def run() -> Measurement:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            analyzer = PrometheusAndPairedGates(client, "http://p:9090", paired=FailingPairs())
            return await analyzer.measure(TARGET, AnalysisSpec(min_agreement=0.9), NOW)

    return asyncio.run(run())


@pytest.mark.parametrize(
    "answer", [healthy_prometheus(), httpx.ConnectError("refused")], ids=["healthy", "down"]
)
def test_a_paired_fail_decides_even_when_prometheus_is_down(answer: Answer | Exception) -> None:
    measurement = _measure_paired(answer)
    assert measurement.phase == "Fail"
    assert measurement.message == "agreement 43.1 % < 90 % over 512 replayed rows"
    assert measurement.agreement == 0.431
    assert measurement.replayed_rows == 512
    assert measurement.to_status().score_delta_max == 0.9


# --- the canary's share of the requests ---------------------------------------------------------

SHARED = dataclasses.replace(TARGET, weight=10, expected_share=0.10)


def two_slots(canary_ok: int, stable_ok: int) -> Answer:
    """Both slots' counters, each answered for its own slot's selector."""
    series = {"__name__": "modelfleet_requests_total", "pod": "a", "code": "200"}

    def answer(query: str, at: float) -> dict[str, Any]:
        if query.startswith("histogram_quantile"):
            return _vector(({}, 0.012))
        count = canary_ok if 'slot="green"' in query else stable_ok
        if query.endswith("s]"):
            return _matrix() if count == 0 else _matrix((series, [(T0 + 10, 0), (T0 + 20, count)]))
        return _vector()

    return answer


def test_a_canary_the_router_starves_is_held_with_the_share_it_got() -> None:
    measurement, queries = _measure(two_slots(canary_ok=0, stable_ok=600), target=SHARED)
    assert measurement.phase == "Inconclusive"
    assert measurement.message == (
        "traffic is not reaching the canary: 0.0 % of requests at weight 10 %"
    )
    assert measurement.request_share == 0.0
    assert any('slot="blue",revision="r1"' in query for query in queries)


@pytest.mark.parametrize(
    ("canary_ok", "stable_ok", "phase"),
    [(200, 1800, "Pass"), (20, 1980, "Inconclusive"), (0, 100, "Inconclusive")],
    ids=["on-weight", "starved", "too-few-to-tell"],
)
def test_the_share_is_counted_over_both_slots(canary_ok: int, stable_ok: int, phase: str) -> None:
    measurement, _ = _measure(two_slots(canary_ok, stable_ok), target=SHARED)
    assert measurement.phase == phase, measurement.message
    if canary_ok:
        assert measurement.request_share == pytest.approx(canary_ok / (canary_ok + stable_ok))
    if phase == "Pass":
        assert "not reaching" not in measurement.message
    if stable_ok == 100:  # zero of 100 could still be a 10 % share: the empty canary says so
        assert measurement.message == "no canary requests counted since the step began"


def test_in_shadow_the_share_is_not_checked_nor_the_stable_slot_queried() -> None:
    shadow = dataclasses.replace(TARGET, weight=0, expected_share=None)
    measurement, queries = _measure(two_slots(canary_ok=2000, stable_ok=20000), target=shadow)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.request_share is None
    assert not any('slot="blue"' in query for query in queries)


def rate_limited(stable_ok: int, stable_refused: int, canary_ok: int = 200) -> Answer:
    """Both slots' answered counters, and the stable slot's pods refusing `stable_refused`
    requests (429) with the tenant rate limit: counted apart, in modelfleet_rate_limited_total."""
    answered = two_slots(canary_ok, stable_ok)
    refused = {"__name__": "modelfleet_rate_limited_total", "pod": "a"}

    def answer(query: str, at: float) -> dict[str, Any]:
        if not query.startswith("modelfleet_rate_limited_total"):
            return answered(query, at)
        count = 0 if 'slot="green"' in query else stable_refused
        if not query.endswith("s]"):
            return _vector()
        return _matrix((refused, [(T0 + 10, 0), (T0 + 20, count)])) if count else _matrix()

    return answer


@pytest.mark.parametrize("limited", [True, False], ids=["rate-limited", "no-limit"])
def test_requests_the_rate_limit_refused_count_where_the_router_sent_them(limited: bool) -> None:
    """The stable slot's pods refused most of what they got (429: a tenant over its limit, the
    limit split per pod and the stable pods getting more each): by the answers alone the canary
    had 200 of 300 (67 % at weight 10, a rollback), but the router sent it 200 of 2,000."""
    target = dataclasses.replace(SHARED, splits_by_weight=True, rate_limited=limited)
    answers = rate_limited(stable_ok=100, stable_refused=1700)
    measurement, queries = _measure(answers, target=target)
    asked = any(query.startswith("modelfleet_rate_limited_total") for query in queries)
    assert asked == limited  # without spec.rateLimit nothing more is queried
    if limited:
        assert measurement.phase == "Pass", measurement.message
        assert measurement.request_share == pytest.approx(0.10)
    else:  # what counting the answers alone would do
        assert measurement.phase == "Fail"
        assert measurement.message.startswith(FAR_ABOVE), measurement.message
        assert measurement.request_share == pytest.approx(200 / 300)


# --- the share in each interval of the step (a router that hands the whole host to one side) -----

WEIGHTED = dataclasses.replace(SHARED, splits_by_weight=True)
LATER = SINCE + timedelta(seconds=60)  # the default interval (10 s) cuts 10-60 s into five


def scraped(per_second: Callable[[int], int], offset: float = 0.0) -> list[tuple[float, float]]:
    """A counter scraped every 2 s (from `offset`) that gains per_second(s) in second s."""
    points, total, second = [], 0, 0
    for stamp in [offset + 2 * k for k in range(1, 31)]:
        while second < stamp:
            total, second = total + per_second(second), second + 1
        points.append((stamp, float(total)))
    return points


def flipping(canary: Callable[[int], int], stable: Callable[[int], int]) -> Answer:
    """Both slots at 50 req/s in all, split second by second as given."""
    series = {"__name__": "modelfleet_requests_total", "pod": "a", "code": "200"}
    points = {"green": scraped(canary, 1.0), "blue": scraped(stable)}  # scrape phases differ

    def answer(query: str, at: float) -> dict[str, Any]:
        if query.startswith("histogram_quantile"):
            return _vector(({}, 0.012))
        slot = "green" if 'slot="green"' in query else "blue"
        if query.endswith("s]"):
            return _matrix((series, [(T0 + t, v) for t, v in points[slot] if T0 + t <= at]))
        return _vector((series, 0.0))

    return answer


def split(canary_at: Callable[[int], int]) -> Answer:
    return flipping(canary_at, lambda second: 50 - canary_at(second))


TOOK_IT_ALL = split(lambda second: 50 if second >= 40 else 0)  # about 33 % since the step
LOST_IT = split(lambda second: 10 if second < 30 else 0)  # about 10 % since the step
ON_WEIGHT = split(lambda second: 5)


def test_a_canary_that_took_the_whole_host_for_an_interval_is_rolled_back() -> None:
    measurement, _ = _measure(TOOK_IT_ALL, target=WEIGHTED, now=LATER)
    assert measurement.phase == "Fail", measurement.message
    assert measurement.message == (
        "traffic to the canary far exceeds its weight: 100.0 % of requests at weight 10 % "
        # the canary's scrapes come a second later than the stable slot's
        "from 40 to 50 s into the step (450 of 450 requests; 32.2 % since the step began): "
        "the router does not honour the weight"
    )
    assert measurement.request_share == pytest.approx(0.322, abs=0.001)  # since the step


def test_a_canary_that_lost_the_host_is_held_by_the_latest_interval_it_got_nothing_in() -> None:
    measurement, _ = _measure(LOST_IT, target=WEIGHTED, now=LATER)
    assert measurement.phase == "Inconclusive", measurement.message
    assert measurement.message == (
        "traffic is not reaching the canary: 0.0 % of requests at weight 10 % "
        "from 50 to 60 s into the step (0 of 500 requests; 10.0 % since the step began): "
        "the router does not honour the weight"
    )


def test_an_interval_that_went_wrong_keeps_the_step_from_passing_when_it_is_back_on_weight() -> (
    None
):
    measurement, _ = _measure(
        split(lambda second: 0 if 20 <= second < 30 else 5), target=WEIGHTED, now=LATER
    )
    assert measurement.phase == "Inconclusive", measurement.message
    assert "% of requests at weight 10 % from 20 to 30 s into the step (" in measurement.message


@pytest.mark.parametrize(
    ("answer", "target", "now"),
    [
        (ON_WEIGHT, WEIGHTED, LATER),
        # the replica-ratio split: connections stick to pods, an interval says little
        (LOST_IT, dataclasses.replace(WEIGHTED, splits_by_weight=False), LATER),
        # the first interval after the weight was set is left to the proxy to carry it
        (split(lambda second: 0 if second < 10 else 5), WEIGHTED, SINCE + timedelta(seconds=19)),
    ],
    ids=["on-weight", "replica-ratio", "first-interval"],
)
def test_the_intervals_hold_nothing_a_router_that_honours_the_weight_does(
    answer: Answer, target: AnalysisTarget, now: datetime
) -> None:
    measurement, _ = _measure(answer, AnalysisSpec(min_requests=20), target, now)
    assert measurement.phase == "Pass", measurement.message
