"""The analyzer the reconcile runs: every gate of a canary step, read at the same time.

`PrometheusAndPairedGates` is the composite of the two places a verdict comes from: the
Prometheus reader (error rate, p99 and its regression, request share, prediction drift, accuracy
and the custom metric checks: `modelfleet.operator.prometheus`) and the paired gate, which replays
the same rows to one Ready pod of each slot (`modelfleet.operator.replay`). Its `measure` never
raises, and a Fail of either wins over the other's Error (`analysis.combine`).
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import httpx

from modelfleet.operator.analysis import DEFAULT_Z, CheckResult, advisory_gates, combine
from modelfleet.operator.api import AnalysisSpec
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.prometheus import PrometheusReader
from modelfleet.operator.replay import PairedGate, ReplayClient


class PrometheusAndPairedGates:
    """Implements `Analyzer`: the Prometheus reader and the paired gate over one httpx client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        default_url: str,
        *,
        timeout_s: float = 5.0,
        z: float = DEFAULT_Z,
        paired: PairedGate | None = None,
    ) -> None:
        self._prometheus = PrometheusReader(client, default_url, timeout_s, z)
        self._paired = paired or PairedGate(ReplayClient(client))

    async def measure(
        self, target: AnalysisTarget, spec: AnalysisSpec, now: datetime
    ) -> Measurement:
        window_s = math.ceil((now - target.since).total_seconds())
        if window_s <= 0:
            return combine([CheckResult("window", "Inconclusive", "the step has just begun")], now)
        read, paired = await asyncio.gather(
            self._prometheus.read(target, spec, now, window_s), self._paired.check(target, spec)
        )
        return combine(
            [*read.results, *paired],
            now,
            requests=read.requests,
            p99_ms=read.p99_ms,
            stable_p99_ms=read.stable_p99_ms,
            advisory=advisory_gates(spec),
        )
