"""The distribution gate: population stability index (PSI) of the canary's predictions vs the stable's.

Pure functions; `modelfleet.operator.prometheus` reads the `modelfleet_prediction` bucket counts
of both slots since the step began and hands them here.

    PSI = Σ_i (p_i − q_i) · ln(p_i / q_i)

over the buckets of one output, p the canary's shares and q the stable's, each bucket count
smoothed by +0.5 (Laplace) so an empty bucket on one side is a large but finite term. Buckets empty
in *both* slots are dropped first: they say nothing, and smoothed they would add a bias that grows
with the gap between the two sample sizes (the canary at 10 % has 9× fewer rows than the stable).
Only edges both slots share are used, so two slots with different regression edges still compare
on what they have in common. The largest PSI over the outputs is judged.

Two samples of one distribution give PSI ≈ (k − 1)(1/n_c + 1/n_s) (`null_psi`: the expectation
of a χ² with k − 1 degrees of freedom, scaled): a threshold must sit well above that for the
sample sizes of a step. docs/model-aware.md explains the choice of PSI and of a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet.operator.analysis import CheckResult
from modelfleet.operator.api import MeasurementPhase

LAPLACE = 0.5

# output → {upper edge (le) → cumulative count}; +Inf is math.inf
Cumulative = Mapping[str, Mapping[float, float]]


@dataclass(frozen=True)
class DriftResult(CheckResult):
    psi: float | None = None
    output: str | None = None
    canary_rows: float | None = None

    def measured(self) -> dict[str, Any]:
        if self.psi is None:
            return {}
        return {"prediction_drift": self.psi, "drift_output": self.output}


@dataclass(frozen=True)
class OutputDrift:
    output: str
    psi: float
    canary_rows: float
    stable_rows: float


def parse_le(text: str) -> float:
    """A bucket's `le` label as a number ("+Inf" → inf)."""
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def sum_buckets(gains: Iterable[tuple[Mapping[str, str], float]]) -> dict[str, dict[float, float]]:
    """Cumulative counts per output and edge, summed over the pods' series."""
    summed: dict[str, dict[float, float]] = {}
    for labels, gain in gains:
        edges = summed.setdefault(labels.get("output", ""), {})
        le = parse_le(labels["le"])
        edges[le] = edges.get(le, 0.0) + gain
    return summed


def bucket_counts(cumulative: Mapping[float, float], edges: Sequence[float]) -> list[float]:
    """Per-bucket counts on `edges` (sorted) from cumulative `le` counts; never negative."""
    counts, below = [], 0.0
    for edge in edges:
        total = cumulative[edge]
        counts.append(max(total - below, 0.0))
        below = max(total, below)
    return counts


def psi(canary: Sequence[float], stable: Sequence[float], smoothing: float = LAPLACE) -> float:
    """PSI of two count vectors on the same buckets; 0.0 when either side is empty."""
    if len(canary) != len(stable):
        raise ValueError(f"bucket counts differ in length: {len(canary)} vs {len(stable)}")
    kept = [(c, s) for c, s in zip(canary, stable, strict=True) if c > 0 or s > 0]
    canary_rows, stable_rows = sum(c for c, _ in kept), sum(s for _, s in kept)
    if not kept or canary_rows <= 0 or stable_rows <= 0:
        return 0.0
    spread = smoothing * len(kept)
    total = 0.0
    for c, s in kept:
        p = (c + smoothing) / (canary_rows + spread)
        q = (s + smoothing) / (stable_rows + spread)
        total += (p - q) * math.log(p / q)
    return total


def null_psi(buckets: int, canary_rows: float, stable_rows: float) -> float:
    """What PSI reads between two samples of one distribution: (k − 1)(1/n_c + 1/n_s)."""
    if canary_rows <= 0 or stable_rows <= 0:
        return math.inf
    return max(buckets - 1, 0) * (1 / canary_rows + 1 / stable_rows)


def output_drifts(canary: Cumulative, stable: Cumulative) -> list[OutputDrift]:
    """PSI per output both slots report, on the edges both share; largest first."""
    drifts = []
    for output in sorted(set(canary) & set(stable)):
        edges = sorted(set(canary[output]) & set(stable[output]))
        if not edges:
            continue
        canary_counts = bucket_counts(canary[output], edges)
        stable_counts = bucket_counts(stable[output], edges)
        drifts.append(
            OutputDrift(
                output, psi(canary_counts, stable_counts), sum(canary_counts), sum(stable_counts)
            )
        )
    return sorted(drifts, key=lambda drift: -drift.psi)


def judge_drift(
    canary: Cumulative, stable: Cumulative, max_psi: float, min_samples: int, weight: int
) -> DriftResult | None:
    """The largest PSI over outputs against `max_psi`; None when it cannot apply (at 100 %).

    Fewer than `min_samples` canary (or stable) predictions → Inconclusive, never Pass. At the
    100 % step the stable slot answers nobody, so there is nothing to compare with: skipped, as
    the drift was judged at every step before it.
    """
    name = "prediction drift"
    canary_rows, stable_rows = _rows(canary), _rows(stable)
    if canary_rows <= 0:
        return DriftResult(
            name, "Inconclusive", "no canary predictions counted since the step began"
        )
    if stable_rows < min_samples and weight >= 100:
        return None
    drifts = output_drifts(canary, stable)
    if not drifts:
        outputs = f"canary {sorted(canary)}, stable {sorted(stable)}"
        return DriftResult(name, "Inconclusive", f"no prediction output in common ({outputs})")
    worst = drifts[0]

    def seen(comparison: str) -> str:
        return (
            f"prediction drift PSI {worst.psi:.2f} {comparison} {max_psi:.2f} on output "
            f"`{worst.output}` over {round(worst.canary_rows):,} canary rows"
        )

    phase: MeasurementPhase = "Pass"
    message = seen("≤")
    fewest = min(worst.canary_rows, worst.stable_rows)
    if fewest < min_samples:
        which = "canary" if worst.canary_rows < min_samples else "stable"
        phase = "Inconclusive"
        message = seen("vs") + f" (fewer than {min_samples:,} {which} predictions)"
    elif worst.psi > max_psi:
        phase, message = "Fail", seen(">")
    return DriftResult(name, phase, message, worst.psi, worst.output, worst.canary_rows)


def _rows(histograms: Cumulative) -> float:
    """Rows counted: the largest cumulative count of any output (its +Inf bucket)."""
    return max((max(edges.values(), default=0.0) for edges in histograms.values()), default=0.0)
