"""Ground truth in the operator: live accuracy, log loss and MAE from the servers' label counters.

Pure. The servers count labels POSTed for their earlier answers (`modelfleet.server.feedback`):
`modelfleet_feedback_rows_total`, `_correct_total` and `_log_loss_sum` (classifiers),
`_abs_error_sum` (regressors), with the request metrics' identity labels. Whoever reads Prometheus
counts each series exactly (`series_increase`, as the rollout gates do) and hands the gains here:

- `sum_feedback`: the gains summed over pods per (slot, revision);
- `feedback_status`: the figures for `status.monitoring.feedback` (active slot first);
- `judge_accuracy`: the `minAccuracyDelta` gate. Canary accuracy minus stable accuracy, both from
  labels counted since the step's weight was set, with Newcombe's interval for a difference of two
  proportions (each side a Wilson interval at the look-corrected z of the error-rate gate). Below
  `minLabelledRows` labelled rows on either side: Inconclusive, whatever the figures (never a Pass,
  and no Fail on a handful: labels arrive in cohorts, not independently). Then Fail when the
  interval's upper end is below `minAccuracyDelta` (surely worse than allowed), Pass when the
  difference is at or above it, else Inconclusive (not yet significant).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet.operator.analysis import DEFAULT_Z, CheckResult, wilson_interval
from modelfleet.operator.api import MeasurementPhase, SlotFeedback

ROWS = "modelfleet_feedback_rows_total"
CORRECT = "modelfleet_feedback_correct_total"
LOG_LOSS = "modelfleet_feedback_log_loss_sum"
ABS_ERROR = "modelfleet_feedback_abs_error_sum"
COUNTERS = (ROWS, CORRECT, LOG_LOSS, ABS_ERROR)
_FIELDS = {ROWS: "rows", CORRECT: "correct", LOG_LOSS: "log_loss", ABS_ERROR: "abs_error"}

SlotKey = tuple[str, str]  # (slot, revision)


@dataclass(frozen=True)
class FeedbackCounts:
    """Labels counted for one slot's revision; None: no such series (e.g. a regressor's accuracy)."""

    rows: float = 0.0
    correct: float | None = None
    log_loss: float | None = None
    abs_error: float | None = None

    @property
    def accuracy(self) -> float | None:
        return None if self.correct is None or self.rows <= 0 else self.correct / self.rows

    @property
    def mean_log_loss(self) -> float | None:
        return None if self.log_loss is None or self.rows <= 0 else self.log_loss / self.rows

    @property
    def mae(self) -> float | None:
        return None if self.abs_error is None or self.rows <= 0 else self.abs_error / self.rows


def sum_feedback(gains: Iterable[tuple[Mapping[str, str], float]]) -> dict[SlotKey, FeedbackCounts]:
    """Each series' gain (labels with `__name__`) summed over pods per (slot, revision)."""
    sums: dict[SlotKey, dict[str, float]] = {}
    for labels, gain in gains:
        field = _FIELDS.get(labels.get("__name__", ""))
        if field is None:
            continue
        into = sums.setdefault((labels.get("slot", ""), labels.get("revision", "")), {})
        into[field] = into.get(field, 0.0) + gain
    return {key: FeedbackCounts(**values) for key, values in sums.items()}


def feedback_status(
    counts: Mapping[SlotKey, FeedbackCounts], active: SlotKey
) -> list[SlotFeedback]:
    """Per slot and revision that got labels in the window (the active one always), active first."""
    keys = [active, *sorted(key for key, c in counts.items() if key != active and c.rows > 0)]
    figures = []
    for slot, revision in keys:
        found = counts.get((slot, revision), FeedbackCounts())
        figures.append(
            SlotFeedback(
                slot=slot,
                revision=revision,
                rows=round(found.rows),
                accuracy=_rounded(found.accuracy),
                log_loss=_rounded(found.mean_log_loss),
                mae=_rounded(found.mae),
            )
        )
    return figures


@dataclass(frozen=True)
class AccuracyResult(CheckResult):
    accuracy: float | None = None
    stable_accuracy: float | None = None
    labelled_rows: float | None = None

    def measured(self) -> dict[str, Any]:
        if self.labelled_rows is None:
            return {}
        return {
            "accuracy": self.accuracy,
            "stable_accuracy": self.stable_accuracy,
            "labelled_rows": round(self.labelled_rows),
        }


def accuracy_difference_interval(
    canary: tuple[float, float], stable: tuple[float, float], z: float = DEFAULT_Z
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of canary − stable accuracy ((correct, rows) each)."""
    canary_share, stable_share = canary[0] / canary[1], stable[0] / stable[1]
    canary_low, canary_high = wilson_interval(*canary, z)
    stable_low, stable_high = wilson_interval(*stable, z)
    difference = canary_share - stable_share
    lower = difference - math.hypot(canary_share - canary_low, stable_high - stable_share)
    upper = difference + math.hypot(canary_high - canary_share, stable_share - stable_low)
    return lower, upper


def judge_accuracy(
    canary: FeedbackCounts,
    stable: FeedbackCounts,
    min_delta: float,
    min_rows: int,
    weight: int,
    z: float = DEFAULT_Z,
) -> AccuracyResult | None:
    """The `minAccuracyDelta` gate on labels counted since the step began; None when it cannot
    apply (the 100 % step, where the stable slot answers nobody and gets too few new labels)."""
    name = "live accuracy"
    if canary.rows <= 0:
        return AccuracyResult(name, "Inconclusive", "no labels for canary answers since the step")
    if canary.correct is None:
        message = "labels counted, but no accuracy: minAccuracyDelta needs a classifier"
        return AccuracyResult(name, "Inconclusive", message, labelled_rows=canary.rows)
    if stable.rows < min_rows and weight >= 100:
        return None
    canary_correct = min(max(canary.correct, 0.0), canary.rows)
    accuracy = canary_correct / canary.rows
    if stable.rows <= 0 or stable.correct is None:
        message = f"live accuracy {_percent(accuracy)}, no stable labels to compare with"
        return AccuracyResult(name, "Inconclusive", message, accuracy, None, canary.rows)
    stable_correct = min(max(stable.correct, 0.0), stable.rows)
    stable_accuracy = stable_correct / stable.rows
    lower, upper = accuracy_difference_interval(
        (canary_correct, canary.rows), (stable_correct, stable.rows), z
    )
    delta = accuracy - stable_accuracy

    def seen(comparison: str) -> str:
        return (
            f"live accuracy {_percent(accuracy)} vs stable {_percent(stable_accuracy)}: "
            f"{_points(delta)} [{_points(lower)}, {_points(upper)}] {comparison} "
            f"{_points(min_delta)} over {round(canary.rows):,} labelled canary rows"
        )

    phase: MeasurementPhase
    fewest = min(canary.rows, stable.rows)
    if fewest < min_rows:  # labels come in cohorts, not one by one: no verdict on a handful
        which = "canary" if canary.rows < min_rows else "stable"
        phase = "Inconclusive"
        message = seen("vs") + f" (fewer than {min_rows:,} labelled {which} rows)"
    elif upper < min_delta:
        phase, message = "Fail", seen("<")
    elif delta >= min_delta:
        phase, message = "Pass", seen("≥")
    else:
        phase, message = "Inconclusive", seen("<") + " (not yet significant)"
    return AccuracyResult(name, phase, message, accuracy, stable_accuracy, canary.rows)


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def _points(delta: float) -> str:
    """A difference of two shares in percentage points, signed: −12.2 pt."""
    return f"{delta * 100:+.1f} pt".replace("-", "−")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
