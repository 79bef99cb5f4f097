"""The statistics of model monitoring: distances between live and baseline bins, and their noise.

Pure functions on bucket counts (`modelfleet.operator.monitoring` composes them into verdicts):

- PSI (`modelfleet.operator.drift.psi`), the baseline's counts being its shares × its rows;
- KS: the largest gap between the two binned cumulative distributions;
- W1: the area between the two cumulative distributions over the finite edges (mass spread evenly
  inside each bin), divided by the baseline's standard deviation.

Each has a noise floor for the two sample sizes (`Floors`): PSI's null mean + 5 sd (as the drift
gate's), the two-sample KS critical value at α = 0.001, and for W1 that KS value times the span of
the finite edges over the standard deviation (|ΔF| ≤ KS everywhere, so the area is at most
KS × span). Data quality's rates use a Chernoff bound on the binomial tail. docs/monitoring.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelfleet.operator.api import MonitoringThresholds
from modelfleet.operator.drift import bucket_counts, psi

KS_ALPHA = 0.001  # per feature and evaluation: the KS and W1 floors are passed by chance this often
PSI_FLOOR_SDS = 5.0  # PSI floor: null mean + 5 sd, as the drift gate's (docs/model-aware.md)
RATE_ALPHA = 0.001  # data quality: a rise this unlikely at the baseline's rate is beyond noise

# upper edge (le, +Inf = math.inf) → cumulative count (live) or share (baseline)
Cumulative = Mapping[float, float]


@dataclass(frozen=True)
class Floors:
    """What each statistic reads between two samples of one distribution, at these sizes."""

    psi: float
    ks: float
    wasserstein: float | None


@dataclass(frozen=True)
class Drift:
    """The drift figures of one feature or output against the baseline."""

    rows: float  # live non-missing rows
    psi: float | None = None
    ks: float | None = None
    wasserstein: float | None = None
    floors: Floors | None = None
    drifting: bool | None = None


def ks_critical(rows: float, baseline_rows: float, alpha: float = KS_ALPHA) -> float:
    """Two-sample KS critical value c(α)·√((n + m)/(n·m)), c(α) = √(−ln(α/2)/2)."""
    if rows <= 0 or baseline_rows <= 0:
        return math.inf
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt(
        (rows + baseline_rows) / (rows * baseline_rows)
    )


def psi_floor(buckets: int, rows: float, baseline_rows: float) -> float:
    """Null PSI mean + 5 sd: χ²(k − 1)·(1/n + 1/m) has mean (k − 1)·s and sd √(2(k − 1))·s."""
    if rows <= 0 or baseline_rows <= 0:
        return math.inf
    scale = 1 / rows + 1 / baseline_rows
    dof = max(buckets - 1, 0)
    return dof * scale + PSI_FLOOR_SDS * math.sqrt(2 * dof) * scale


def cdf_gaps(live: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """F_live − F_baseline at each bucket's upper edge (the last, +Inf, left out: both are 1)."""
    live_rows, baseline_rows = sum(live), sum(baseline)
    gaps, live_below, baseline_below = [], 0.0, 0.0
    for live_count, baseline_count in zip(live[:-1], baseline[:-1], strict=True):
        live_below += live_count
        baseline_below += baseline_count
        gaps.append(live_below / live_rows - baseline_below / baseline_rows)
    return gaps


def binned_wasserstein(gaps: Sequence[float], finite_edges: Sequence[float]) -> float:
    """∫|F_live − F_baseline| between the first and last finite edge, both CDFs linear in a bin."""
    area = 0.0
    for i in range(len(finite_edges) - 1):
        left, right = gaps[i], gaps[i + 1]
        width = finite_edges[i + 1] - finite_edges[i]
        if left * right >= 0:
            area += width * (abs(left) + abs(right)) / 2
        else:  # the gap crosses zero inside the bin: two triangles
            area += width * (left * left + right * right) / (2 * (abs(left) + abs(right)))
    return area


