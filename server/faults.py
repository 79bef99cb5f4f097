"""Fault injection for rollout drills (off by default).

`MODELFLEET_FAULT_ERROR_RATE=r` answers a share r of inference requests with HTTP 500.
The choice is a deterministic counter, not a random draw: request n (counting from 1)
fails exactly when floor(n·r) > floor((n-1)·r), so r = 0.05 fails requests 20, 40, 60, …
and any window of k consecutive requests holds floor(k·r) or ceil(k·r) failures.
`MODELFLEET_FAULT_LATENCY_MS=m` adds m milliseconds before every inference answer
(failed or not), so it shows in the latency histogram. Health and metadata are untouched.
"""

from __future__ import annotations

from fractions import Fraction


class FaultInjector:
    """Decides, request by request, whether to fail; and how long to delay."""

    def __init__(self, error_rate: float = 0.0, latency_ms: float = 0.0) -> None:
        self._rate = Fraction(error_rate).limit_denominator(1_000_000)
        self._count = 0
        self.error_rate = error_rate
        self.latency_s = latency_ms / 1000.0

    @property
    def enabled(self) -> bool:
        return self._rate > 0 or self.latency_s > 0

    def should_fail(self) -> bool:
        """Count one inference request; True when this one is to be answered 500."""
        if self._rate == 0:
            return False
        self._count += 1
        before = (self._count - 1) * self._rate.numerator // self._rate.denominator
        after = self._count * self._rate.numerator // self._rate.denominator
        return after > before
