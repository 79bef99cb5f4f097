"""The monitoring statistics and verdicts, by hand: PSI, KS, W1, their floors, the data-quality
bound, the conditions' messages and the figures of status.monitoring."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.operator import reasons
from modelfleet.operator.api import MonitoringSpec, MonitoringThresholds, WebhookStatus
from modelfleet.operator.monitoring import (
    MAX_FEATURES,
    FeatureCounts,
    MonitoredWindow,
    OutputCounts,
    cumulative_by,
    evaluate,
    unavailable,
)
from modelfleet.operator.monitoring_stats import (
    binned_stddev,
    binned_wasserstein,
    cdf_gaps,
    ks_critical,
    measure_drift,
    psi_floor,
    rate_rise_beyond_noise,
)

INF = math.inf
EDGES = [-1.0, 0.0, 1.0]
# a baseline of four equal bins: (-inf, -1], (-1, 0], (0, 1], (1, inf)
QUARTERS = {-1.0: 0.25, 0.0: 0.5, 1.0: 0.75, INF: 1.0}


def _live(*counts: float) -> dict[float, float]:
    """Cumulative live counts on EDGES + +Inf from per-bucket counts."""
    cumulative, total = {}, 0.0
    for edge, count in zip([*EDGES, INF], counts, strict=True):
        total += count
        cumulative[edge] = total
    return cumulative


def _feature(name: str, *counts: float, **fields: Any) -> FeatureCounts:
    defaults: dict[str, Any] = {
        "baseline_shares": QUARTERS,
        "baseline_stddev": 1.0,
        "baseline_missing_ratio": 0.0,
        "baseline_out_of_range_ratio": 0.0,
    }
    return FeatureCounts(name=name, live=_live(*counts), **{**defaults, **fields})


def _window(*features: FeatureCounts, rows: float | None = None, **fields: Any) -> MonitoredWindow:
    defaults: dict[str, Any] = {
        "baseline_loaded": True,
        "baseline_configured": True,
        "baseline_rows": 100_000.0,
    }
    if rows is None:
        rows = max(feature.live[INF] + feature.missing for feature in features)
    return MonitoredWindow(rows=rows, features=features, **{**defaults, **fields})


SPEC = MonitoringSpec()


# --- statistics -------------------------------------------------------------------------------


def test_ks_critical_value_is_c_alpha_times_the_size_term() -> None:
    c_alpha = math.sqrt(math.log(2 / 0.001) / 2)
    assert c_alpha == pytest.approx(1.9494, abs=1e-4)
    assert ks_critical(1_200, 100_000) == pytest.approx(c_alpha * math.sqrt(101_200 / 1.2e8))
    assert ks_critical(0, 100) == math.inf


def test_psi_floor_is_the_null_mean_plus_five_sd() -> None:
    scale = 1 / 1_000 + 1 / 20_000
    assert psi_floor(10, 1_000, 20_000) == pytest.approx(9 * scale + 5 * math.sqrt(18) * scale)
    assert psi_floor(10, 0, 20_000) == math.inf


def test_cdf_gaps_and_binned_wasserstein_by_hand() -> None:
    # live: all mass in (0, 1]; baseline quarters: F_live − F_base at -1, 0, 1 = -.25, -.5, +.25
    gaps = cdf_gaps([0, 0, 100, 0], [25, 25, 25, 25])
    assert gaps == pytest.approx([-0.25, -0.5, 0.25])
    # (-1, 0]: same sign, trapezoid (0.25 + 0.5)/2; (0, 1]: crosses zero, (0.5² + 0.25²)/(2·0.75)
    expected = 0.375 + (0.25 + 0.0625) / 1.5
    assert binned_wasserstein(gaps, EDGES) == pytest.approx(expected)


def test_binned_wasserstein_of_a_shifted_uniform_is_the_shift() -> None:
    edges = [i / 100 for i in range(101)]
    shift = 0.05

    def cdf(x: float, delta: float) -> float:
        return min(max(x - delta, 0.0), 1.0)

    gaps = [cdf(edge, shift) - cdf(edge, 0.0) for edge in edges]
    # inside [0, 1] the shifted CDF lags by 0.05 except where it has not started: area 0.05 − 0.05²/2
    assert binned_wasserstein(gaps, edges) == pytest.approx(shift - shift**2 / 2, rel=1e-3)


def test_binned_stddev_puts_inner_bins_at_their_middle() -> None:
    # half the mass in (0, 2] (middle 1), half in (2, 4] (middle 3): sd 1
    assert binned_stddev({0.0: 0.0, 2.0: 0.5, 4.0: 1.0, INF: 1.0}) == pytest.approx(1.0)
    assert binned_stddev({1.0: 1.0, INF: 1.0}) is None  # one finite edge: no spread to measure


def test_identical_distributions_read_zero_and_do_not_drift() -> None:
    drift = measure_drift(_live(250, 250, 250, 250), QUARTERS, 100_000, 1.0, SPEC.thresholds, 1000)
    assert (drift.psi, drift.ks, drift.wasserstein) == pytest.approx((0.0, 0.0, 0.0))
    assert drift.drifting is False
    assert drift.rows == 1000


def test_a_moved_distribution_drifts_with_every_figure() -> None:
    drift = measure_drift(_live(100, 200, 300, 400), QUARTERS, 100_000, 1.0, SPEC.thresholds, 1000)
    assert drift.ks == pytest.approx(0.2)  # 0.3 vs 0.5 at edge 0
    assert drift.psi is not None
    assert drift.psi > 0.1
    # gaps -0.15, -0.2, -0.15 at -1, 0, 1: two trapezoids of (0.15 + 0.2)/2
    assert drift.wasserstein == pytest.approx(0.35)
    assert drift.drifting is True


def test_too_few_rows_keep_the_figures_but_give_no_verdict() -> None:
    drift = measure_drift(_live(10, 20, 30, 40), QUARTERS, 100_000, 1.0, SPEC.thresholds, 1000)
    assert drift.ks == pytest.approx(0.2)
    assert drift.drifting is None


def test_the_noise_floor_holds_back_a_threshold_set_below_it() -> None:
    tiny = MonitoringThresholds(psi=1e-6, ks=1e-6, wasserstein=1e-6)
    # 2 % off in one bin over 1,000 rows: far below the KS floor (≈ 0.062) and the PSI floor
    drift = measure_drift(_live(240, 260, 250, 250), QUARTERS, 100_000, 1.0, tiny, 100)
    assert drift.floors is not None
    assert drift.ks is not None
    assert drift.ks > tiny.ks
    assert drift.ks < drift.floors.ks
    assert drift.drifting is False
    # the same shape over 200,000 rows is beyond every floor
    big = measure_drift(_live(48_000, 52_000, 50_000, 50_000), QUARTERS, 1_000_000, 1.0, tiny, 100)
    assert big.drifting is True


def test_w1_floor_is_the_ks_floor_times_the_span_over_the_stddev() -> None:
    drift = measure_drift(_live(250, 250, 250, 250), QUARTERS, 100_000, 0.5, SPEC.thresholds, 1)
    assert drift.floors is not None
    assert drift.floors.wasserstein == pytest.approx(ks_critical(1000, 100_000) * 2 / 0.5)


def test_w1_needs_a_stddev_and_two_finite_edges() -> None:
    no_sd = measure_drift(_live(250, 250, 250, 250), QUARTERS, 100_000, None, SPEC.thresholds, 1)
    assert no_sd.wasserstein is None
    assert no_sd.drifting is False  # PSI and KS still judge
    constant = measure_drift(
        {3.0: 500, INF: 500}, {3.0: 1.0, INF: 1.0}, 1000, 0.0, SPEC.thresholds, 1
    )
    assert constant.wasserstein is None
    assert constant.ks == 0.0


@given(
    live=st.lists(st.integers(0, 10_000), min_size=4, max_size=4).filter(lambda c: sum(c) > 0),
    shares=st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4),
    widths=st.lists(st.floats(0.01, 100.0), min_size=2, max_size=2),
    stddev=st.floats(0.01, 100.0),
)
def test_figures_stay_in_range_and_w1_never_passes_ks_times_the_span(
    live: list[int], shares: list[float], widths: list[float], stddev: float
) -> None:
    """The W1 floor rests on W1 ≤ KS · span / σ: it must hold for any counts on any edges."""
    edges = [0.0, widths[0], widths[0] + widths[1]]
    total = sum(shares)
    cumulative_shares, below = {}, 0.0
    for edge, share in zip([*edges, INF], shares, strict=True):
        below += share / total
        cumulative_shares[edge] = min(below, 1.0)
    cumulative_shares[INF] = 1.0
    cumulative_live, counted = {}, 0.0
    for edge, count in zip([*edges, INF], live, strict=True):
        counted += count
        cumulative_live[edge] = counted
    drift = measure_drift(cumulative_live, cumulative_shares, 5_000, stddev, SPEC.thresholds, 1)
    assert drift.ks is not None
    assert drift.psi is not None
    assert drift.wasserstein is not None
    assert 0.0 <= drift.ks <= 1.0 + 1e-12
    assert drift.psi >= 0.0
    span = edges[-1] - edges[0]
    assert 0.0 <= drift.wasserstein <= drift.ks * span / stddev + 1e-9


@pytest.mark.parametrize(
    ("count", "rows", "baseline", "flagged"),
    [
        (200, 2_000, 0.0, True),  # 10 % vs none
        (6, 100, 0.02, False),  # a rise of 4 points: under the 5-point threshold
        (36, 100, 0.30, False),  # 6 points over 100 rows: noise
        (36_000, 100_000, 0.30, True),  # 6 points over 100,000 rows: real
        (0, 0, 0.0, False),  # nothing scored
        (100, 100, 0.5, True),  # everything missing
    ],
)
def test_a_rate_is_flagged_above_threshold_and_beyond_noise(
    count: float, rows: float, baseline: float, flagged: bool
) -> None:
    assert rate_rise_beyond_noise(count, rows, baseline, 0.05) is flagged


# --- verdicts ---------------------------------------------------------------------------------


def test_drifting_names_the_drifting_features_worst_first_with_values() -> None:
    window = _window(
        _feature("f1", 250, 250, 250, 250),
        _feature("f3", 0, 0, 5_000, 5_000),
        _feature("f7", 1_500, 2_000, 3_000, 3_500),
        window="1h",
    )
    verdict = evaluate(window, SPEC)
    drifting = verdict.drifting
    assert (drifting.type, drifting.status, drifting.reason) == (
        reasons.DRIFTING,
        "True",
        reasons.DRIFT_DETECTED,
    )
    pattern = (
        r"^f3 PSI \d+\.\d\d, KS 0\.50, W1 \d+\.\d\d over 10,000 rows in the last 1h; "
        r"f7 PSI \d\.\d\d, KS 0\.15, W1 \d\.\d\d over 10,000 rows$"
    )
    assert re.match(pattern, drifting.message), drifting.message
    assert [f.name for f in verdict.features] == ["f3", "f7", "f1"]
    assert [f.drifting for f in verdict.features] == [True, True, False]


def test_no_drift_is_false_with_the_largest_figures() -> None:
    verdict = evaluate(_window(_feature("f1", 2_500, 2_500, 2_500, 2_500)), SPEC)
    assert verdict.drifting.status == "False"
    assert verdict.drifting.reason == reasons.NO_DRIFT
    assert verdict.drifting.message.startswith("no drift in 1 of 1 features over 10,000 rows")
    assert "largest: f1 PSI 0.00, KS 0.00, W1 0.00" in verdict.drifting.message


def test_too_few_samples_is_unknown_for_both_conditions() -> None:
    verdict = evaluate(_window(_feature("f1", 100, 100, 100, 100)), SPEC)
    assert (verdict.drifting.status, verdict.drifting.reason) == (
        "Unknown",
        reasons.TOO_FEW_SAMPLES,
    )
    assert "fewer than 1,000 non-missing rows of every feature" in verdict.drifting.message
    assert "(most: f1 400)" in verdict.drifting.message
    assert (verdict.data_quality.status, verdict.data_quality.reason) == (
        "Unknown",
        reasons.TOO_FEW_SAMPLES,
    )
    assert verdict.features[0].drifting is None
    assert "drifting" not in verdict.features[0].model_dump(by_alias=True, exclude_none=True)


def test_a_feature_without_enough_values_is_not_judged_but_named() -> None:
    window = _window(
        _feature("f1", 2_500, 2_500, 2_500, 2_500),
        _feature("f2", 10, 10, 10, 10, missing=9_960),
    )
    verdict = evaluate(window, SPEC)
    assert verdict.drifting.status == "False"
    assert "not judged (fewer than 1,000 rows): f2 40" in verdict.drifting.message
    assert verdict.data_quality.status == "True"
    assert verdict.data_quality.message == (
        "f2 missing 99.6 % vs 0.0 % in baseline over 10,000 rows in the last 1h"
    )


def test_data_quality_names_missing_and_out_of_range_rises() -> None:
    window = _window(
        _feature("f1", 2_500, 2_500, 2_500, 2_500),
        _feature("f7", 2_200, 2_200, 2_200, 2_200, missing=1_200),
        _feature(
            "f9", 2_500, 2_500, 2_500, 2_500, out_of_range=900, baseline_out_of_range_ratio=0.002
        ),
    )
    verdict = evaluate(window, SPEC)
    assert verdict.data_quality.status == "True"
    assert verdict.data_quality.reason == reasons.DATA_QUALITY_DEGRADED
    assert verdict.data_quality.message == (
        "f7 missing 12.0 % vs 0.0 % in baseline over 10,000 rows in the last 1h; "
        "f9 out of range 9.0 % vs 0.2 % in baseline"
    )
    assert verdict.drifting.status == "False"  # missing values move no bin
    by_name = {f.name: f for f in verdict.features}
    assert by_name["f7"].missing_rate == pytest.approx(0.12)
    assert by_name["f9"].baseline_out_of_range_rate == pytest.approx(0.002)


def test_data_quality_within_thresholds_is_false() -> None:
    verdict = evaluate(_window(_feature("f1", 2_500, 2_500, 2_500, 2_400, missing=100)), SPEC)
    assert verdict.data_quality.status == "False"
    assert verdict.data_quality.reason == reasons.WITHIN_BASELINE
    assert "10,000 rows in the last 1h" in verdict.data_quality.message


@pytest.mark.parametrize(
    ("configured", "says"),
    [
        (False, "set spec.monitoring.baselineUri"),
        (True, "modelfleet_baseline_loaded 0"),
    ],
)
def test_without_a_loaded_baseline_drift_is_unknown_and_data_quality_still_runs(
    configured: bool, says: str
) -> None:
    feature = FeatureCounts("f7", _live(2_000, 2_000, 2_000, 2_000), missing=2_000)
    window = MonitoredWindow(
        rows=10_000, features=[feature], baseline_loaded=False, baseline_configured=configured
    )
    verdict = evaluate(window, SPEC)
    assert (verdict.drifting.status, verdict.drifting.reason) == ("Unknown", reasons.NO_BASELINE)
    assert says in verdict.drifting.message
    assert verdict.data_quality.status == "True"
    assert verdict.data_quality.message.startswith("f7 missing 20.0 % (no baseline)")


def test_prediction_drift_counts_and_is_named_as_a_prediction() -> None:
    baseline = {0.25: 0.25, 0.5: 0.5, 0.75: 0.75, 1.0: 1.0, INF: 1.0}
    moved = {0.25: 0.0, 0.5: 500.0, 0.75: 5_000.0, 1.0: 10_000.0, INF: 10_000.0}
    window = _window(
        _feature("f1", 2_500, 2_500, 2_500, 2_500),
        outputs=[OutputCounts("probabilities[1]", moved, baseline)],
    )
    verdict = evaluate(window, SPEC)
    assert verdict.drifting.status == "True"
    assert verdict.drifting.message.startswith("prediction probabilities[1] PSI ")
    assert verdict.outputs[0].name == "probabilities[1]"
    assert verdict.outputs[0].drifting is True
    assert verdict.features[0].drifting is False


def test_status_keeps_the_64_worst_features() -> None:
    features = [_feature(f"f{i}", 2_500, 2_500, 2_500, 2_500) for i in range(70)]
    features[42] = _feature("f42", 0, 0, 5_000, 5_000)
    verdict = evaluate(_window(*features), SPEC)
    assert len(verdict.features) == MAX_FEATURES
    assert verdict.features[0].name == "f42"
    status = verdict.to_status(
        evaluated_at="2026-12-05T19:00:00Z",
        window="1h",
        revision="abc",
        webhook=WebhookStatus(failures=1, pending=2),
    )
    dumped = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["rows"] == 10_000
    assert dumped["features"][0]["name"] == "f42"
    assert set(dumped["features"][0]) >= {"psi", "ks", "wasserstein", "missingRate", "drifting"}
    assert dumped["webhook"] == {"failures": 1, "pending": 2}


def test_unreadable_counts_make_both_conditions_unknown() -> None:
    verdict = unavailable("Prometheus at http://127.0.0.1:9090: connection refused")
    assert [(c.type, c.status, c.reason) for c in verdict.conditions] == [
        (reasons.DRIFTING, "Unknown", reasons.METRICS_UNAVAILABLE),
        (reasons.DATA_QUALITY, "Unknown", reasons.METRICS_UNAVAILABLE),
    ]
    assert verdict.features == ()


def test_cumulative_by_sums_counts_and_takes_gauges_once() -> None:
    samples = [
        ({"feature": "f1", "le": "0.5", "pod": "a"}, 3.0),
        ({"feature": "f1", "le": "+Inf", "pod": "a"}, 5.0),
        ({"feature": "f1", "le": "0.5", "pod": "b"}, 4.0),
        ({"feature": "f1", "le": "+Inf", "pod": "b"}, 6.0),
    ]
    assert cumulative_by(samples, "feature") == {"f1": {0.5: 7.0, INF: 11.0}}
    assert cumulative_by(samples, "feature", combine="max") == {"f1": {0.5: 4.0, INF: 6.0}}