def binned_stddev(shares: Cumulative) -> float | None:
    """Standard deviation of a binned baseline (an output's): each inner bin's share at its middle,
    the outer bins' at their finite edge. None without two finite edges."""
    edges = sorted(shares)
    finite = [edge for edge in edges if math.isfinite(edge)]
    if len(finite) < 2:
        return None
    masses = bucket_counts(shares, edges)
    points = [finite[0]]
    points += [(a + b) / 2 for a, b in itertools.pairwise(finite)]
    points += [finite[-1]] * (len(edges) - len(finite))
    total = sum(masses)
    if total <= 0:
        return None
    mean = sum(m * x for m, x in zip(masses, points, strict=True)) / total
    variance = sum(m * (x - mean) ** 2 for m, x in zip(masses, points, strict=True)) / total
    return math.sqrt(variance) if variance > 0 else None


def measure_drift(
    live: Cumulative,
    baseline_shares: Cumulative,
    baseline_rows: float,
    baseline_stddev: float | None,
    thresholds: MonitoringThresholds,
    min_samples: int,
) -> Drift:
    """PSI, KS and W1 of live counts against the baseline on their common edges, with the verdict."""
    edges = sorted(set(live) & set(baseline_shares))
    rows = max(live.values(), default=0.0)
    if not edges or not math.isinf(edges[-1]) or rows <= 0 or baseline_rows <= 0:
        return Drift(rows=max(rows, 0.0))
    live_counts = bucket_counts(live, edges)
    baseline_counts = [share * baseline_rows for share in bucket_counts(baseline_shares, edges)]
    gaps = cdf_gaps(live_counts, baseline_counts)
    finite = edges[:-1]
    ks = max((abs(gap) for gap in gaps), default=0.0)
    wasserstein, w1_floor = None, None
    if baseline_stddev is not None and baseline_stddev > 0 and len(finite) >= 2:
        wasserstein = binned_wasserstein(gaps, finite) / baseline_stddev
        # |ΔF| ≤ KS everywhere, so W1 ≤ KS·span: the KS floor times the span bounds W1's null
        w1_floor = ks_critical(rows, baseline_rows) * (finite[-1] - finite[0]) / baseline_stddev
    used = sum(1 for c, b in zip(live_counts, baseline_counts, strict=True) if c > 0 or b > 0)
    floors = Floors(
        psi_floor(used, rows, baseline_rows), ks_critical(rows, baseline_rows), w1_floor
    )
    value = psi(live_counts, baseline_counts)
    drift = Drift(rows, value, ks, wasserstein, floors)
    if rows < min_samples:
        return drift
    beyond = [
        value > max(thresholds.psi, floors.psi),
        ks > max(thresholds.ks, floors.ks),
        wasserstein is not None
        and w1_floor is not None
        and wasserstein > max(thresholds.wasserstein, w1_floor),
    ]
    return Drift(rows, value, ks, wasserstein, floors, drifting=any(beyond))


def rate_rise_beyond_noise(
    count: float, rows: float, baseline_ratio: float, threshold: float, alpha: float = RATE_ALPHA
) -> bool:
    """Whether count/rows exceeds the baseline's ratio by more than `threshold`, and by more than
    sampling noise: the Chernoff bound exp(−n·KL(rate ‖ baseline)) on the binomial upper tail of
    n rows at the baseline's ratio is at most `alpha`."""
    if rows <= 0:
        return False
    rate = min(count / rows, 1.0)
    if rate - baseline_ratio <= threshold:
        return False
    return math.exp(-rows * _bernoulli_kl(rate, baseline_ratio)) <= alpha


def _bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) ‖ Bernoulli(q)) for p > q; infinite when q is 0."""
    if q <= 0:
        return math.inf
    kl = p * math.log(p / q)
    return kl + ((1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0)
