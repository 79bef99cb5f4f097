"""Fault injection is exact: a deterministic counter, never a random draw."""

from __future__ import annotations

import pytest

from modelfleet.server.faults import FaultInjector


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.1, 1 / 3, 0.5, 1.0])
def test_every_window_holds_the_share(rate: float) -> None:
    faults = FaultInjector(error_rate=rate)
    outcomes = [faults.should_fail() for _ in range(3000)]
    assert sum(outcomes) == round(3000 * rate)
    for start in range(0, 2900, 97):
        window = sum(outcomes[start : start + 100])
        assert abs(window - 100 * rate) <= 1


def test_five_percent_fails_every_twentieth_request() -> None:
    faults = FaultInjector(error_rate=0.05)
    failed = [n for n in range(1, 101) if faults.should_fail()]
    assert failed == [20, 40, 60, 80, 100]


def test_off_by_default() -> None:
    faults = FaultInjector()
    assert not faults.enabled
    assert faults.latency_s == 0
    assert not any(faults.should_fail() for _ in range(1000))


def test_latency_is_in_seconds() -> None:
    assert FaultInjector(latency_ms=250).latency_s == 0.25
