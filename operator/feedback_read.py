"""Labels counted over the monitoring window, read from Prometheus for the monitoring loop.

Two queries per look for every slot and revision of one ModelDeployment: the servers' feedback
counters at the window's start and their raw samples in it, counted exactly (`series_increase`, as
the rollout gates and `monitor_read` count) and summed over pods by `feedback.sum_feedback`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

import httpx

from modelfleet.operator.feedback import COUNTERS, FeedbackCounts, SlotKey, sum_feedback
from modelfleet.operator.prometheus import query_api
from modelfleet.operator.prometheus_counts import series_increase


class FeedbackReader(Protocol):
    """Reads a ModelDeployment's labels over a window (Prometheus, or a fake in unit tests)."""

    async def read(
        self, namespace: str, name: str, window_s: float, now: float
    ) -> dict[SlotKey, FeedbackCounts]: ...


class PrometheusFeedbackReader:
    """`FeedbackReader` over the Prometheus HTTP API; raises `PrometheusError` when it cannot."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float = 10.0) -> None:
        self._client = client
        self.url = url.rstrip("/")
        self._timeout = timeout_s

    async def read(
        self, namespace: str, name: str, window_s: float, now: float
    ) -> dict[SlotKey, FeedbackCounts]:
        series = (
            '{__name__=~"' + "|".join(COUNTERS) + f'",namespace="{_escape(namespace)}",'
            f'deployment="{_escape(name)}"}}'
        )
        since = now - window_s
        (_, at_start), (_, window) = await asyncio.gather(
            query_api(self._client, self.url, series, since, self._timeout),
            query_api(
                self._client, self.url, f"{series}[{math.ceil(window_s)}s]", now, self._timeout
            ),
        )
        gains = series_increase(
            {frozenset(item["metric"].items()): float(item["value"][1]) for item in at_start},
            {
                frozenset(item["metric"].items()): [(float(t), float(v)) for t, v in item["values"]]
                for item in window
            },
            since,
        )
        return sum_feedback((dict(labels), gain) for labels, gain in gains.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
