"""What one look at the canary found, and the protocol of whatever takes that look.

The rollout state machine consumes `Measurement`s and never raises on a failed query: a provider
that cannot reach Prometheus returns an `Error` measurement. The reconcile is handed an `Analyzer`
(the Prometheus one in production, a fake in unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from modelfleet.operator.api import AdvisoryCheck, AnalysisSpec, AnalysisStatus, MeasurementPhase


@dataclass(frozen=True)
class AnalysisTarget:
    """Which pods to measure: the canary slot's revision, and the stable one to compare with."""

    namespace: str
    name: str
    canary_slot: str
    canary_revision: str
    stable_slot: str | None
    stable_revision: str | None
    weight: int
    since: datetime  # when this step's weight was set: counts start here
    # the share of requests the router should give the canary (0-1); None: not checked (shadow)
    expected_share: float | None = None
    # the router splits each request by weight: a share surely far above it is a Fail
    splits_by_weight: bool = False
    # spec.rateLimit is set: a request the limit refused (429, counted apart from the answered
    # ones) was still sent to the slot by the router, so the share counts it
    rate_limited: bool = False
    # host:port of the metrics port of one Ready pod per slot (the paired gate replays rows there)
    canary_address: str | None = None
    stable_address: str | None = None


@dataclass(frozen=True)
class Measurement:
    """The outcome of one analysis with the values behind it (they go into status and messages)."""

    phase: MeasurementPhase
    message: str
    measured_at: datetime
    requests: int | None = None
    request_share: float | None = None
    error_rate: float | None = None
    error_rate_lower: float | None = None
    error_rate_upper: float | None = None
    p99_ms: float | None = None
    stable_p99_ms: float | None = None
    prediction_drift: float | None = None
    drift_output: str | None = None
    agreement: float | None = None
    score_delta_mean: float | None = None
    score_delta_max: float | None = None
    replayed_rows: int | None = None
    accuracy: float | None = None
    stable_accuracy: float | None = None
    labelled_rows: int | None = None
    # the advisory (dryRun) gates' verdicts: reported, never deciding `phase`
    advisory: tuple[AdvisoryCheck, ...] = ()

    def to_status(self) -> AnalysisStatus:
        return AnalysisStatus(
            phase=self.phase,
            message=self.message,
            measured_at=self.measured_at.isoformat().replace("+00:00", "Z"),
            requests=self.requests,
            request_share=self.request_share,
            error_rate=self.error_rate,
            error_rate_lower=self.error_rate_lower,
            error_rate_upper=self.error_rate_upper,
            p99_ms=self.p99_ms,
            stable_p99_ms=self.stable_p99_ms,
            prediction_drift=self.prediction_drift,
            drift_output=self.drift_output,
            agreement=self.agreement,
            score_delta_mean=self.score_delta_mean,
            score_delta_max=self.score_delta_max,
            replayed_rows=self.replayed_rows,
            accuracy=self.accuracy,
            stable_accuracy=self.stable_accuracy,
            labelled_rows=self.labelled_rows,
            advisory=list(self.advisory),
        )


class Analyzer(Protocol):
    """Takes one measurement of a canary; never raises for an unreachable or empty backend."""

    async def measure(
        self, target: AnalysisTarget, spec: AnalysisSpec, now: datetime
    ) -> Measurement: ...
