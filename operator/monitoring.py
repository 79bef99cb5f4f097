"""Model monitoring verdicts: the active slot's inputs and outputs against the training baseline.

Pure functions, no I/O and no clock. The monitoring loop reads, for the active slot and revision,
the exact increase over the window of each counter (summed over pods) and the baseline gauges
(identical on every pod), builds a `MonitoredWindow`, and `evaluate` turns it into a `Verdict`: the
`Drifting` and `DataQuality` conditions with messages that name the worst features, and the
figures of `status.monitoring`.

Per feature (and per prediction output), on the bins the servers derived from the baseline, PSI,
KS and a normalised W1 (`modelfleet.operator.monitoring_stats`). A feature drifts when any of the
three exceeds its threshold *and* its noise floor for the two sample sizes; fewer than `minSamples` non-missing rows → no verdict (None), never "not
drifting". Data quality: a feature's missing (out-of-range) rate is flagged when it rises over the
baseline's by more than the threshold and beyond sampling noise. docs/monitoring.md gives the
reasoning and the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    FeatureMonitoring,
    MonitoringSpec,
    MonitoringStatus,
    MonitoringThresholds,
    OutputMonitoring,
    WebhookStatus,
)
from modelfleet.operator.drift import parse_le
from modelfleet.operator.monitoring_stats import (
    Cumulative,
    Drift,
    binned_stddev,
    measure_drift,
    rate_rise_beyond_noise,
)

MAX_FEATURES = 64  # features kept in status.monitoring
MAX_NAMED = 5  # features named in a condition message

ConditionStatus = Literal["True", "False", "Unknown"]


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureCounts:
    """One feature over the window: live counts summed over pods, and the baseline's gauges."""

    name: str
    live: Cumulative  # modelfleet_input_bucket increase: non-missing values <= le
    missing: float = 0.0  # modelfleet_input_missing_total increase
    out_of_range: float = 0.0  # modelfleet_input_out_of_range_total increase
    baseline_shares: Cumulative | None = None  # modelfleet_baseline_input_share
    baseline_stddev: float | None = None
    baseline_missing_ratio: float | None = None
    baseline_out_of_range_ratio: float | None = None


@dataclass(frozen=True)
class OutputCounts:
    """One prediction output: live `modelfleet_prediction` buckets and the baseline's shares."""

    name: str
    live: Cumulative
    baseline_shares: Cumulative | None = None


@dataclass(frozen=True)
class MonitoredWindow:
    """Everything read for one evaluation of the active slot."""

    rows: float  # modelfleet_input_rows_total increase: rows scored in the window
    features: Sequence[FeatureCounts]
    outputs: Sequence[OutputCounts] = ()
    baseline_loaded: bool = False  # modelfleet_baseline_loaded on the pods
    baseline_configured: bool = False  # spec.monitoring.baselineUri is set
    baseline_rows: float = 0.0  # modelfleet_baseline_rows
    window: str = "1h"  # for messages


def cumulative_by(
    samples: Iterable[tuple[Mapping[str, str], float]],
    label: str,
    combine: Literal["sum", "max"] = "sum",
) -> dict[str, dict[float, float]]:
    """{label value: {le: value}} from (labels, value) pairs: counts summed over pods ("sum"),
    baseline gauges, identical on every pod, taken once ("max")."""
    out: dict[str, dict[float, float]] = {}
    for labels, value in samples:
        edges = out.setdefault(labels.get(label, ""), {})
        le = parse_le(labels["le"])
        previous = edges.get(le)
        if previous is None:
            edges[le] = value
        else:
            edges[le] = previous + value if combine == "sum" else max(previous, value)
    return out


