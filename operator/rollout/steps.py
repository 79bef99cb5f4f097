"""Where the canary stands in its steps, when to look at it, and how many pods each slot gets.

The reconcile asks `analysis_due` (take a measurement before `next_action`?) and `plan_replicas`
(pods per slot for the new status); the machine and the reconcile both read the shadow step's rules
(`in_shadow`, `dwell_of`) and the canary's place in the steps (`step_position`). Pure code: no
I/O, the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from modelfleet.operator.api import (
    SLOTS,
    CanaryStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    parse_duration,
)
from modelfleet.operator.rollout.types import RolloutInput
from modelfleet.operator.timestamps import parse_timestamp

QUICK_LOOK_MIN_S = 1.0


@dataclass(frozen=True)
class StepPosition:
    """Where the canary stands: `index` into `steps`, the weights the status's stepIndex counts in."""

    steps: tuple[int, ...]
    index: int

    @property
    def weight(self) -> int:
        """The weight of this step (the canary's current weight when an edit left it between)."""
        return self.steps[self.index]

    @property
    def last(self) -> bool:
        return self.index == len(self.steps) - 1


def step_position(spec: ModelDeploymentSpec, canary: CanaryStatus) -> StepPosition:
    """The canary's step in the spec's `rollout.steps`, re-anchored when they were edited mid-rollout.

    The status's stepIndex counts in `canary.steps`, the list it was written against. After an edit
    the canary never gains weight from the edit alone: a weight still being analysed stays a step
    of its own (its position in the new list, or inserted into it when the list lacks it) until its
    analysis passes; a weight that already passed (the next step was waiting for pods) waits for
    the first new step above it. `promote --full` stays at the last step, 100 %.
    """
    steps = tuple(spec.rollout.steps)
    if canary.skip_analysis:
        return StepPosition(steps, len(steps) - 1)
    known = tuple(canary.steps) if canary.steps else steps  # not recorded: the spec's
    index, weight = canary.step_index, canary.weight
    if known == steps and index < len(steps):
        return StepPosition(steps, index)
    if weight == 0:  # no live weight yet: the first step (or the shadow step) is next
        return StepPosition(steps, 0)
    if index < len(known) and weight < known[index]:  # this weight passed; the next was pending
        above = (i for i, step in enumerate(steps) if step > weight)
        return StepPosition(steps, next(above, len(steps) - 1))
    held = steps if weight in steps else tuple(sorted({*steps, weight}))
    return StepPosition(held, held.index(weight))


def in_shadow(spec: ModelDeploymentSpec, canary: CanaryStatus) -> bool:
    """Whether the canary is in (or waiting for) its shadow step: weight 0, live traffic mirrored."""
    return (
        spec.rollout.shadow is not None
        and not canary.shadow_done
        and not canary.skip_analysis
        and canary.step_index == 0
        and canary.weight == 0
    )


def dwell_of(spec: ModelDeploymentSpec, canary: CanaryStatus) -> float:
    """Seconds the current step (the shadow step, or a live weight) is analysed."""
    shadow = spec.rollout.shadow
    if shadow is not None and in_shadow(spec, canary):
        return parse_duration(shadow.duration)
    return parse_duration(spec.rollout.step_duration)


def where(canary: CanaryStatus) -> str:
    """Where the canary stands, for messages: "in shadow" or "at 25%"."""
    return "in shadow" if canary.weight == 0 and canary.mirror > 0 else f"at {canary.weight}%"


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether the reconcile should take a measurement before calling `next_action`."""
    canary = status.canary
    if canary is None or status.phase == "Paused" or canary.skip_analysis:
        return False
    if in_shadow(spec, canary):
        if canary.mirror == 0:
            return False  # mirroring has not begun: nothing reaches the canary yet
    elif canary.weight == 0 or canary.weight != step_position(spec, canary).weight:
        return False
    if canary.step_started_at is None:
        return False
    last = canary.analysis.measured_at
    if last is None or parse_timestamp(last) < parse_timestamp(canary.step_started_at):
        return True
    elapsed = (now - parse_timestamp(last)).total_seconds()
    dwell_end = parse_timestamp(canary.step_started_at) + timedelta(seconds=dwell_of(spec, canary))
    return elapsed >= look_gap(spec, canary) or (parse_timestamp(last) < dwell_end <= now)


def look_gap(spec: ModelDeploymentSpec, canary: CanaryStatus) -> float:
    """Seconds from one look at the canary to the next.

    `interval` while the canary passes, and while Prometheus cannot be read (no hammering it);
    a quarter of it (at least QUICK_LOOK_MIN_S) while the evidence is still building: the first
    look after a weight is set and every Inconclusive one. A failing canary is then caught a
    scrape after its data suffices, not up to an interval later (at 20 canary req/s, 5 % errors
    need ~170 requests to clear the 1 % bound). More looks do not weaken the error-rate rule:
    its z is corrected for ~100 looks a step.
    """
    interval = parse_duration(spec.rollout.analysis.interval)
    if canary.analysis.phase in ("Pass", "Error"):
        return interval
    return min(interval, max(QUICK_LOOK_MIN_S, interval / 4))


def plan_replicas(inp: RolloutInput, status: ModelDeploymentStatus) -> dict[str, int | None]:
    """Pods per slot for this status; None = the active slot's size is the autoscaler's."""
    plan: dict[str, int | None] = dict.fromkeys(SLOTS, 0)
    if status.active_slot is None:
        return plan
    if status.draining is not None:  # keeps whatever it has until `until`
        plan[status.draining.slot] = inp.slots[status.draining.slot].replicas
    if status.previous is not None:
        plan[status.previous.slot] = inp.active_replicas
    if status.canary is not None:
        plan[status.canary.slot] = inp.canary_sizer(inp.active_replicas, _share(inp, status.canary))
    plan[status.active_slot] = None if inp.spec.autoscaling is not None else inp.active_replicas
    return plan


def _share(inp: RolloutInput, canary: CanaryStatus) -> int:
    """The traffic share the canary's pods are sized for: the mirrored one in shadow."""
    shadow = inp.spec.rollout.shadow
    if shadow is not None and in_shadow(inp.spec, canary):
        return shadow.percent
    return step_position(inp.spec, canary).weight
