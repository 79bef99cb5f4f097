"""The rollout state machine: pure `next_action(...)`, all of its state in `.status`.

One call looks at the spec's revision, the status, what the cluster shows of both slots, an optional
fresh measurement and the clock, and returns the next status, the events to post and when to look
again. The reconcile performs it (sizes slots, sets router weights from the status) and persists it,
so a restarted operator resumes at the same step and weight. Early returns, one exit per "not yet".
Here: which way the rollout goes (first deploy, start, supersede, cancel, undo) and the manual
commands; a canary in flight is `canary.CanaryFlight`'s.
"""

from __future__ import annotations

from datetime import datetime

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    CONFIRM_GATES,
    SLOTS,
    AnalysisStatus,
    CanaryStatus,
    PreviousStatus,
)
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.rollout.approvals import APPROVE, stage_webhooks
from modelfleet.operator.rollout.canary import CanaryFlight
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.draft import POD_WAIT_REQUEUE, waiting
from modelfleet.operator.rollout.steps import in_shadow, where
from modelfleet.operator.rollout.types import RolloutInput, Transition, other_slot
from modelfleet.operator.timestamps import parse_timestamp, timestamp


def next_action(inp: RolloutInput, measurement: Measurement | None, now: datetime) -> Transition:
    """The next status of the rollout: pure, and idempotent for an unchanged world."""
    machine = Machine(inp, now)
    machine.run(measurement)
    return Transition(
        status=machine.status, events=tuple(machine.events), requeue_after=machine.requeue
    )


class Machine(CanaryFlight):
    """One rollout decision: `run` picks the way, the methods below and `CanaryFlight`'s write it."""

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
        if status.post_rollout is not None:
            self._post_rollout()
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
            status.message = waiting(observed, self.inp.active_replicas, "active")
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
        status.post_rollout = None  # a newer rollout: the last one's postRollout gates are moot
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
        if self.inp.shadow_refusal is not None:  # the newer one cannot begin: the active one serves
            self._drain(canary)
            self.status.phase = "Healthy"
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

    def _command_approve(self, command: Command) -> str | None:
        """The manual gates of the open confirm wait are approved (recorded in the history)."""
        canary = self.status.canary
        wait = canary.gates if canary is not None else None
        if canary is None or wait is None or wait.stage not in CONFIRM_GATES:
            return None
        manual = [
            hook.name
            for hook in stage_webhooks(self.inp.spec, wait.stage)
            if hook.manual and hook.name not in wait.passed
        ]
        if not manual:
            return None
        for name in manual:
            wait.passed.append(name)
            who = f" by {command.by}" if command.by else ""
            self._approve(canary, wait.stage, name, f"{APPROVE}{who}, command {command.id}")
        return f"approved {', '.join(manual)}"

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

    # --- after the promotion --------------------------------------------------------------------

    def _post_rollout(self) -> None:
        """The postRollout webhooks' answers, taken once: a failure is a Warning Event and the
        message (so the Progressing condition) says it; with onFailure rollback the promotion is
        undone while the previous slot is warm (keepPrevious)."""
        status = self.status
        hooks = {hook.name: hook for hook in stage_webhooks(self.inp.spec, "postRollout")}
        if status.post_rollout != status.active_revision or not hooks:
            status.post_rollout = None
            return
        answers = [answer for answer in self.inp.gate_answers if answer.gate in hooks]
        if not answers:
            self._wake_in(0.5)  # asked by the next pass
            return
        status.post_rollout = None
        for answer in answers:
            said = f"postRollout gate {answer.gate}"
            if answer.passed:
                self._event("Normal", reasons.GATE_PASSED, f"{said} passed: {answer.detail}")
                continue
            failed = f"{said} failed after {status.active_version} was promoted: {answer.detail}"
            self._event("Warning", reasons.POST_ROLLOUT_FAILED, failed)
            previous = status.previous
            undo = hooks[answer.gate].failure_policy == "rollback"
            if undo and previous is not None and self._previous_is_warm(previous.revision):
                self._undo(failed, hold=True)
                return
            if undo:
                failed += " (nothing undone: the previous slot is no longer warm)"
            status.message = failed

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
