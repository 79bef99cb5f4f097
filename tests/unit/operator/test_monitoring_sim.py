"""The monitoring verdicts on simulated traffic (seeded numpy, tests/unit/operator/monitoring_sim.py):
no false alarm on baseline traffic over 1,000 windows of 16 features, exactly the shifted features
drifting, the feature with missing values named, no verdict on too few rows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from modelfleet.operator import reasons
from modelfleet.operator.api import MonitoringSpec
from modelfleet.operator.monitoring import FeatureCounts, evaluate
from modelfleet.operator.monitoring_stats import measure_drift
from tests.unit.operator.monitoring_sim import FeatureModel, Population, sixteen_features

SPEC = MonitoringSpec()
BASELINE_ROWS = 20_000


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(sixteen_features(), BASELINE_ROWS, seed=15)


@pytest.mark.parametrize("rows", [1_200, 72_000])
def test_baseline_traffic_never_alarms_over_1000_windows(population: Population, rows: int) -> None:
    rng = np.random.default_rng(rows)
    verdicts = [evaluate(window, SPEC) for window in population.windows(rng, rows, 1_000)]
    drift_alarms = sum(v.drifting.status == "True" for v in verdicts)
    quality_alarms = sum(v.data_quality.status == "True" for v in verdicts)
    assert (drift_alarms, quality_alarms) == (0, 0)
    # and every feature of every window was judged: "not drifting" is a verdict here, not a default
    assert all(v.drifting.status == "False" for v in verdicts)
    assert all(f.drifting is False for v in verdicts for f in v.features)


def test_half_a_standard_deviation_on_two_features_names_exactly_those(
    population: Population,
) -> None:
    rng = np.random.default_rng(6_000)
    shifted = {"f5": 0.5, "f8": 0.5}  # a normal and a uniform feature
    windows = population.windows(rng, 6_000, 200, shifts=shifted)
    for verdict in (evaluate(window, SPEC) for window in windows):
        assert verdict.drifting.status == "True"
        assert {f.name for f in verdict.features if f.drifting} == set(shifted)
        named = {part.split(" ", 1)[0] for part in verdict.drifting.message.split("; ")}
        assert named == set(shifted)
        assert re.search(
            r"PSI \d+\.\d\d, KS \d\.\d\d, W1 \d\.\d\d over [\d,]+ rows in the last 1h",
            verdict.drifting.message,
        )
        assert verdict.data_quality.status == "False"


@pytest.mark.parametrize("rows", [1_200, 6_000])
def test_ten_percent_missing_on_one_feature_is_named_by_data_quality(
    population: Population, rows: int
) -> None:
    rng = np.random.default_rng(rows + 1)
    for window in population.windows(rng, rows, 200, missing={"f6": 0.10}):
        verdict = evaluate(window, SPEC)
        assert verdict.data_quality.status == "True"
        assert verdict.data_quality.message.startswith("f6 missing ")
        assert "vs 0.0 % in baseline" in verdict.data_quality.message
        assert ";" not in verdict.data_quality.message  # only f6
        assert verdict.drifting.status == "False"  # fewer values, same distribution


def test_too_few_rows_give_no_verdict(population: Population) -> None:
    rng = np.random.default_rng(3)
    for window in population.windows(rng, 600, 20, shifts={"f5": 1.0}):
        verdict = evaluate(window, SPEC)
        assert verdict.drifting.status == "Unknown"
        assert verdict.drifting.reason == reasons.TOO_FEW_SAMPLES
        assert verdict.data_quality.status == "Unknown"
        assert all(f.drifting is None for f in verdict.features)


@pytest.mark.parametrize("kind", ["normal", "lognormal", "categorical"])
def test_windows_drawn_per_bucket_match_binning_real_samples(kind: str) -> None:
    """The multinomial shortcut reads like binning n fresh samples: same mean KS and PSI."""
    model = FeatureModel("f", kind)  # type: ignore[arg-type]
    population = Population([model], BASELINE_ROWS, seed=4)
    baseline = population.baselines[0]
    edges = [*baseline.edges, math.inf]
    rng = np.random.default_rng(5)
    shortcut = [w.features[0] for w in population.windows(rng, 2_000, 300, shifts={"f": 0.1})]
    sampled = []
    for _ in range(300):
        values = model.sample(rng, 2_000, shift_sd=0.1)
        cumulative = np.searchsorted(np.sort(values), edges[:-1], side="right")
        live = dict(zip(edges, [*(float(c) for c in cumulative), 2_000.0], strict=True))
        sampled.append(FeatureCounts("f", live, baseline_shares=baseline.shares))

    def mean_figures(windows: list[FeatureCounts]) -> tuple[float, float]:
        drifts = [
            measure_drift(w.live, baseline.shares, BASELINE_ROWS, None, SPEC.thresholds, 1)
            for w in windows
        ]
        return (
            float(np.mean([d.ks or 0.0 for d in drifts])),
            float(np.mean([d.psi or 0.0 for d in drifts])),
        )

    assert mean_figures(shortcut) == pytest.approx(mean_figures(sampled), rel=0.1)
