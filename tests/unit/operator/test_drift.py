"""The distribution gate's math: PSI with Laplace smoothing, empty buckets, the null expectation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelfleet.operator.drift import (
    bucket_counts,
    judge_drift,
    null_psi,
    output_drifts,
    parse_le,
    psi,
    sum_buckets,
)

EDGES = [0.1, 0.2, 0.5, 0.8, 1.0, math.inf]


def cumulative(counts: list[float], edges: list[float] = EDGES) -> dict[float, float]:
    return dict(zip(edges, np.cumsum(counts).tolist(), strict=True))


def test_psi_by_hand() -> None:
    canary, stable = [30.0, 70.0], [50.0, 50.0]
    p = [(30.5) / 101, (70.5) / 101]
    q = [(50.5) / 101, (50.5) / 101]
    expected = sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert psi(canary, stable) == pytest.approx(expected)
    assert psi(stable, canary) == pytest.approx(expected)  # symmetric


def test_same_shares_read_zero_whatever_the_sample_sizes() -> None:
    assert psi([10, 20, 30], [100, 200, 300], smoothing=0) == pytest.approx(0.0)


def test_buckets_empty_in_both_slots_add_nothing() -> None:
    # 10× more stable rows: smoothed, each bucket empty on both sides would add a positive term
    canary, stable = [40.0, 60.0], [400.0, 600.0]
    padded_canary = [40.0, 0.0, 0.0, 60.0, 0.0, 0.0]
    padded_stable = [400.0, 0.0, 0.0, 600.0, 0.0, 0.0]
    assert psi(padded_canary, padded_stable) == pytest.approx(psi(canary, stable))


def test_an_empty_bucket_on_one_side_is_large_but_finite() -> None:
    value = psi([0.0, 100.0], [100.0, 0.0])
    assert math.isfinite(value)
    assert value > 5


def test_no_rows_on_a_side_reads_zero() -> None:
    assert psi([0.0, 0.0], [10.0, 5.0]) == 0.0


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        psi([1.0], [1.0, 2.0])


@pytest.mark.parametrize(("canary_rows", "stable_rows"), [(500, 4500), (2000, 2000), (800, 7200)])
def test_null_expectation_matches_two_samples_of_one_distribution(
    canary_rows: int, stable_rows: int
) -> None:
    """(k − 1)(1/n_c + 1/n_s) is the mean PSI of two samples from the same distribution."""
    rng = np.random.default_rng(7)
    shares = np.array([0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05])
    values = [
        psi(
            rng.multinomial(canary_rows, shares).tolist(),
            rng.multinomial(stable_rows, shares).tolist(),
        )
        for _ in range(400)
    ]
    expected = null_psi(len(shares), canary_rows, stable_rows)
    assert np.mean(values) == pytest.approx(expected, rel=0.15)
    assert max(values) < 0.1  # the usual "no shift" reading stays far from these samples


def test_null_psi_without_rows_is_infinite() -> None:
    assert null_psi(10, 0, 100) == math.inf


def test_bucket_counts_from_cumulative_le() -> None:
    counts = [1.0, 2.0, 0.0, 4.0, 3.0, 0.0]
    assert bucket_counts(cumulative(counts), EDGES) == counts


def test_bucket_counts_never_negative_when_a_slower_series_lags() -> None:
    assert bucket_counts({1.0: 5.0, 2.0: 4.0, math.inf: 6.0}, [1.0, 2.0, math.inf]) == [
        5.0,
        0.0,
        1.0,
    ]


def test_sum_buckets_adds_pods_per_output_and_edge() -> None:
    gains = [
        ({"output": "probabilities[1]", "le": "0.5", "pod": "a"}, 3.0),
        ({"output": "probabilities[1]", "le": "0.5", "pod": "b"}, 4.0),
        ({"output": "probabilities[1]", "le": "+Inf", "pod": "a"}, 5.0),
        ({"output": "predictions", "le": "1.0", "pod": "a"}, 1.0),
    ]
    assert sum_buckets(gains) == {
        "probabilities[1]": {0.5: 7.0, math.inf: 5.0},
        "predictions": {1.0: 1.0},
    }
    assert parse_le("+Inf") == math.inf


def test_only_shared_edges_and_outputs_are_compared() -> None:
    canary = {"a": {0.5: 10.0, 1.0: 20.0, 2.0: 30.0}, "only-canary": {1.0: 5.0}}
    stable = {"a": {0.5: 10.0, 2.0: 30.0}}
    (drift,) = output_drifts(canary, stable)
    assert drift.output == "a"
    assert drift.canary_rows == 30.0


def _slot(counts: list[float], output: str = "probabilities[1]") -> dict[str, dict[float, float]]:
    return {output: cumulative(counts)}


SHIFTED = [10.0, 10.0, 30.0, 150.0, 400.0, 0.0]
BASE = [200.0, 150.0, 150.0, 50.0, 50.0, 0.0]


def test_a_clear_shift_fails_with_the_contract_message() -> None:
    result = judge_drift(
        _slot([v * 5 for v in SHIFTED]), _slot([v * 45 for v in BASE]), 0.2, 500, weight=10
    )
    assert result is not None
    assert result.phase == "Fail", result.message
    assert result.message.startswith("prediction drift PSI ")
    assert result.message.endswith("> 0.20 on output `probabilities[1]` over 3,000 canary rows")
    assert result.measured()["drift_output"] == "probabilities[1]"


def test_the_same_distribution_passes() -> None:
    result = judge_drift(_slot([v * 5 for v in BASE]), _slot([v * 45 for v in BASE]), 0.2, 500, 10)
    assert result is not None
    assert result.phase == "Pass", result.message
    assert "≤ 0.20" in result.message


def test_too_few_canary_rows_is_inconclusive_even_when_shifted() -> None:
    result = judge_drift(_slot(SHIFTED), _slot([v * 45 for v in BASE]), 0.2, 5000, 10)
    assert result is not None
    assert result.phase == "Inconclusive"
    assert "fewer than 5,000 canary predictions" in result.message


def test_no_canary_rows_is_inconclusive() -> None:
    result = judge_drift({}, _slot(BASE), 0.2, 500, 10)
    assert result is not None
    assert result.phase == "Inconclusive"


def test_at_100_percent_without_stable_rows_the_check_is_skipped() -> None:
    assert judge_drift(_slot(BASE), {}, 0.2, 1, weight=100) is None
    below = judge_drift(_slot(BASE), {}, 0.2, 1, weight=50)
    assert below is not None
    assert below.phase == "Inconclusive"


def test_the_largest_psi_over_outputs_is_judged() -> None:
    canary = {**_slot([v * 5 for v in BASE], "p[0]"), **_slot([v * 5 for v in SHIFTED], "p[2]")}
    stable = {**_slot([v * 5 for v in BASE], "p[0]"), **_slot([v * 5 for v in BASE], "p[2]")}
    result = judge_drift(canary, stable, 0.2, 500, 25)
    assert result is not None
    assert result.output == "p[2]"
    assert result.phase == "Fail"
