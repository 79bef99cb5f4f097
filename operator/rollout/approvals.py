"""Webhook and approval gates, and the built-in smoke test, as the machine sees them.

`gates_due` tells the reconcile which gates to ask before `next_action` (the calls are I/O: the
`gates.RolloutGates` adapter makes them); `Gated._gates_clear` turns their answers, fed back as
`RolloutInput.gate_answers`, into the status: a wait in `canary.gates`, each approval in the
history, a rollback when a gate says so. Pure: no I/O, the clock is passed in.

The stages, in rollout order: preRollout (and the smoke test) once the canary's pods are Ready and
before any traffic reaches it, mirrored included; confirmStep after each step but the last passed
its analysis; confirmPromotion after the last one passed; postRollout once after the promotion
(`machine.Machine._post_rollout`). A wait never stops the analysis: a confirm gate that holds keeps
the canary at its weight, measured at every look, and a Fail rolls it back as at any other time.
A confirm wait is an `AwaitingApproval` Event (so a notification) once, when it begins to hold, and
each approval an `Approved` one; both carry a `GateNote` with the gates, which the messages only name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    CONFIRM_GATES,
    CanaryStatus,
    GateStage,
    GateWaitStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RolloutGateType,
    RolloutWebhook,
    as_json,
    parse_duration,
)
from modelfleet.operator.rollout.draft import Draft
from modelfleet.operator.rollout.steps import where
from modelfleet.operator.rollout.types import GateAnswer, GateNote
from modelfleet.operator.timestamps import parse_timestamp, timestamp

SMOKE_GATE = "builtin:smoke"  # the smoke test's name among the gates (no webhook name has a colon)
APPROVE = "kubectl modelfleet approve"


@dataclass(frozen=True)
class DueGates:
    """The gates the reconcile should ask now: webhooks to call, and whether to run the smoke test."""

    webhooks: tuple[RolloutWebhook, ...] = ()
    smoke: bool = False

    def __bool__(self) -> bool:
        return bool(self.webhooks) or self.smoke


def stage_webhooks(spec: ModelDeploymentSpec, stage: RolloutGateType) -> list[RolloutWebhook]:
    return [hook for hook in spec.rollout.webhooks or [] if hook.type == stage]


def stage_gates(spec: ModelDeploymentSpec, stage: GateStage) -> list[str]:
    """Every gate a stage waits for, by name (the smoke test is a preRollout gate)."""
    names = [hook.name for hook in stage_webhooks(spec, stage)]
    if stage == "preRollout" and spec.rollout.smoke is not None:
        names.insert(0, SMOKE_GATE)
    return names


def gates_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> DueGates:
    """Which gates to ask before this pass's `next_action`: the open wait's webhooks that have not
    passed (again every analysis interval while they hold), or the postRollout ones once."""
    canary = status.canary
    if canary is None:
        if status.post_rollout is not None and status.post_rollout == status.active_revision:
            return DueGates(tuple(stage_webhooks(spec, "postRollout")))
        return DueGates()
    wait = canary.gates
    if wait is None or status.phase == "Paused":
        return DueGates()
    if wait.asked_at is not None:
        since = (now - parse_timestamp(wait.asked_at)).total_seconds()
        if since < parse_duration(spec.rollout.analysis.interval):
            return DueGates()
    hooks = tuple(
        hook
        for hook in stage_webhooks(spec, wait.stage)
        if not hook.manual and hook.name not in wait.passed
    )
    smoke = wait.stage == "preRollout" and spec.rollout.smoke is not None
    return DueGates(hooks, smoke and SMOKE_GATE not in wait.passed)


def gate_body(
    namespace: str, name: str, hook: RolloutWebhook, status: ModelDeploymentStatus
) -> dict[str, Any]:
    """What a webhook gate is POSTed: the rollout's identity and its latest figures, named as the
    notifications name them (`notify.RolloutNotice.data`), no nulls."""
    canary = status.canary
    values: dict[str, Any] = {
        "gate": hook.name,
        "type": hook.type,
        "namespace": namespace,
        "name": name,
        "activeRevision": status.active_revision,
        "activeVersion": status.active_version,
    }
    if canary is None:  # postRollout: the promoted revision is the active one
        previous = status.previous
        values |= {
            "revision": status.active_revision,
            "version": status.active_version,
            "slot": status.active_slot,
            "weight": 100,
            "previousVersion": previous.version if previous is not None else None,
        }
    else:
        steps = list(canary.steps or [])
        values |= {
            "revision": canary.revision,
            "version": canary.version,
            "slot": canary.slot,
            "weight": canary.weight,
            "step": steps.index(canary.weight) + 1 if canary.weight in steps else None,
            "steps": steps or None,
            "analysis": as_json(canary.analysis) or None,
        }
    return {key: value for key, value in values.items() if value is not None}


def gate_label(name: str, stage: str | None = None) -> str:
    """ "the smoke test", or "gate qa" ("confirmStep gate qa" with its stage)."""
    if name == SMOKE_GATE:
        return "the smoke test"
    return f"{stage} gate {name}" if stage else f"gate {name}"


class Gated(Draft):
    """The machine's side of the gates: open a wait, take the answers, approve, roll back."""

    def _gates_clear(self, canary: CanaryStatus, stage: GateStage) -> bool:
        """Whether every gate of `stage` passed for the canary's current step; until then the
        wait is in `canary.gates`, and False (also when a gate rolled the canary back)."""
        names = stage_gates(self.inp.spec, stage)
        wait = canary.gates
        if wait is not None and (wait.stage, wait.step_index) != (stage, canary.step_index):
            wait = canary.gates = None  # a wait of another step (a command moved the canary on)
        if not names:
            canary.gates = None  # the spec no longer has gates here (edited while waiting)
            return True
        if wait is None:
            self._open_wait(canary, stage)
            return False
        held = bool(wait.answers)
        if not self._take_answers(canary, wait, stage):
            return False  # rolled back
        if all(name in wait.passed for name in names):
            canary.gates = None
            canary.progressed_at = timestamp(self.now)
            return True
        self._say_waiting(canary, wait)
        if wait.answers and not held and not self._has_manual(stage):
            self._tell_waiting(wait)  # a webhook began to hold
        self._wake_in(parse_duration(self.inp.spec.rollout.analysis.interval))
        return False

    def _open_wait(self, canary: CanaryStatus, stage: GateStage) -> None:
        canary.gates = GateWaitStatus(
            stage=stage, step_index=canary.step_index, since=timestamp(self.now)
        )
        self._say_waiting(canary, canary.gates)
        if self._has_manual(stage):  # a person must act: told at once
            self._tell_waiting(canary.gates)
        self._wake_in(0.5)  # the next pass asks them

    def _has_manual(self, stage: GateStage) -> bool:
        return any(hook.manual for hook in stage_webhooks(self.inp.spec, stage))

    def _tell_waiting(self, wait: GateWaitStatus) -> None:
        """The AwaitingApproval event (a notification), once per confirm wait: when it opens with a
        manual gate, else when a webhook first holds; never at each look while it waits."""
        if wait.stage not in CONFIRM_GATES:
            return
        hooks = [h for h in stage_webhooks(self.inp.spec, wait.stage) if h.name not in wait.passed]
        note = GateNote(
            wait.stage, tuple(h.name for h in hooks), manual=any(h.manual for h in hooks)
        )
        self._event("Normal", reasons.AWAITING_APPROVAL, wait.message or "", note)

    def _take_answers(self, canary: CanaryStatus, wait: GateWaitStatus, stage: GateStage) -> bool:
        """Record this pass's answers in the wait; False when one rolled the canary back."""
        hooks = {hook.name: hook for hook in stage_webhooks(self.inp.spec, stage)}
        answers = [
            answer
            for answer in self.inp.gate_answers
            if (answer.gate in hooks or answer.gate == SMOKE_GATE)
            and answer.gate not in wait.passed
        ]
        for answer in answers:
            if answer.passed:
                wait.passed.append(answer.gate)
                wait.answers.pop(answer.gate, None)
                self._gate_passed(canary, stage, answer)
                continue
            policy = "rollback" if answer.gate == SMOKE_GATE else hooks[answer.gate].failure_policy
            said = f"{gate_label(answer.gate, stage)} failed: {answer.detail}"
            if policy == "rollback":
                reason = (
                    reasons.SMOKE_TEST_FAILED if answer.gate == SMOKE_GATE else reasons.GATE_FAILED
                )
                self._rollback("RolledBack", reason, f"{said} {self._before_or_at(canary)}")
                return False
            if policy == "report":
                wait.passed.append(answer.gate)
                wait.answers.pop(answer.gate, None)
                self._event(
                    "Warning", reasons.GATE_REPORTED, f"{said}; going on (onFailure: report)"
                )
                continue
            if wait.answers.get(answer.gate) != answer.detail:  # one Event per new answer
                self._event("Warning", reasons.GATE_HOLDING, f"{said}; asked again at each look")
            wait.answers[answer.gate] = answer.detail
        if answers:
            wait.asked_at = timestamp(self.now)
        return True

    def _gate_passed(self, canary: CanaryStatus, stage: GateStage, answer: GateAnswer) -> None:
        if stage in CONFIRM_GATES:
            self._approve(canary, stage, answer.gate, f"webhook answered {answer.detail}")
            return
        message = f"{gate_label(answer.gate, stage)} passed: {answer.detail}"
        self._event("Normal", reasons.GATE_PASSED, message)

    def _approve(self, canary: CanaryStatus, stage: str, gate: str, by: str) -> None:
        """One approval, in the history (who or what, where) and as an Event."""
        message = f"{stage} gate {gate} approved {self._before_or_at(canary)} ({by})"
        self._history(canary.revision, canary.version, "Approved", message)
        self._event("Normal", reasons.APPROVED, message, GateNote(stage, (gate,), by=by))

    def _before_or_at(self, canary: CanaryStatus) -> str:
        if canary.weight == 0 and canary.mirror == 0:
            return "before any traffic"
        return where(canary)

    def _say_waiting(self, canary: CanaryStatus, wait: GateWaitStatus) -> None:
        """The message (and so the Progressing condition) names what the rollout waits for."""
        hooks = {hook.name: hook for hook in stage_webhooks(self.inp.spec, wait.stage)}
        pending = [n for n in stage_gates(self.inp.spec, wait.stage) if n not in wait.passed]
        parts = []
        for name in pending:
            if name in hooks and hooks[name].manual:
                parts.append(f"{gate_label(name)} ({APPROVE})")
            elif name in wait.answers:
                parts.append(f"{gate_label(name)} (answered {wait.answers[name]})")
            else:
                parts.append(gate_label(name))
        what = "approval" if wait.stage in CONFIRM_GATES else "gates"
        wait.message = (
            f"canary {canary.version} waiting for {what} {self._before_or_at(canary)}: "
            f"{wait.stage} {'; '.join(parts)}"
        )
        self.status.message = wait.message
