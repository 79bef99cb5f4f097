"""Simulated monitoring windows for `modelfleet.operator.monitoring` (seeded numpy).

A feature is a known distribution. Its baseline is a sample of it, binned the way the servers bin
one (quantile edges, or each value for a categorical feature); a live window of n rows draws its
bucket counts from the multinomial of the distribution's true probabilities on those edges, which
is what binning n fresh samples gives, without drawing them one by one (`test_monitoring_sim.py`
checks the two agree). Shared by the unit tests and bench/monitoring/run.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from modelfleet.operator.monitoring import FeatureCounts, MonitoredWindow

Kind = Literal["normal", "lognormal", "exponential", "uniform", "categorical"]
KINDS: tuple[Kind, ...] = ("normal", "lognormal", "exponential", "uniform", "categorical")
CATEGORY_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.1, 0.08, 0.06, 0.04, 0.02])


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[float])
    return np.asarray(0.5 * (1 + erf(x / math.sqrt(2))))


@dataclass(frozen=True)
class FeatureModel:
    """A feature's true distribution, its missing and out-of-range rates."""

    name: str
    kind: Kind
    missing: float = 0.0
    out_of_range: float = 0.0

    @property
    def stddev(self) -> float:
        return {
            "normal": 1.0,
            "lognormal": math.sqrt((math.e - 1) * math.e),
            "exponential": 1.0,
            "uniform": 1 / math.sqrt(12),
            "categorical": float(
                np.sqrt(CATEGORY_WEIGHTS @ (np.arange(8) - CATEGORY_WEIGHTS @ np.arange(8)) ** 2)
            ),
        }[self.kind]

    def sample(self, rng: np.random.Generator, rows: int, shift_sd: float = 0.0) -> np.ndarray:
        samplers: dict[str, Callable[[], np.ndarray]] = {
            "normal": lambda: rng.standard_normal(rows),
            "lognormal": lambda: np.exp(rng.standard_normal(rows)),
            "exponential": lambda: rng.exponential(1.0, rows),
            "uniform": lambda: rng.random(rows),
            "categorical": lambda: rng.choice(8, rows, p=CATEGORY_WEIGHTS).astype(float),
        }
        values = samplers[self.kind]()
        return values + shift_sd * self.stddev

    def cdf(self, x: np.ndarray, shift_sd: float = 0.0) -> np.ndarray:
        """P(value ≤ x) of the (shifted) distribution."""
        x = np.asarray(x, dtype=float) - shift_sd * self.stddev
        if self.kind == "normal":
            return _normal_cdf(x)
        if self.kind == "lognormal":
            return np.where(x > 0, _normal_cdf(np.log(np.maximum(x, 1e-300))), 0.0)
        if self.kind == "exponential":
            return np.where(x > 0, 1 - np.exp(-np.maximum(x, 0)), 0.0)
        if self.kind == "uniform":
            return np.clip(x, 0.0, 1.0)
        cumulative = np.cumsum(CATEGORY_WEIGHTS)
        index = np.floor(x + 1e-9).astype(int)
        return np.where(index < 0, 0.0, cumulative[np.clip(index, 0, 7)])


@dataclass(frozen=True)
class Baseline:
    """What a server derives from its baseline rows for one feature."""

    edges: list[float]  # finite edges, ascending
    shares: dict[float, float]  # cumulative share of non-missing values <= le, +Inf = 1
    stddev: float
    missing_ratio: float
    out_of_range_ratio: float


def derive_baseline(
    model: FeatureModel, rng: np.random.Generator, rows: int, bins: int = 10
) -> Baseline:
    values = model.sample(rng, rows)
    kept = values[rng.random(rows) >= model.missing]
    if model.kind == "categorical":
        edges = sorted({float(v) for v in np.unique(kept)})[:64]
    else:
        quantiles = np.quantile(kept, [k / bins for k in range(1, bins)])
        edges = sorted({float(q) for q in quantiles})
    shares = {edge: float(np.mean(kept <= edge)) for edge in edges}
    shares[math.inf] = 1.0
    return Baseline(
        edges=edges,
        shares=shares,
        stddev=float(np.std(kept)),
        missing_ratio=1 - len(kept) / rows,
        out_of_range_ratio=float(np.mean(rng.random(rows) < model.out_of_range)),
    )


@dataclass
class Population:
    """Features with their baselines; draws live windows against them."""

    models: Sequence[FeatureModel]
    baseline_rows: int
    seed: int
    bins: int = 10
    baselines: list[Baseline] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.baselines = [
            derive_baseline(model, rng, self.baseline_rows, self.bins) for model in self.models
        ]

    def windows(
        self,
        rng: np.random.Generator,
        rows: int,
        count: int,
        shifts: dict[str, float] | None = None,
        missing: dict[str, float] | None = None,
        window: str = "1h",
        shifted_share: float = 1.0,
    ) -> list[MonitoredWindow]:
        """`count` windows of `rows` rows; `shifts` moves features by that many sd in
        `shifted_share` of the rows (a step change part of the window old), `missing` overrides
        their live missing rate."""
        per_feature = [
            self._feature_windows(
                rng,
                model,
                baseline,
                rows,
                count,
                (shifts or {}).get(model.name, 0.0),
                (missing or {}).get(model.name, model.missing),
                shifted_share,
            )
            for model, baseline in zip(self.models, self.baselines, strict=True)
        ]
        return [
            MonitoredWindow(
                rows=float(rows),
                features=[features[i] for features in per_feature],
                baseline_loaded=True,
                baseline_configured=True,
                baseline_rows=float(self.baseline_rows),
                window=window,
            )
            for i in range(count)
        ]

    def _feature_windows(
        self,
        rng: np.random.Generator,
        model: FeatureModel,
        baseline: Baseline,
        rows: int,
        count: int,
        shift_sd: float,
        missing_rate: float,
        shifted_share: float,
    ) -> list[FeatureCounts]:
        edges_array = np.array(baseline.edges)
        below = (1 - shifted_share) * model.cdf(edges_array) + shifted_share * model.cdf(
            edges_array, shift_sd
        )
        probabilities = np.diff(np.concatenate([[0.0], below, [1.0]]))
        probabilities = np.clip(probabilities, 0.0, None)
        probabilities /= probabilities.sum()
        missing = rng.binomial(rows, missing_rate, size=count)
        counts = rng.multinomial(rows - missing, probabilities)
        out_of_range = rng.binomial(rows, model.out_of_range, size=count)
        edges = [*baseline.edges, math.inf]
        windows = []
        for i in range(count):
            cumulative = np.cumsum(counts[i])
            windows.append(
                FeatureCounts(
                    name=model.name,
                    live=dict(zip(edges, (float(c) for c in cumulative), strict=True)),
                    missing=float(missing[i]),
                    out_of_range=float(out_of_range[i]),
                    baseline_shares=baseline.shares,
                    baseline_stddev=baseline.stddev,
                    baseline_missing_ratio=baseline.missing_ratio,
                    baseline_out_of_range_ratio=baseline.out_of_range_ratio,
                )
            )
        return windows


def sixteen_features() -> list[FeatureModel]:
    """16 features over the five kinds; some with missing values or out-of-range ones."""
    return [
        FeatureModel(
            f"f{i}",
            KINDS[i % len(KINDS)],
            missing=0.02 if i % 4 == 1 else 0.0,
            out_of_range=0.01 if i % 5 == 2 else 0.0,
        )
        for i in range(16)
    ]
