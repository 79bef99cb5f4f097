"""The rollout state machine: pure `next_action(...)`, all of its state in `.status`.

One call looks at the spec's revision, the status, what the cluster shows of both slots, an optional
fresh measurement and the clock, and returns the next status, the events to post and when to look
again. The reconcile performs it (sizes slots, sets router weights from the status) and persists it,
so a restarted operator resumes at the same step and weight. Early returns, one exit per "not yet".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    SLOTS,
    AnalysisStatus,
    CanaryStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    PreviousStatus,
    parse_duration,
)
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.rollout_plan import (
    COMMAND_ANNOTATION,
    VERBS,
    Command,
    Event,
    RolloutInput,
    SlotObservation,
    StepPosition,
    Transition,
    analysis_due,
    dwell_of,
    in_shadow,
    look_gap,
    other_slot,
    parse_timestamp,
    plan_replicas,
    step_position,
    timestamp,
    where,
)

__all__ = [  # the machine's whole interface, re-exported for the reconcile and the tests
    "COMMAND_ANNOTATION",
    "VERBS",
    "Command",
    "Event",
    "RolloutInput",
    "SlotObservation",
    "StepPosition",
    "Transition",
    "analysis_due",
    "dwell_of",
    "in_shadow",
    "look_gap",
    "next_action",
    "other_slot",
    "parse_timestamp",
    "plan_replicas",
    "step_position",
    "timestamp",
    "where",
]

POD_WAIT_REQUEUE = 5.0
SHADOW_REFUSAL_RECHECK = 60.0  # the GatewayClass's features are read again about this often
HISTORY_LIMIT = 10


def next_action(inp: RolloutInput, measurement: Measurement | None, now: datetime) -> Transition:
    """The next status of the rollout: pure, and idempotent for an unchanged world."""
    machine = _Machine(inp, now)
    machine.run(measurement)
    return Transition(
        status=machine.status, events=tuple(machine.events), requeue_after=machine.requeue
    )


@dataclass
class _Machine:
    inp: RolloutInput
    now: datetime
    status: ModelDeploymentStatus = field(init=False)
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None

    def __post_init__(self) -> None:
        self.status = self.inp.status.model_copy(deep=True)

    # --- helpers -------------------------------------------------------------------------------

    def _event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def _wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.5)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def _seconds(self, duration: str) -> float:
        return parse_duration(duration)

    def _until(self, duration: str) -> str:
        return timestamp(self.now + timedelta(seconds=self._seconds(duration)))

    def _history(self, revision: str, version: str, outcome: str, message: str) -> None:
        started = self.status.canary.started_at if self.status.canary else None
        entry = HistoryEntry.model_validate(
            {
                "revision": revision,
                "version": version,
                "outcome": outcome,
                "message": message,
                "startedAt": started,
                "finishedAt": timestamp(self.now),
            }
        )
        self.status.history = [entry, *self.status.history][:HISTORY_LIMIT]

    # --- the flow ------------------------------------------------------------------------------

    def run(self, measurement: Measurement | None) -> None:
        self._expire_kept_slots()
        if self.status.active_slot is None:
            self._first_deploy()
            return
        self._command()
        status, revision = self.status, self.inp.revision
        if status.canary is not None:
            if revision == status.active_revision:
                self._cancel()
            elif revision != status.canary.revision:
                self._supersede()
            else:
                self._progress(measurement)
            return
        if revision == status.active_revision:
            self._steady()
        elif self._previous_is_warm(revision):
            self._undo("spec reverted")
        elif revision == status.held_revision:
            self._wake_in(self._seconds(self.inp.spec.rollout.step_duration))
        else:
            self._start()

    def _expire_kept_slots(self) -> None:
        for name in ("previous", "draining"):
            kept: PreviousStatus | None = getattr(self.status, name)
            if kept is None:
                continue
            remaining = (parse_timestamp(kept.until) - self.now).total_seconds()
            if remaining <= 0:
                setattr(self.status, name, None)
                self._event(
                    "Normal", "ScaledDown", f"slot {kept.slot} ({kept.version}) scaled to 0"
                )
            else:
                self._wake_in(remaining)

    def _first_deploy(self) -> None:
        self.status.active_slot = SLOTS[0]
        self.status.active_revision = self.inp.revision
        self.status.active_version = self.inp.version
        self.status.phase = "Progressing"
        self.status.message = f"deploying {self.inp.version} into slot {SLOTS[0]}"
        self._event("Normal", reasons.FIRST_DEPLOY, self.status.message)
        self._wake_in(POD_WAIT_REQUEUE)

    def _steady(self) -> None:
        status = self.status
        assert status.active_slot is not None
        assert status.active_revision is not None
        if status.held_revision is not None:  # the spec went back to what runs
            status.held_revision = None
        observed = self.inp.slots[status.active_slot]
        ready = observed.ready_for(status.active_revision, self.inp.active_replicas)
        if not ready and status.phase in (None, "Progressing"):
            status.message = _waiting(observed, self.inp.active_replicas, "active")
            self._wake_in(POD_WAIT_REQUEUE)
            return
        if status.phase != "Healthy":
            self._event("Normal", reasons.AVAILABLE, f"{status.active_version} is serving")
            status.phase = "Healthy"
            status.message = f"{status.active_version} serving from slot {status.active_slot}"

    def _start(self) -> None:
        if self.inp.shadow_refusal is not None:
            self._refuse_shadow(self.inp.shadow_refusal)
            return
        status = self.status
        assert status.active_slot is not None
        slot = other_slot(status.active_slot)
        status.previous = None  # the idle slot is reused: undo is no longer possible
        status.draining = None
        status.held_revision = None
        status.canary = CanaryStatus(
            slot=slot,
            revision=self.inp.revision,
            version=self.inp.version,
            weight=0,
            step_index=0,
            steps=list(self.inp.spec.rollout.steps),
            started_at=timestamp(self.now),
            progressed_at=timestamp(self.now),
            skip_analysis=self.inp.spec.rollout.steps == [100]
            and self.inp.spec.rollout.shadow is None,
        )
        status.phase = "Progressing"
        status.message = f"rolling out {self.inp.version} into slot {slot}"
        self._event("Normal", reasons.ROLLOUT_IN_PROGRESS, status.message)
        self._wake_in(POD_WAIT_REQUEUE)

    def _supersede(self) -> None:
        canary = self.status.canary
        assert canary is not None
        message = f"{canary.version} superseded by {self.inp.version} {where(canary)}"
        self._history(canary.revision, canary.version, "Superseded", message)
        self._event("Normal", reasons.SUPERSEDED, message)
        self.status.canary = None
        self._start()

    def _cancel(self) -> None:
        canary = self.status.canary
        assert canary is not None
        message = (
            f"spec reverted to {self.status.active_version}: canary {canary.version} cancelled"
        )
        self._history(canary.revision, canary.version, "Cancelled", message)
        self._drain(canary)
        self._event("Normal", reasons.CANCELLED, message)
        self.status.phase = "Healthy"
        self.status.message = message

    def _drain(self, canary: CanaryStatus) -> None:
        self.status.canary = None
        self.status.draining = PreviousStatus(
            slot=canary.slot,
            revision=canary.revision,
            version=canary.version,
            until=self._until(self.inp.spec.rollout.scale_down_delay),
        )
        self._wake_in(self._seconds(self.inp.spec.rollout.scale_down_delay))

    def _rollback(self, outcome: str, reason: str, message: str) -> None:
        canary = self.status.canary
        assert canary is not None
        self._history(canary.revision, canary.version, outcome, message)
        self.status.held_revision = canary.revision
        self._drain(canary)
        self.status.phase = "Degraded"
        self.status.message = message
        self._event("Warning", reason, message)

    def _promote(self) -> None:
        status, canary = self.status, self.status.canary
        assert canary is not None
        assert status.active_slot is not None
        if not self._canary_pods_ready(canary, 100):  # the stable Service is about to select them
            return
        old = PreviousStatus(
            slot=status.active_slot,
            revision=status.active_revision or "",
            version=status.active_version or "",
            until=self.now.isoformat(),
        )
        keep = self.inp.spec.rollout.keep_previous
        delay = keep if self._seconds(keep) > 0 else self.inp.spec.rollout.scale_down_delay
        old = old.model_copy(update={"until": self._until(delay)})
        if self._seconds(keep) > 0:
            status.previous = old
        else:
            status.draining = old
        self._wake_in(self._seconds(delay))
        message = f"{canary.version} promoted: slot {canary.slot} is active"
        self._history(canary.revision, canary.version, "Promoted", message)
        status.active_slot = canary.slot
        status.active_revision = canary.revision
        status.active_version = canary.version
        status.canary = None
        status.phase = "Healthy"
        status.message = message
        self._event("Normal", reasons.PROMOTED, message)

    # --- a canary in flight ------------------------------------------------------------------

    def _progress(self, measurement: Measurement | None) -> None:
        canary = self.status.canary
        assert canary is not None
        if self.status.phase == "Paused":
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
            self._promote()
            return
        if measurement is not None and not self._judge(canary, measurement):
            return
        dwell = self._seconds(self.inp.spec.rollout.step_duration)
        if self._step_passed(canary, dwell):
            self._next_step(canary)
            return
        self._check_deadline(canary, dwell)
        self._wake_in(look_gap(self.inp.spec, canary))

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
        self.status.message = _waiting(observed, needed, "canary")
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
            self._promote()
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

    def _refuse_shadow(self, refusal: str) -> None:
        """The data plane cannot serve the mirror: no rollout begins, and a canary waiting for (or
        in) its shadow step is withdrawn with its mirror; the running version keeps serving. An
        edit that drops `shadow`, or a class that gains the feature, lets the rollout begin."""
        canary = self.status.canary
        if canary is not None:
            self._history(canary.revision, canary.version, "Cancelled", refusal)
            self._drain(canary)
            self.status.phase = "Healthy"
        said = next((c for c in self.status.conditions if c.type == reasons.PROGRESSING), None)
        told = said is not None and (said.reason, said.message) == (reasons.SHADOW_REFUSED, refusal)
        if not told and self.status.message != refusal:  # one Event, not one per reconcile
            self._event("Warning", reasons.SHADOW_REFUSED, refusal)
        self.status.message = refusal
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
        at = f" {where(canary)}"
        if measurement.phase == "Fail":
            self._rollback("RolledBack", reasons.ANALYSIS_FAILED, measurement.message + at)
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

    def _pause(self, reason: str, message: str) -> None:
        self.status.phase = "Paused"
        self.status.message = message
        self._event("Warning", reason, message)

    # --- manual control ----------------------------------------------------------------------

    def _command(self) -> None:
        command = self.inp.command
        if command is None or command.id == self.status.acknowledged_command:
            return
        self.status.acknowledged_command = command.id
        handler = getattr(self, f"_command_{command.verb}")
        done: str | None = handler(command)
        if done is None:
            self._event("Normal", reasons.COMMAND_IGNORED, f"{command.render()}: nothing to do")
        else:
            self._event("Normal", reasons.COMMAND, f"{command.render()}: {done}")

    def _command_pause(self, command: Command) -> str | None:
        if self.status.canary is None or self.status.phase == "Paused":
            return None
        self._pause(reasons.PAUSED, f"paused {where(self.status.canary)} by command")
        return "paused"

    def _command_resume(self, command: Command) -> str | None:
        canary = self.status.canary
        if canary is None or self.status.phase != "Paused":
            return None
        self.status.phase = "Progressing"
        canary.progressed_at = timestamp(self.now)
        if canary.weight > 0 or canary.mirror > 0:  # a fresh analysis window, same weight
            canary.step_started_at = timestamp(self.now)
            canary.analysis = AnalysisStatus()
        return "resumed"

    def _command_promote(self, command: Command) -> str | None:
        canary = self.status.canary
        if canary is None:
            return None
        position = self._anchor(canary)
        self.status.phase = "Progressing"
        canary.progressed_at = timestamp(self.now)
        if in_shadow(self.inp.spec, canary) and not command.full:
            canary.mirror, canary.shadow_done = 0, True
            return f"skipping the shadow step to {position.weight}%"
        canary.mirror, canary.shadow_done = 0, True
        if command.full or position.last:
            canary.step_index = len(position.steps) - 1
            canary.skip_analysis = True
            return "promoting to 100% without analysis"
        canary.step_index += 1
        return f"skipping to {position.steps[canary.step_index]}%"

    def _command_abort(self, command: Command) -> str | None:
        if self.status.canary is None:
            return None
        canary = self.status.canary
        self._rollback("Aborted", reasons.ABORTED, f"{canary.version} aborted by command")
        return "aborted"

    def _command_retry(self, command: Command) -> str | None:
        if self.status.held_revision is None:
            return None
        self.status.held_revision = None
        return "rolling out again"

    def _command_undo(self, command: Command) -> str | None:
        previous = self.status.previous
        if previous is None or self.status.canary is not None:
            return None
        if not self._previous_is_warm(previous.revision):
            return None
        return self._undo("kubectl modelfleet undo", hold=True)

    # --- undo --------------------------------------------------------------------------------

    def _previous_is_warm(self, revision: str) -> bool:
        """Whether `revision` is the previous slot kept warm, with Ready pods to take traffic."""
        previous = self.status.previous
        if previous is None or previous.revision != revision or self.status.active_slot is None:
            return False
        return self.inp.slots[previous.slot].ready_for(previous.revision, 1)

    def _undo(self, trigger: str, hold: bool = False) -> str:
        """All traffic back to the warm previous slot in one write (Service and router together).

        `hold`: the spec still names the undone revision (a command), so it is not rolled out again
        until the spec changes or `retry`; a spec revert leaves nothing to hold.
        """
        status, previous = self.status, self.status.previous
        assert previous is not None
        assert status.active_slot is not None
        delay = self.inp.spec.rollout.scale_down_delay
        undone = PreviousStatus(
            slot=status.active_slot,
            revision=status.active_revision or "",
            version=status.active_version or "",
            until=self._until(delay),
        )
        message = (
            f"undone ({trigger}): {previous.version} active again in slot {previous.slot}, "
            f"{undone.version} taken out of traffic"
        )
        self._history(undone.revision, undone.version, "Undone", message)
        status.active_slot = previous.slot
        status.active_revision = previous.revision
        status.active_version = previous.version
        status.previous = None
        status.draining = undone
        status.held_revision = undone.revision if hold else None
        status.phase = "Healthy"
        status.message = message
        self._event("Normal", reasons.UNDONE, message)
        self._wake_in(self._seconds(delay))
        return message


def _waiting(observed: SlotObservation, needed: int, role: str) -> str:
    text = f"waiting for {role} pods: {observed.ready_replicas}/{needed} ready"
    if observed.stale_replicas:
        text += f", {observed.stale_replicas} of the previous template still running"
    return f"{text} ({observed.problem})" if observed.problem else text
