"""Which series the gates read from Prometheus, and counting their raw samples exactly.

Counters are counted since a moment, not with `increase()`, whose extrapolation turns 3 errors into 3.4 and whose first sample of a new
series is lost: the raw samples of every series in the window are read (`metric{…}[Ws]`), each
diffed against its value at `since` (absent there → it was created later, from 0: the 5xx series
appears on the first error), with counter resets (a restarted pod) counted from zero. The rollout
gates, the feedback reader and the monitoring reader all count this way. Pure: the answers come in.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelfleet.operator.request_share import IntervalCounts

REQUESTS_METRIC = "modelfleet_requests_total"
RATE_LIMITED_METRIC = "modelfleet_rate_limited_total"  # 429s of the tenant limit, counted apart
DURATION_BUCKETS_METRIC = "modelfleet_request_duration_seconds_bucket"
PREDICTION_BUCKETS_METRIC = "modelfleet_prediction_bucket"

Labels = frozenset[tuple[str, str]]
Sample = tuple[float, float]  # (unix time, value)


@dataclass(frozen=True)
class CounterSamples:
    """One slot's counter series as read: values at `since` and raw samples after it."""

    baselines: Mapping[Labels, float]
    windows: Mapping[Labels, Sequence[Sample]]


@dataclass(frozen=True)
class RequestCounts:
    requests: float
    errors: float
    most_scrapes: int  # most samples any one series has in the window
    series: int = 0  # series (pod × code) seen in the window
    samples: CounterSamples | None = None  # what they were counted from (the share by interval)


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
        samples=CounterSamples(baselines, windows),
    )


def routed(answered: RequestCounts, refused: RequestCounts) -> RequestCounts:
    """Every request the router sent to a slot: those its pods answered and those the tenant rate
    limit refused (a 429 is not in the answered counter, so the gates never judge it, but it
    still shows where the router sent traffic). The refused series are keyed with their metric's
    name, so they never merge with an answered one."""
    parts = [counts.samples for counts in (answered, refused) if counts.samples is not None]
    return RequestCounts(
        requests=answered.requests + refused.requests,
        errors=answered.errors,
        most_scrapes=max(answered.most_scrapes, refused.most_scrapes),
        series=answered.series + refused.series,
        samples=CounterSamples(
            {labels: value for part in parts for labels, value in part.baselines.items()},
            {labels: samples for part in parts for labels, samples in part.windows.items()},
        ),
    )


def scrape_gap(*slots: CounterSamples) -> float | None:
    """The median time between two scrapes of a series (None: no series scraped twice)."""
    gaps = sorted(
        later[0] - earlier[0]
        for slot in slots
        for samples in slot.windows.values()
        for earlier, later in itertools.pairwise(samples)
    )
    return gaps[len(gaps) // 2] if gaps else None


# A judged interval spans at least this many scrapes: one scrape more or fewer of a slot in it
# (scrape phases differ between pods) moves its count by a quarter at most.
SCRAPES_PER_INTERVAL = 4


def interval_bounds(since: float, at: float, interval_s: float, gap: float) -> list[float]:
    """Where a step is cut into intervals judged one by one. The first `interval_s` after the
    weight was set is left to the proxy to carry it; the rest, up to `at`, is cut into intervals
    of `interval_s` (at least SCRAPES_PER_INTERVAL scrapes) ending at `at`, the oldest taking
    what is left over. No bounds while the step is shorter."""
    length = max(interval_s, SCRAPES_PER_INTERVAL * gap)
    start = since + interval_s
    count = math.floor((at - start) / length)
    if count < 1:
        return []
    return [start, *(at - k * length for k in range(count - 1, -1, -1))]


def requests_by_window(
    counters: CounterSamples, since: float, bounds: Sequence[float]
) -> list[float]:
    """Requests in each window (bounds[i], bounds[i+1]] (ascending bounds, all ≥ `since`): a
    series' gain between two scrapes counts in the window of the later scrape, exactly as
    `count_requests` counts it."""
    totals = [0.0] * (len(bounds) - 1)
    for labels, samples in counters.windows.items():
        previous = counters.baselines.get(labels, 0.0)  # absent: born later, from 0
        for stamp, value in samples:
            if stamp <= since:
                continue
            gain = value - previous if value >= previous else value
            previous = value
            index = bisect.bisect_left(bounds, stamp) - 1
            if 0 <= index < len(totals):
                totals[index] += gain
    return totals


def p99_query(namespace: str, name: str, slot: str, revision: str, window_s: int) -> str:
    """p99 of one slot's own histogram over the window, in seconds."""
    matchers = selector(namespace, name, slot, revision)
    return (
        f"histogram_quantile(0.99, sum by (le) "
        f"(increase({DURATION_BUCKETS_METRIC}{matchers}[{window_s}s])))"
    )


def labels_of(metric: Mapping[str, str]) -> Labels:
    return frozenset((key, value) for key, value in metric.items() if key != "__name__")


def named_labels_of(metric: Mapping[str, str]) -> Labels:
    """A series' labels with its metric name: one query reads several counters."""
    return frozenset(metric.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def share_intervals(
    canary: RequestCounts, stable: RequestCounts, since: float, at: float, interval_s: float
) -> list[IntervalCounts]:
    """Both slots' requests in each interval of the step (none while it is short)."""
    if canary.samples is None or stable.samples is None:
        return []
    gap = scrape_gap(canary.samples, stable.samples)
    if gap is None:
        return []
    bounds = interval_bounds(since, at, interval_s, gap)
    canary_by = requests_by_window(canary.samples, since, bounds)
    stable_by = requests_by_window(stable.samples, since, bounds)
    return [
        IntervalCounts(start - since, end - since, canary_count, stable_count)
        for start, end, canary_count, stable_count in zip(
            bounds, bounds[1:], canary_by, stable_by, strict=False
        )
    ]