# --- verdict ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionVerdict:
    """One condition as the loop writes it (True = a problem)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """Both conditions and the figures of `status.monitoring`, features and outputs worst first."""

    drifting: ConditionVerdict
    data_quality: ConditionVerdict
    features: tuple[FeatureMonitoring, ...] = ()
    outputs: tuple[OutputMonitoring, ...] = ()
    rows: float = 0.0

    @property
    def conditions(self) -> tuple[ConditionVerdict, ConditionVerdict]:
        return self.drifting, self.data_quality

    def to_status(
        self,
        *,
        evaluated_at: str,
        window: str,
        revision: str | None,
        webhook: WebhookStatus | None = None,
    ) -> MonitoringStatus:
        return MonitoringStatus(
            last_evaluated=evaluated_at,
            window=window,
            rows=round(self.rows),
            revision=revision,
            features=list(self.features),
            outputs=list(self.outputs),
            webhook=webhook,
        )


@dataclass(frozen=True)
class _Judged:
    """One feature's (or output's) figures and verdicts, before they become status."""

    name: str
    drift: Drift
    output: bool = False  # a prediction output, named "prediction <name>" in messages
    missing_rate: float | None = None
    baseline_missing_rate: float | None = None
    out_of_range_rate: float | None = None
    baseline_out_of_range_rate: float | None = None
    missing_flagged: bool | None = None
    out_of_range_flagged: bool | None = None
    severity: float = 0.0

    @property
    def quality_flagged(self) -> bool:
        return bool(self.missing_flagged or self.out_of_range_flagged)


def evaluate(window: MonitoredWindow, spec: MonitoringSpec) -> Verdict:
    """The verdict on one window of the active slot."""
    features = _ranked([_judge_feature(counts, window, spec) for counts in window.features])
    outputs = _ranked(
        [_judge_output(counts, window, spec) for counts in window.outputs]
        if window.baseline_loaded
        else []
    )
    return Verdict(
        drifting=_drifting(features, outputs, window, spec),
        data_quality=_data_quality(features, window, spec),
        features=tuple(_feature_status(judged) for judged in features[:MAX_FEATURES]),
        outputs=tuple(_output_status(judged) for judged in outputs),
        rows=window.rows,
    )


def unavailable(message: str) -> Verdict:
    """Both conditions Unknown because the counts could not be read (Prometheus unreachable)."""
    return Verdict(
        ConditionVerdict(reasons.DRIFTING, "Unknown", reasons.METRICS_UNAVAILABLE, message),
        ConditionVerdict(reasons.DATA_QUALITY, "Unknown", reasons.METRICS_UNAVAILABLE, message),
    )


def _judge_feature(counts: FeatureCounts, window: MonitoredWindow, spec: MonitoringSpec) -> _Judged:
    thresholds, rows = spec.thresholds, window.rows
    live_rows = max(counts.live.values(), default=0.0)
    drift = Drift(rows=live_rows)
    base_missing = counts.baseline_missing_ratio if window.baseline_loaded else None
    base_out = counts.baseline_out_of_range_ratio if window.baseline_loaded else None
    if window.baseline_loaded and counts.baseline_shares:
        baseline_rows = window.baseline_rows * (1 - (base_missing or 0.0))
        drift = measure_drift(
            counts.live,
            counts.baseline_shares,
            baseline_rows,
            counts.baseline_stddev,
            thresholds,
            spec.min_samples,
        )
    missing_rate = counts.missing / rows if rows > 0 else None
    out_rate = counts.out_of_range / rows if rows > 0 else None
    judged = rows >= spec.min_samples
    missing_flagged = out_flagged = None
    if judged:
        missing_flagged = rate_rise_beyond_noise(
            counts.missing, rows, base_missing or 0.0, thresholds.missing_rate
        )
        out_flagged = rate_rise_beyond_noise(
            counts.out_of_range, rows, base_out or 0.0, thresholds.out_of_range_rate
        )
    ratios = _drift_ratios(drift, thresholds)
    if missing_rate is not None:
        ratios.append((missing_rate - (base_missing or 0.0)) / thresholds.missing_rate)
    if out_rate is not None:
        ratios.append((out_rate - (base_out or 0.0)) / thresholds.out_of_range_rate)
    return _Judged(
        counts.name,
        drift,
        missing_rate=missing_rate,
        baseline_missing_rate=base_missing,
        out_of_range_rate=out_rate,
        baseline_out_of_range_rate=base_out,
        missing_flagged=missing_flagged,
        out_of_range_flagged=out_flagged,
        severity=max(ratios, default=0.0),
    )


def _judge_output(counts: OutputCounts, window: MonitoredWindow, spec: MonitoringSpec) -> _Judged:
    if not counts.baseline_shares:
        return _Judged(counts.name, Drift(rows=max(counts.live.values(), default=0.0)), output=True)
    drift = measure_drift(
        counts.live,
        counts.baseline_shares,
        window.baseline_rows,
        binned_stddev(counts.baseline_shares),
        spec.thresholds,
        spec.min_samples,
    )
    severity = max(_drift_ratios(drift, spec.thresholds), default=0.0)
    return _Judged(counts.name, drift, output=True, severity=severity)


def _drift_ratios(drift: Drift, thresholds: MonitoringThresholds) -> list[float]:
    pairs = [
        (drift.psi, thresholds.psi),
        (drift.ks, thresholds.ks),
        (drift.wasserstein, thresholds.wasserstein),
    ]
    return [value / limit for value, limit in pairs if value is not None]


def _ranked(judged: list[_Judged]) -> list[_Judged]:
    """Problems first (drifting, then a data-quality flag), then by how far past a threshold."""
    return sorted(
        judged,
        key=lambda j: (j.drift.drifting is not True, not j.quality_flagged, -j.severity, j.name),
    )


def _drifting(
    features: list[_Judged], outputs: list[_Judged], window: MonitoredWindow, spec: MonitoringSpec
) -> ConditionVerdict:
    def condition(status: ConditionStatus, reason: str, message: str) -> ConditionVerdict:
        return ConditionVerdict(reasons.DRIFTING, status, reason, message)

    if not window.baseline_loaded:
        message = (
            "the active slot's pods have not loaded the baseline (modelfleet_baseline_loaded 0; "
            "the server log says why)"
            if window.baseline_configured
            else "no baseline: set spec.monitoring.baselineUri to judge drift"
        )
        return condition("Unknown", reasons.NO_BASELINE, message)
    named = [*features, *outputs]
    drifting = [judged for judged in named if judged.drift.drifting]
    if drifting:
        parts = [_drift_text(judged) for judged in drifting[:MAX_NAMED]]
        parts[0] += f" in the last {window.window}"
        if len(drifting) > MAX_NAMED:
            parts.append(f"and {len(drifting) - MAX_NAMED} more")
        return condition("True", reasons.DRIFT_DETECTED, "; ".join(parts))
    judged = [item for item in named if item.drift.drifting is not None]
    unjudged = [item for item in features if item.drift.drifting is None]
    if not judged:
        most = max(features, key=lambda j: j.drift.rows, default=None)
        detail = f" (most: {most.name} {round(most.drift.rows):,})" if most is not None else ""
        return condition(
            "Unknown",
            reasons.TOO_FEW_SAMPLES,
            f"fewer than {spec.min_samples:,} non-missing rows of every feature in the last "
            f"{window.window}{detail}",
        )
    largest = max(judged, key=lambda j: j.severity)
    counted = (
        f"{sum(1 for j in features if j.drift.drifting is not None)} of {len(features)} features"
    )
    if outputs:
        counted += f" and {sum(1 for j in outputs if j.drift.drifting is not None)} outputs"
    message = (
        f"no drift in {counted} over {round(window.rows):,} rows in the last {window.window} "
        f"(largest: {_drift_text(largest)})"
    )
    if unjudged:
        few = ", ".join(f"{j.name} {round(j.drift.rows):,}" for j in unjudged[:MAX_NAMED])
        more = f" and {len(unjudged) - MAX_NAMED} more" if len(unjudged) > MAX_NAMED else ""
        message += f"; not judged (fewer than {spec.min_samples:,} rows): {few}{more}"
    return condition("False", reasons.NO_DRIFT, message)


def _drift_text(judged: _Judged) -> str:
    drift = judged.drift
    figures = [f"PSI {drift.psi:.2f}" if drift.psi is not None else None]
    figures.append(f"KS {drift.ks:.2f}" if drift.ks is not None else None)
    figures.append(f"W1 {drift.wasserstein:.2f}" if drift.wasserstein is not None else None)
    name = f"prediction {judged.name}" if judged.output else judged.name
    shown = ", ".join(figure for figure in figures if figure is not None)
    return f"{name} {shown} over {round(drift.rows):,} rows"


def _data_quality(
    features: list[_Judged], window: MonitoredWindow, spec: MonitoringSpec
) -> ConditionVerdict:
    def condition(status: ConditionStatus, reason: str, message: str) -> ConditionVerdict:
        return ConditionVerdict(reasons.DATA_QUALITY, status, reason, message)

    rows = round(window.rows)
    if window.rows < spec.min_samples:
        return condition(
            "Unknown",
            reasons.TOO_FEW_SAMPLES,
            f"{rows:,} rows scored in the last {window.window}, fewer than minSamples "
            f"{spec.min_samples:,}",
        )
    flagged = [judged for judged in features if judged.quality_flagged]
    if flagged:
        parts = [_quality_text(judged) for judged in flagged[:MAX_NAMED]]
        parts[0] += f" over {rows:,} rows in the last {window.window}"
        if len(flagged) > MAX_NAMED:
            parts.append(f"and {len(flagged) - MAX_NAMED} more")
        return condition("True", reasons.DATA_QUALITY_DEGRADED, "; ".join(parts))
    limits = f"{_points(spec.thresholds.missing_rate)} (missing) and " + _points(
        spec.thresholds.out_of_range_rate
    )
    return condition(
        "False",
        reasons.WITHIN_BASELINE,
        f"no missing or out-of-range rate of {len(features)} features rose more than {limits} "
        f"(out of range) over the baseline's, {rows:,} rows in the last {window.window}",
    )


def _quality_text(judged: _Judged) -> str:
    parts = []
    if judged.missing_flagged and judged.missing_rate is not None:
        parts.append(f"missing {_rate_text(judged.missing_rate, judged.baseline_missing_rate)}")
    if judged.out_of_range_flagged and judged.out_of_range_rate is not None:
        parts.append(
            "out of range "
            + _rate_text(judged.out_of_range_rate, judged.baseline_out_of_range_rate)
        )
    return f"{judged.name} " + ", ".join(parts)


def _rate_text(rate: float, baseline: float | None) -> str:
    if baseline is None:
        return f"{_percent(rate)} (no baseline)"
    return f"{_percent(rate)} vs {_percent(baseline)} in baseline"


def _points(share: float) -> str:
    return f"{100 * share:.1f} points"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def _output_status(judged: _Judged) -> OutputMonitoring:
    drift = judged.drift
    return OutputMonitoring(
        name=judged.name,
        rows=round(drift.rows),
        psi=_rounded(drift.psi),
        ks=_rounded(drift.ks),
        wasserstein=_rounded(drift.wasserstein),
        drifting=drift.drifting,
    )


def _feature_status(judged: _Judged) -> FeatureMonitoring:
    """An output's drift figures plus the feature's data-quality rates."""
    return FeatureMonitoring(
        **_output_status(judged).model_dump(),
        missing_rate=_rounded(judged.missing_rate),
        baseline_missing_rate=_rounded(judged.baseline_missing_rate),
        out_of_range_rate=_rounded(judged.out_of_range_rate),
        baseline_out_of_range_rate=_rounded(judged.baseline_out_of_range_rate),
    )


def _rounded(value: float | None) -> float | None:
    """Four decimals: enough to read, and a status that does not churn in the noise."""
    return None if value is None else round(value, 4)
