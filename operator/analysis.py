"""The canary analysis rules: pure functions from measured numbers to a `Measurement`.

No I/O and no clock: `modelfleet.operator.prometheus` reads the numbers, these functions judge them.

- Error rate: a Wilson score interval around the 5xx share counted since the step's weight was set.
  Fail only when its lower bound is above `maxErrorRate`; Pass when the point estimate is at or
  below it with at least `minRequests`; anything else is Inconclusive (too little evidence either
  way). The interval uses a z corrected for repeated looks within a step (`DEFAULT_Z`), so checking
  every few seconds does not turn noise into rollbacks.
- p99: from the canary's own latency histogram; Fail above `maxP99LatencyMs` with enough requests.
- Regression: canary p99 ≤ `maxP99RegressionRatio` × stable p99 in the same window.
- Extra checks: user PromQL with {{namespace}} {{name}} {{slot}} {{revision}}, one number each.
- Prediction drift (`modelfleet.operator.drift`) and the paired replay gate
  (`modelfleet.operator.replay`) return `CheckResult`s too, with their values in `measured()`.
- Request share (`modelfleet.operator.request_share`): is the traffic reaching the canary?
- `combine`: any Fail → Fail; else any Error → Error; else any Inconclusive → Inconclusive; else Pass.
  An advisory (dryRun) gate (`advisory_gates`) takes no part: its verdict is reported beside the
  measurement (`Measurement.advisory`), its would-be failures named in the message, and
  `tally_advisory` counts them over the rollout.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import Any

from modelfleet.operator.api import (
    AdvisoryCheck,
    AdvisoryTally,
    AnalysisSpec,
    MeasurementPhase,
    MetricCheck,
)
from modelfleet.operator.measurement import Measurement

# One-sided Bonferroni over 100 looks at a family-wise 5 %: Φ⁻¹(1 − 0.05/100) ≈ 3.29. A step of
# 5 minutes checked every 5 s is 60 looks; cumulative counts make the looks strongly correlated, so
# the real false-rollback rate stays far below 5 % (bench/rollout measures it).
DEFAULT_Z = 3.29

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
# Below this many errors the lower bound is also held to the exact Poisson one.
SMALL_COUNT = 50


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check with the sentence that explains it."""

    name: str
    phase: MeasurementPhase
    message: str

    def measured(self) -> dict[str, Any]:
        """Values for the `Measurement` (and so for status), by its field names."""
        return {}


@dataclass(frozen=True)
class ErrorRateResult(CheckResult):
    rate: float | None = None
    lower: float | None = None
    upper: float | None = None


def look_corrected_z(looks: int, alpha: float = 0.05) -> float:
    """z for a one-sided bound that holds with probability 1 − alpha over `looks` looks (Bonferroni)."""
    if looks < 1 or not 0 < alpha < 1:
        raise ValueError(f"looks must be ≥ 1 and 0 < alpha < 1, got {looks=} {alpha=}")
    return NormalDist().inv_cdf(1 - alpha / looks)


def wilson_interval(errors: float, requests: float, z: float = DEFAULT_Z) -> tuple[float, float]:
    """The Wilson score interval of errors/requests: (lower, upper), both within [0, 1]."""
    if requests <= 0:
        return 0.0, 1.0
    if not 0 <= errors <= requests:
        raise ValueError(f"need 0 ≤ errors ≤ requests, got {errors=} {requests=}")
    share = errors / requests
    z2 = z * z
    centre = (share + z2 / (2 * requests)) / (1 + z2 / requests)
    half = (z / (1 + z2 / requests)) * math.sqrt(
        share * (1 - share) / requests + z2 / (4 * requests * requests)
    )
    lower = 0.0 if errors == 0 else max(0.0, centre - half)
    upper = 1.0 if errors == requests else min(1.0, centre + half)
    return lower, upper


@functools.lru_cache(maxsize=1024)
def poisson_lower_bound(events: int, alpha: float) -> float:
    """λ with P(Poisson(λ) ≥ events) = alpha: the exact one-sided lower bound of a Poisson mean."""
    if events <= 0:
        return 0.0
    low, high = 0.0, float(events)
    for _ in range(60):  # bisection: P(X ≥ events) grows with λ
        mid = (low + high) / 2
        term, below = math.exp(-mid), 0.0
        for k in range(events):
            below += term
            term *= mid / (k + 1)
        low, high = (mid, high) if 1 - below < alpha else (low, mid)
    return low


def error_rate_interval(
    errors: float, requests: float, z: float = DEFAULT_Z
) -> tuple[float, float]:
    """Wilson, with the lower bound made exact for a handful of errors.

    Wilson's lower bound is far too high at one or two errors (Brown, Cai & DasGupta 2001: one
    error in five requests reads as "above 1.6 %" at z = 3.29); below 50 errors it is capped by the
    exact Poisson bound, which is what protects a healthy canary's first seconds.
    """
    lower, upper = wilson_interval(errors, requests, z)
    count = round(errors)
    if 0 < count < SMALL_COUNT and requests > 0:
        alpha = 1 - NormalDist().cdf(z)
        lower = min(lower, poisson_lower_bound(count, alpha) / requests)
    return lower, upper


