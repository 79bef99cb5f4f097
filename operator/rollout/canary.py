"""A canary in flight: its shadow step, its weights, the judgement of each measurement, the deadline
that pauses it and the promotion that ends it. Early returns, one exit per "not yet"."""

from __future__ import annotations

from datetime import timedelta

from modelfleet.operator import reasons
from modelfleet.operator.analysis import tally_advisory, would_fail
from modelfleet.operator.api import (
    CONFIRM_GATES,
    AnalysisStatus,
    CanaryStatus,
    GateStage,
    PreviousStatus,
)
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.request_share import not_as_weighted
from modelfleet.operator.rollout.approvals import Gated, stage_gates, stage_webhooks
from modelfleet.operator.rollout.draft import POD_WAIT_REQUEUE, waiting
from modelfleet.operator.rollout.steps import (
    StepPosition,
    in_shadow,
    look_gap,
    step_position,
    where,
)
from modelfleet.operator.rollout.types import Refusal
from modelfleet.operator.timestamps import parse_timestamp, timestamp

SHADOW_REFUSAL_RECHECK = 60.0  # the GatewayClass's features are read again about this often


class CanaryFlight(Gated):
    """The steps of a canary: `_progress` is called once per reconcile while one is in flight."""

    def _progress(self, measurement: Measurement | None) -> None:
        canary = self.status.canary
        assert canary is not None
        if self.status.phase == "Paused":
            return
        if not self._before_traffic(canary):
            return
        if in_shadow(self.inp.spec, canary):
            self._shadow(canary, measurement)
            return
        if canary.mirror > 0:  # the spec dropped its shadow block while mirroring
            self._end_shadow(canary, f"{canary.version}: shadow step removed from the spec")
        target = self._anchor(canary).weight
        if canary.weight < target:
            self._raise_weight(canary, target)
            return
        if canary.skip_analysis and target == 100:
            self._promote_when_confirmed(canary)
            return
        if measurement is not None and not self._judge(canary, measurement):
            return  # a Fail rolls back while a confirm gate holds, too
        dwell = self._seconds(self.inp.spec.rollout.step_duration)
        if self._step_passed(canary, dwell) or self._confirming(canary):
            stage: GateStage = "confirmPromotion" if self._anchor(canary).last else "confirmStep"
            if self._gates_clear(canary, stage):
                self._next_step(canary)
            else:  # analysis keeps running at every look; no deadline pauses an approval
                self._wake_in(look_gap(self.inp.spec, canary))
            return
        self._check_deadline(canary, dwell)
        self._wake_in(look_gap(self.inp.spec, canary))

    def _before_traffic(self, canary: CanaryStatus) -> bool:
        """The preRollout gates and the smoke test: once the canary's pods are Ready, before any
        traffic (mirrored included) reaches it. A canary already taking traffic (gates added to
        the spec mid-rollout) is not held back."""
        spec = self.inp.spec
        if canary.pre_rollout_done or not stage_gates(spec, "preRollout"):
            return True
        if canary.weight > 0 or canary.mirror > 0:
            return True
        shadow = spec.rollout.shadow
        first = shadow.percent if shadow is not None and in_shadow(spec, canary) else None
        if not self._canary_pods_ready(canary, first or self._anchor(canary).weight):
            return False
        if not self._gates_clear(canary, "preRollout"):
            return False
        canary.pre_rollout_done = True
        return True

    def _promote_when_confirmed(self, canary: CanaryStatus) -> None:
        """Straight to 100 % (`promote --full`, steps [100]): analysis is skipped, gates are not."""
        if self._gates_clear(canary, "confirmPromotion"):
            self._promote()

    def _confirming(self, canary: CanaryStatus) -> bool:
        """Whether a confirm gate of this step is open (its step passed; the analysis may since
        have turned Inconclusive, which does not take the passed dwell back)."""
        wait = canary.gates
        return (
            wait is not None
            and wait.stage in CONFIRM_GATES
            and wait.step_index == canary.step_index
        )

    def _anchor(self, canary: CanaryStatus) -> StepPosition:
        """The canary's step, written back re-anchored (see `step_position`: rollout.steps edited)."""
        position = step_position(self.inp.spec, canary)
        canary.steps, canary.step_index = list(position.steps), position.index
        return position

    def _canary_pods_ready(self, canary: CanaryStatus, share: int) -> bool:
        """Whether the canary has the Ready pods for `share` %; past progressDeadline, pause."""
        needed = self.inp.canary_sizer(self.inp.active_replicas, share)
        observed = self.inp.slots[canary.slot]
        if observed.ready_for(canary.revision, needed):
            return True
        self.status.message = waiting(observed, needed, "canary")
        deadline = parse_timestamp(canary.progressed_at or timestamp(self.now)) + timedelta(
            seconds=self._seconds(self.inp.spec.rollout.progress_deadline)
        )
        if self.now >= deadline:
            self._pause(reasons.PROGRESS_DEADLINE_EXCEEDED, self.status.message)
            return False
        self._wake_in(POD_WAIT_REQUEUE)
        return False

    def _raise_weight(self, canary: CanaryStatus, target: int) -> None:
        if not self._canary_pods_ready(canary, target):
            return
        if canary.skip_analysis and target == 100:
            self._promote_when_confirmed(canary)
            return
        canary.shadow_done = True  # a live weight: the shadow step never comes back
        canary.weight = target
        canary.step_started_at = timestamp(self.now)
        canary.analysis = AnalysisStatus()
        self.status.message = f"canary {canary.version} at {target}%"
        self._event("Normal", reasons.STEP_STARTED, f"canary {canary.version} weight {target}%")
        self._wake_in(look_gap(self.inp.spec, canary))

    # --- the shadow step ----------------------------------------------------------------------

    def _shadow(self, canary: CanaryStatus, measurement: Measurement | None) -> None:
        """Mirror live traffic to the canary and analyse it for shadow.duration, weight 0."""
        shadow = self.inp.spec.rollout.shadow
        assert shadow is not None
        if self.inp.shadow_refusal is not None:
            self._refuse_shadow(self.inp.shadow_refusal)
            return
        if canary.mirror == 0:
            self._start_mirror(canary, shadow.percent)
            return
        if measurement is not None and not self._judge(canary, measurement):
            return  # rolled back before any live weight
        dwell = self._seconds(shadow.duration)
        if self._step_passed(canary, dwell):
            self._end_shadow(canary, f"{canary.version} passed the shadow step")
            self._raise_weight(canary, self._anchor(canary).weight)
            return
        self._check_deadline(canary, dwell)
        self._wake_in(look_gap(self.inp.spec, canary))

    def _refuse_shadow(self, refusal: Refusal) -> None:
        """The data plane cannot serve the mirror: no rollout begins, and a canary waiting for (or
        in) its shadow step is withdrawn with its mirror; the running version keeps serving. An
        edit that drops `shadow`, or a class that gains the feature, lets the rollout begin."""
        canary, message = self.status.canary, refusal.message
        if canary is not None:
            self._history(canary.revision, canary.version, "Cancelled", message)
            self._drain(canary)
            self.status.phase = "Healthy"
        said = next((c for c in self.status.conditions if c.type == reasons.PROGRESSING), None)
        told = said is not None and (said.reason, said.message) == (refusal.reason, message)
        if not told and self.status.message != message:  # one Event, not one per reconcile
            self._event("Warning", refusal.reason, message)
        self.status.message = message
        self._wake_in(SHADOW_REFUSAL_RECHECK)

    def _start_mirror(self, canary: CanaryStatus, percent: int) -> None:
        if not self._canary_pods_ready(canary, percent):
            return
        canary.mirror = percent
        canary.shadow_started_at = canary.step_started_at = timestamp(self.now)
        canary.analysis = AnalysisStatus()
        self.status.message = (
            f"canary {canary.version} in shadow: {percent}% of live traffic mirrored, "
            "its answers reach no user"
        )
        self._event("Normal", reasons.SHADOW_STARTED, self.status.message)
        self._wake_in(look_gap(self.inp.spec, canary))

    def _end_shadow(self, canary: CanaryStatus, message: str) -> None:
        """Mirroring stops (the router drops the mirror in the same write that sets a weight)."""
        canary.mirror = 0
        canary.shadow_done = True
        canary.progressed_at = timestamp(self.now)
        self.status.message = message
        self._event("Normal", reasons.SHADOW_ENDED, message)

    def _judge(self, canary: CanaryStatus, measurement: Measurement) -> bool:
        """Record the measurement; False when it ended the rollout (rolled back)."""
        canary.analysis = measurement.to_status()
        if measurement.advisory:  # dryRun gates: counted over the rollout, never acted on
            at_time = canary.analysis.measured_at or timestamp(self.now)
            canary.advisory = tally_advisory(canary.advisory, measurement.advisory, at_time)
        at = f" {where(canary)}"
        if measurement.phase == "Fail":
            share = not_as_weighted(measurement.message)  # the router sent it far above its weight
            reason = reasons.TRAFFIC_NOT_AS_WEIGHTED if share else reasons.ANALYSIS_FAILED
            self._rollback("RolledBack", reason, measurement.message + at)
            return False
        if measurement.phase == "Error":
            policy = self.inp.spec.rollout.analysis.on_metrics_unavailable
            if policy == "rollback":
                message = f"metrics unavailable: {measurement.message}{at}"
                self._rollback("RolledBack", reasons.METRICS_UNAVAILABLE, message)
                return False
            self.status.message = f"holding {where(canary)}: metrics unavailable"
        elif measurement.phase == "Inconclusive":
            self.status.message = f"holding {where(canary)}: {measurement.message}"
        else:
            self.status.message = f"canary {canary.version} {where(canary)}: passing"
            if note := would_fail(measurement.advisory):
                self.status.message += f" ({note})"
        return True

    def _step_passed(self, canary: CanaryStatus, dwell: float) -> bool:
        analysis = canary.analysis
        if analysis.phase != "Pass" or analysis.measured_at is None:
            return False
        assert canary.step_started_at is not None
        dwell_end = parse_timestamp(canary.step_started_at) + timedelta(seconds=dwell)
        return parse_timestamp(analysis.measured_at) >= dwell_end

    def _next_step(self, canary: CanaryStatus) -> None:
        if self._anchor(canary).last:
            self._promote()
            return
        self._event("Normal", reasons.STEP_PASSED, f"{canary.version} passed {canary.weight}%")
        canary.step_index += 1
        canary.progressed_at = timestamp(self.now)
        self._wake_in(0.5)

    def _check_deadline(self, canary: CanaryStatus, dwell: float) -> None:
        if canary.analysis.phase == "Error":
            return  # onMetricsUnavailable=hold waits for Prometheus, it never pauses
        assert canary.step_started_at is not None
        budget = max(dwell, self._seconds(self.inp.spec.rollout.progress_deadline))
        if self.now >= parse_timestamp(canary.step_started_at) + timedelta(seconds=budget):
            detail = canary.analysis.message or "no conclusive measurement"
            self._pause(reasons.PROGRESS_DEADLINE_EXCEEDED, f"paused {where(canary)}: {detail}")

    def _promote(self) -> None:
        status, canary = self.status, self.status.canary
        assert canary is not None
        assert status.active_slot is not None
        if not self._canary_pods_ready(canary, 100):  # the stable Service is about to select them
            return
        keep = self.inp.spec.rollout.keep_previous
        delay = keep if self._seconds(keep) > 0 else self.inp.spec.rollout.scale_down_delay
        old = PreviousStatus(
            slot=status.active_slot,
            revision=status.active_revision or "",
            version=status.active_version or "",
            until=self._until(delay),
        )
        if self._seconds(keep) > 0:
            status.previous = old
        else:
            status.draining = old
        self._wake_in(self._seconds(delay))
        message = f"{canary.version} promoted: slot {canary.slot} is active"
        if stage_webhooks(self.inp.spec, "postRollout"):
            status.post_rollout = canary.revision  # the next pass calls them
            self._wake_in(0.5)
        self._history(canary.revision, canary.version, "Promoted", message)
        status.active_slot = canary.slot
        status.active_revision = canary.revision
        status.active_version = canary.version
        status.canary = None
        status.phase = "Healthy"
        status.message = message
        self._event("Normal", reasons.PROMOTED, message)