def percent(share: float) -> str:
    """0.0423 → "4.2 %" (two decimals below 0.1 % so 0.05 % does not read as 0.1 %)."""
    value = share * 100
    return f"{value:.2f} %" if 0 < value < 0.1 else f"{value:.1f} %"


def _interval_text(lower: float, upper: float) -> str:
    return f"[{percent(lower).removesuffix(' %')}–{percent(upper)}]"


def judge_error_rate(
    errors: float,
    requests: float,
    max_error_rate: float,
    min_requests: int,
    z: float = DEFAULT_Z,
) -> ErrorRateResult:
    """The Wilson rule; counts may be fractional (read from a TSDB) and are rounded for display.

    The message leaves out the step: the state machine appends " at <weight>%".
    """
    if requests <= 0:
        return ErrorRateResult(
            "error rate", "Inconclusive", "no canary requests counted since the step began"
        )
    errors = min(max(errors, 0.0), requests)
    rate = errors / requests
    lower, upper = error_rate_interval(errors, requests, z)

    def seen(comparison: str) -> str:
        return (
            f"error rate {percent(rate)} {_interval_text(lower, upper)} {comparison} "
            f"{percent(max_error_rate)} over {round(requests):,} requests"
        )

    if lower > max_error_rate:
        phase: MeasurementPhase = "Fail"
        message = seen(">")
    elif rate <= max_error_rate and requests >= min_requests:
        phase, message = "Pass", seen("≤")
    elif requests < min_requests:
        phase = "Inconclusive"
        message = seen("vs") + f" (fewer than {min_requests:,} requests)"
    else:
        phase = "Inconclusive"
        message = seen(">") + " (not yet significant)"
    return ErrorRateResult("error rate", phase, message, rate=rate, lower=lower, upper=upper)


def judge_p99(
    p99_ms: float | None, requests: float, max_p99_ms: float, min_requests: int
) -> CheckResult:
    """p99 against its limit; judged only with `min_requests`, as one slow request is not a p99."""
    if p99_ms is None or math.isnan(p99_ms):
        return CheckResult("p99", "Inconclusive", "no canary latency data since the step began")

    def seen(comparison: str) -> str:
        return f"p99 {_ms(p99_ms)} {comparison} {_ms(max_p99_ms)} over {round(requests):,} requests"

    if requests < min_requests:
        return CheckResult(
            "p99", "Inconclusive", seen("vs") + f" (fewer than {min_requests:,} requests)"
        )
    if p99_ms > max_p99_ms:
        return CheckResult("p99", "Fail", seen(">"))
    return CheckResult("p99", "Pass", seen("≤"))


def judge_regression(
    p99_ms: float | None,
    stable_p99_ms: float | None,
    max_ratio: float,
    requests: float,
    min_requests: int,
    weight: int,
) -> CheckResult | None:
    """Canary p99 against ratio × stable p99 in the same window; None when it cannot apply.

    At 100 % the stable slot gets no traffic, so there is nothing to compare with.
    """
    if stable_p99_ms is None or math.isnan(stable_p99_ms) or stable_p99_ms <= 0:
        if weight >= 100:
            return None
        return CheckResult("p99 regression", "Inconclusive", "no stable latency data to compare")
    if p99_ms is None or math.isnan(p99_ms) or requests < min_requests:
        return CheckResult(
            "p99 regression", "Inconclusive", "too few canary requests to compare with stable"
        )
    ratio = p99_ms / stable_p99_ms
    seen = f"p99 {_ms(p99_ms)} is {ratio:.2f}× stable {_ms(stable_p99_ms)}"
    if ratio > max_ratio:
        return CheckResult("p99 regression", "Fail", f"{seen} > {max_ratio:g}×")
    return CheckResult("p99 regression", "Pass", f"{seen} ≤ {max_ratio:g}×")


def judge_metric(check: MetricCheck, value: float | None) -> CheckResult:
    """One extra PromQL check: Fail outside [min, max]; no data → Inconclusive."""
    if value is None or math.isnan(value):
        return CheckResult(check.name, "Inconclusive", f"{check.name}: no data")
    if check.min is not None and value < check.min:
        return CheckResult(check.name, "Fail", f"{check.name} = {value:g} < {check.min:g}")
    if check.max is not None and value > check.max:
        return CheckResult(check.name, "Fail", f"{check.name} = {value:g} > {check.max:g}")
    return CheckResult(check.name, "Pass", f"{check.name} = {value:g}")


def render_query(template: str, **values: str) -> str:
    """Fill {{namespace}} {{name}} {{slot}} {{revision}}; an unknown placeholder is a ValueError."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = ", ".join("{{" + k + "}}" for k in sorted(values))
            raise ValueError(f"unknown placeholder {{{{{key}}}}} in query (known: {known})")
        return values[key]

    return _PLACEHOLDER.sub(fill, template)


# the check names each built-in gate's results carry, by its name in analysis.dryRun
GATE_CHECKS: dict[str, tuple[str, ...]] = {
    "errorRate": ("error rate",),
    "p99": ("p99",),
    "p99Regression": ("p99 regression",),
    "drift": ("prediction drift",),
    "agreement": ("agreement",),
    "scoreDelta": ("score delta",),
    "accuracy": ("live accuracy",),
}
PAIRED_GATES = ("agreement", "scoreDelta")


def advisory_gates(spec: AnalysisSpec) -> dict[str, str]:
    """Check name → advisory gate name, for the gates `spec` marks dryRun.

    The paired gate's own results ("replay": no rows, no pod, answers that cannot be compared) are
    advisory only when every paired check configured is; the request share never is (it says
    whether the other checks saw the canary at all).
    """
    advisory: dict[str, str] = {check: gate for gate in spec.dry_run for check in GATE_CHECKS[gate]}
    advisory.update({check.name: check.name for check in spec.metrics if check.dry_run})
    paired = [
        gate
        for gate, limit in zip(
            PAIRED_GATES, (spec.min_agreement, spec.max_score_delta), strict=True
        )
        if limit is not None
    ]
    if paired and all(gate in spec.dry_run for gate in paired):
        advisory["replay"] = "replay"
    return advisory


def would_fail(checks: Sequence[AdvisoryCheck]) -> str:
    """The advisory Fails of one look, as the message names them ("" when none)."""
    failing = [check.message or check.gate for check in checks if check.phase == "Fail"]
    return "advisory, not acted on: " + "; ".join(failing) if failing else ""


def tally_advisory(
    tallies: Sequence[AdvisoryTally], checks: Sequence[AdvisoryCheck], measured_at: str
) -> list[AdvisoryTally]:
    """The rollout's per-gate counts with one more look's advisory verdicts added."""
    by_gate = {tally.gate: tally for tally in tallies}
    for check in checks:
        tally = by_gate.get(check.gate) or AdvisoryTally(gate=check.gate)
        update: dict[str, Any] = {"looks": tally.looks + 1}
        if check.phase == "Fail":
            update |= {"would_fail": tally.would_fail + 1, "last_failure": check.message}
            update["first_failed_at"] = tally.first_failed_at or measured_at
        by_gate[check.gate] = tally.model_copy(update=update)
    return list(by_gate.values())


def advisory_summary(tallies: Sequence[AdvisoryTally]) -> str:
    """ "advisory errorRate would have failed 7 of 12 looks" for a history message ("" when none)."""
    failed = [t for t in tallies if t.would_fail]
    said = [f"{t.gate} would have failed {t.would_fail} of {t.looks} looks" for t in failed]
    return "advisory " + ", ".join(said) if said else ""


def combine(
    results: Sequence[CheckResult],
    measured_at: datetime,
    *,
    requests: float | None = None,
    p99_ms: float | None = None,
    stable_p99_ms: float | None = None,
    advisory: dict[str, str] | None = None,
) -> Measurement:
    """One Measurement from the checks; the message names what decided it.

    `advisory` (from `advisory_gates`) names the checks that decide nothing: their verdicts go to
    `Measurement.advisory` and their would-be failures are appended to the message.
    """
    advisory = advisory or {}
    by_phase: dict[MeasurementPhase, list[CheckResult]] = {}
    reported: list[AdvisoryCheck] = []
    for result in results:
        if result.name in advisory:
            reported.append(
                AdvisoryCheck(
                    gate=advisory[result.name], phase=result.phase, message=result.message
                )
            )
        else:
            by_phase.setdefault(result.phase, []).append(result)
    phase: MeasurementPhase = "Pass"
    for candidate in ("Fail", "Error", "Inconclusive"):
        if candidate in by_phase:
            phase = candidate
            break
    deciding = by_phase.get(phase, [])
    message = "; ".join(r.message for r in deciding if r.message) or (
        "every gate advisory" if reported else "no checks configured"
    )
    if note := would_fail(reported):
        message += f" ({note})"
    error_rate = next((r for r in results if isinstance(r, ErrorRateResult)), None)
    values: dict[str, Any] = {}
    for result in results:
        values.update(result.measured())
    return Measurement(
        phase=phase,
        message=message,
        measured_at=measured_at,
        requests=None if requests is None else round(requests),
        error_rate=error_rate.rate if error_rate else None,
        error_rate_lower=error_rate.lower if error_rate else None,
        error_rate_upper=error_rate.upper if error_rate else None,
        p99_ms=_finite(p99_ms),
        stable_p99_ms=_finite(stable_p99_ms),
        advisory=tuple(reported),
        **values,
    )


def error_measurement(message: str, measured_at: datetime) -> Measurement:
    """The measurement of a look that could not be taken (Prometheus unreachable, bad query)."""
    return Measurement(phase="Error", message=message, measured_at=measured_at)


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value
