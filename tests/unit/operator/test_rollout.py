"""The rollout state machine, driven through whole rollouts against a simulated cluster.

`World` plays the cluster: every slot gets the pods `plan_replicas` asks for, Ready at once unless a
test says otherwise. Measurements come from a scripted fake analyzer.
"""

# `w.step()` changes `w.status` in place; mypy keeps a field narrowed across the call.
# mypy: disable-error-code="comparison-overlap"

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator import reasons
from modelfleet.operator.api import SLOTS, ModelDeploymentSpec, ModelDeploymentStatus
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.machine import next_action
from modelfleet.operator.rollout.steps import analysis_due, plan_replicas
from modelfleet.operator.rollout.types import Refusal, RolloutInput, SlotObservation, Transition
from modelfleet.operator.routers import proportional_replicas
from modelfleet.operator.timestamps import timestamp
from tests.unit.operator.specs import make_spec

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
FAST = {
    "stepDuration": "30s",
    "progressDeadline": "2m",
    "scaleDownDelay": "30s",
    "keepPrevious": "5m",
}


def measurement(phase: str, now: datetime, **values: Any) -> Measurement:
    return Measurement(phase=phase, message=f"{phase.lower()} look", measured_at=now, **values)  # type: ignore[arg-type]


@dataclass
class World:
    """The cluster as the machine sees it, plus the clock; `step()` is one reconcile."""

    spec: ModelDeploymentSpec
    revision: str = "r1"
    version: str = "v1"
    replicas: int = 2
    now: datetime = T0
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    revisions: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(SLOTS))
    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))
    broken: set[str] = field(default_factory=set)  # revisions whose pods never get Ready
    stale: set[str] = field(default_factory=set)  # slots still running an earlier template's pods
    analyzer: Callable[[datetime], Measurement] = lambda now: measurement("Pass", now)
    looks: int = 0
    command: Command | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    mirrors: list[tuple[int, int]] = field(default_factory=list)  # (weight, mirror) as they changed
    shadow_refusal: Refusal | None = None  # what the reconcile read from the GatewayClass

    def observations(self) -> dict[str, SlotObservation]:
        out: dict[str, SlotObservation] = {}
        for slot in SLOTS:
            revision = self.revisions[slot]
            ready = 0 if revision in self.broken else self.sizes[slot]
            problem = "CrashLoopBackOff: model failed to load" if revision in self.broken else None
            stale = 1 if slot in self.stale else 0
            out[slot] = SlotObservation(revision, self.sizes[slot], ready, ready, problem, stale)
        return out

    def inp(self) -> RolloutInput:
        return RolloutInput(
            spec=self.spec,
            revision=self.revision,
            version=self.version,
            status=self.status,
            slots=self.observations(),
            active_replicas=self.replicas,
            canary_sizer=proportional_replicas,
            command=self.command,
            shadow_refusal=self.shadow_refusal,
        )

    def step(self) -> Transition:
        look = None
        if analysis_due(self.spec, self.status, self.now):
            look = self.analyzer(self.now)
            self.looks += 1
        transition = next_action(self.inp(), look, self.now)
        self.status = transition.status
        self.events += [(e.type, e.reason, e.message) for e in transition.events]
        self._apply(transition.status)
        weight = transition.status.canary.weight if transition.status.canary else 0
        if not self.weights or self.weights[-1] != weight:
            self.weights.append(weight)
        mirror = transition.status.canary.mirror if transition.status.canary else 0
        if not self.mirrors or self.mirrors[-1] != (weight, mirror):
            self.mirrors.append((weight, mirror))
        return transition

    def _apply(self, status: ModelDeploymentStatus) -> None:
        """What the reconcile does with a status: slots get their revision and size."""
        plan = plan_replicas(self.inp(), status)
        for slot, size in plan.items():
            self.sizes[slot] = self.replicas if size is None else size
        if status.active_slot and status.active_revision:
            self.revisions[status.active_slot] = status.active_revision
        if status.canary:
            self.revisions[status.canary.slot] = status.canary.revision

    def run(self, seconds: float, tick: float = 5) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.step()
            self.now += timedelta(seconds=tick)

    def deployed(self) -> World:
        """r1 serving from blue, Healthy."""
        self.step()
        self.step()
        assert self.status.phase == "Healthy"
        return self

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def world(**rollout: Any) -> World:
    return World(spec=make_spec(rollout={**FAST, **rollout}))


def new_revision(w: World, revision: str = "r2", version: str = "v2") -> World:
    w.revision, w.version = revision, version
    w.spec = w.spec.model_copy(
        update={"model": w.spec.model.model_copy(update={"version": version})}
    )
    return w


# --- first deploy --------------------------------------------------------------------------


def test_first_deploy_goes_into_blue_and_turns_healthy_when_ready() -> None:
    w = world()
    first = w.step()
    assert w.status.active_slot == "blue"
    assert w.status.active_revision == "r1"
    assert w.status.phase == "Progressing"
    assert first.requeue_after is not None
    w.step()
    assert w.status.phase == "Healthy"
    assert w.status.canary is None
    assert reasons.AVAILABLE in w.reasons()


def test_first_deploy_with_a_broken_model_says_why() -> None:
    w = world()
    w.broken.add("r1")
    w.step()
    w.step()
    assert w.status.phase == "Progressing"
    assert "CrashLoopBackOff" in (w.status.message or "")


def test_steady_state_is_a_fixed_point() -> None:
    w = world().deployed()
    before = w.status.model_dump()
    transition = w.step()
    assert transition.status.model_dump() == before
    assert transition.events == ()


# --- a healthy rollout ---------------------------------------------------------------------


def test_healthy_canary_walks_every_step_and_is_promoted() -> None:
    w = new_revision(world().deployed())
    w.run(400)
    assert w.weights == [0, 10, 25, 50, 100, 0]
    assert w.status.active_slot == "green"
    assert w.status.active_revision == "r2"
    assert w.status.phase == "Healthy"
    assert w.status.history[0].outcome == "Promoted"
    assert w.status.previous is not None
    assert w.status.previous.slot == "blue"
    assert w.reasons().count(reasons.STEP_STARTED) == 4
    assert reasons.PROMOTED in w.reasons()


def test_weight_is_set_only_once_the_canary_pods_are_ready() -> None:
    w = new_revision(world().deployed())
    w.broken.add("r2")
    w.run(60)
    assert w.status.canary is not None
    assert w.status.canary.weight == 0
    assert "0/1 ready" in (w.status.message or "")
    assert "CrashLoopBackOff" in (w.status.message or "")
    w.broken.clear()
    w.run(10)
    assert w.status.canary.weight == 10


def test_no_weight_while_the_canary_slot_still_runs_the_previous_templates_pods() -> None:
    """A slot reused for a new revision counts its previous rollout's Ready pods in readyReplicas
    until its rolling update ends: a weight set then sends users to the old model."""
    w = new_revision(world().deployed())
    canary_slot = next(slot for slot in SLOTS if slot != w.status.active_slot)
    w.stale.add(canary_slot)
    w.run(60)
    assert w.status.canary is not None
    assert w.status.canary.weight == 0
    assert "1 of the previous template still running" in (w.status.message or "")
    w.stale.clear()
    w.run(10)
    assert w.status.canary.weight == 10


@pytest.mark.parametrize("promote_full", [False, True])
def test_the_stable_service_never_moves_to_canary_pods_that_stopped_being_ready(
    promote_full: bool,
) -> None:
    w = new_revision(world().deployed())
    while not (w.status.canary and w.status.canary.weight == 100):
        w.step()
        w.now += timedelta(seconds=1)
    w.broken.add("r2")  # the canary's pods fail at 100 %, its analysis still passing
    if promote_full:
        command(w, "promote --full:1")
    w.run(60)
    assert (w.status.active_slot, w.status.active_revision) == ("blue", "r1")
    assert "waiting for canary pods: 0/2 ready" in (w.status.message or "")
    w.broken.clear()
    w.run(30)
    assert (w.status.active_slot, w.status.active_revision) == ("green", "r2")


def test_a_model_that_never_loads_pauses_at_the_deadline_and_never_gets_traffic() -> None:
    w = new_revision(world().deployed())
    w.broken.add("r2")
    w.run(180)
    assert w.status.phase == "Paused"
    assert w.weights == [0]
    assert reasons.PROGRESS_DEADLINE_EXCEEDED in w.reasons()


def test_each_step_is_analysed_every_interval_for_the_step_duration() -> None:
    w = new_revision(world(steps=[50, 100]).deployed())
    w.run(25, tick=1)  # weight 50 set in the first seconds; interval 10 s
    assert w.status.canary is not None
    assert w.status.canary.weight == 50
    assert 2 <= w.looks <= 3
    w.run(20, tick=1)
    assert w.status.canary.weight == 100


def test_canary_sizing_for_each_share() -> None:
    w = new_revision(world().deployed())
    w.replicas = 10
    sizes = []
    for _ in range(80):
        w.step()
        w.now += timedelta(seconds=5)
        if w.status.canary:
            sizes.append(w.sizes[w.status.canary.slot])
    assert sorted(set(sizes)) == [1, 3, 5, 10]


# --- analysis outcomes ---------------------------------------------------------------------


def test_fail_rolls_back_at_once_with_the_measured_values() -> None:
    w = new_revision(world().deployed())
    w.analyzer = lambda now: Measurement(
        phase="Fail",
        message="error rate 4.2 % [3.4–5.1 %] > 1.0 % over 1,812 requests",
        measured_at=now,
        requests=1812,
        error_rate=0.042,
    )
    w.run(30)
    assert w.weights == [0, 10, 0]
    assert w.status.phase == "Degraded"
    assert w.status.canary is None
    assert w.status.active_slot == "blue"
    assert "4.2 %" in (w.status.message or "")
    assert "at 10%" in (w.status.message or "")
    assert w.status.history[0].outcome == "RolledBack"
    assert ("Warning", reasons.ANALYSIS_FAILED) in [(t, r) for t, r, _ in w.events]
    assert w.status.held_revision == "r2"
    # the canary slot stays warm for scaleDownDelay, then goes to 0
    assert w.sizes["green"] == 1
    w.run(40)
    assert w.sizes["green"] == 0
    assert w.status.phase == "Degraded"  # and it is not retried by itself


def test_inconclusive_holds_then_pauses_at_the_deadline() -> None:
    w = new_revision(world().deployed())
    w.analyzer = lambda now: measurement("Inconclusive", now, requests=12)
    w.run(100)
    assert w.status.canary is not None
    assert w.status.canary.weight == 10
    assert w.status.phase == "Progressing"
    w.run(60)
    assert w.status.phase == "Paused"
    assert w.status.canary.weight == 10
    assert w.status.active_revision == "r1"


@pytest.mark.parametrize(
    ("policy", "phase", "weight"), [("hold", "Progressing", 10), ("rollback", "Degraded", None)]
)
def test_metrics_unavailable_follows_the_policy(
    policy: str, phase: str, weight: int | None
) -> None:
    w = new_revision(world(analysis={"onMetricsUnavailable": policy}).deployed())
    w.analyzer = lambda now: measurement("Error", now)
    w.run(600)  # far past the deadline: hold never pauses, it waits for Prometheus
    assert w.status.phase == phase
    assert (w.status.canary.weight if w.status.canary else None) == weight


def test_prometheus_back_after_an_outage_resumes_the_rollout() -> None:
    w = new_revision(world().deployed())
    w.analyzer = lambda now: measurement("Error", now)
    w.run(300)
    w.analyzer = lambda now: measurement("Pass", now)
    w.run(300)
    assert w.status.active_revision == "r2"


def test_steps_100_is_a_blue_green_switch_without_analysis() -> None:
    w = new_revision(world(steps=[100]).deployed())
    w.run(20)
    assert w.status.active_slot == "green"
    assert w.looks == 0
    assert w.weights == [0]  # never a weighted split: the switch is one flip


# --- supersede, revert, restart ------------------------------------------------------------


def test_a_newer_revision_supersedes_the_canary() -> None:
    w = new_revision(world().deployed())
    w.run(50)
    assert w.status.canary is not None
    assert w.status.canary.weight > 0
    new_revision(w, "r3", "v3")
    w.step()
    assert w.status.canary.revision == "r3"
    assert w.status.canary.weight == 0
    assert w.status.canary.step_index == 0
    assert w.status.history[0].outcome == "Superseded"
    w.run(400)
    assert w.status.active_revision == "r3"


def test_a_revert_cancels_the_canary_without_touching_the_active_slot() -> None:
    w = new_revision(world().deployed())
    w.run(50)
    w.revision, w.version = "r1", "v1"
    w.step()
    assert w.status.canary is None
    assert w.status.active_slot == "blue"
    assert w.status.phase == "Healthy"
    assert w.status.history[0].outcome == "Cancelled"
    assert w.sizes["blue"] == 2


def test_a_restarted_operator_resumes_at_the_same_step_and_weight() -> None:
    w = new_revision(world().deployed())
    w.run(70)
    saved = ModelDeploymentStatus.model_validate(w.status.model_dump(by_alias=True))
    again = next_action(RolloutInput(**{**w.inp().__dict__, "status": saved}), None, w.now)
    assert again.status.canary is not None
    assert w.status.canary is not None
    assert again.status.canary.weight == w.status.canary.weight
    assert again.status.canary.step_index == w.status.canary.step_index


def test_held_revision_is_retried_after_a_new_spec() -> None:
    w = new_revision(world().deployed())
    w.analyzer = lambda now: measurement("Fail", now)
    w.run(30)
    assert w.status.held_revision == "r2"
    w.analyzer = lambda now: measurement("Pass", now)
    new_revision(w, "r3", "v3")
    w.run(400)
    assert w.status.active_revision == "r3"


def test_keep_previous_then_scale_down() -> None:
    w = new_revision(world(keepPrevious="1m").deployed())
    w.run(400)
    assert w.status.previous is None
    assert w.sizes["blue"] == 0
    assert "ScaledDown" in w.reasons()


# --- manual control ------------------------------------------------------------------------


def command(w: World, text: str) -> None:
    w.command = Command.parse(text)
    w.step()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("promote:1", Command("promote", "1")),
        ("promote --full:abc", Command("promote", "abc", True)),
        ("abort:x:y", None),
        ("explode:1", None),
        ("pause", None),
        ("", None),
    ],
)
def test_command_parsing(text: str, parsed: Command | None) -> None:
    assert Command.parse(text) == parsed


def test_pause_and_resume() -> None:
    w = new_revision(world().deployed())
    w.run(20)
    command(w, "pause:1")
    assert w.status.phase == "Paused"
    assert w.status.acknowledged_command == "1"
    weight = w.status.canary.weight if w.status.canary else None
    w.run(300)
    assert w.status.canary is not None
    assert w.status.canary.weight == weight
    command(w, "resume:2")
    assert w.status.phase == "Progressing"
    w.run(400)
    assert w.status.active_revision == "r2"


def test_a_command_is_acted_on_once() -> None:
    w = new_revision(world().deployed())
    w.run(20)
    command(w, "pause:1")
    command(w, "resume:2")
    w.step()  # the annotation still says resume:2: nothing more happens
    assert w.reasons().count(reasons.COMMAND) == 2


def test_promote_skips_a_step_and_full_promotes() -> None:
    w = new_revision(world().deployed())
    w.analyzer = lambda now: measurement("Inconclusive", now)
    w.run(20)
    command(w, "promote:1")
    w.run(10)
    assert w.status.canary is not None
    assert w.status.canary.weight == 25
    command(w, "promote --full:2")
    w.run(10)
    assert w.status.active_revision == "r2"


def test_abort_and_retry() -> None:
    w = new_revision(world().deployed())
    w.run(20)
    command(w, "abort:1")
    assert w.status.phase == "Degraded"
    assert w.status.history[0].outcome == "Aborted"
    w.run(60)
    assert w.status.canary is None
    command(w, "retry:2")
    assert w.status.canary is not None
    w.run(400)
    assert w.status.active_revision == "r2"


def test_undo_flips_back_in_one_write() -> None:
    w = new_revision(world().deployed())
    w.run(400)
    assert w.status.active_slot == "green"
    command(w, "undo:1")
    assert w.status.active_slot == "blue"
    assert w.status.active_revision == "r1"
    assert w.status.history[0].outcome == "Undone"
    w.run(100)
    assert w.status.canary is None  # the undone revision is not rolled out again by itself


def test_commands_without_a_target_are_ignored() -> None:
    w = world().deployed()
    for number, verb in enumerate(["promote", "abort", "pause", "resume", "retry", "undo"]):
        command(w, f"{verb}:{number}")
    assert w.reasons().count(reasons.COMMAND_IGNORED) == 6
    assert w.status.phase == "Healthy"


# --- the plan ------------------------------------------------------------------------------


def test_autoscaled_active_slot_is_left_to_the_autoscaler() -> None:
    w = World(spec=make_spec(autoscaling={"minReplicas": 2, "maxReplicas": 6})).deployed()
    assert plan_replicas(w.inp(), w.status) == {"blue": None, "green": 0}


# --- the shadow step -------------------------------------------------------------------------

SHADOW = {"duration": "40s", "percent": 50}


def shadow_world(replicas: int = 2) -> World:
    """r1 Healthy, then r2 applied with a shadow step of 40 s mirroring 50 %."""
    spec = make_spec(rollout={**FAST, "shadow": SHADOW})
    return new_revision(World(spec=spec, replicas=replicas).deployed())


def test_shadow_mirrors_and_analyses_before_any_live_weight_then_walks_the_steps() -> None:
    w = shadow_world()
    w.run(35)
    canary = w.status.canary
    assert canary is not None
    assert (canary.weight, canary.mirror) == (0, 50)
    assert canary.shadow_started_at is not None
    assert w.looks >= 3  # analysed every interval while in shadow
    assert "in shadow" in (w.status.message or "")
    w.run(400)
    assert w.status.active_revision == "r2"
    # mirror first, then the mirror ends in the same write that sets the first live weight
    assert w.mirrors[:3] == [(0, 0), (0, 50), (10, 0)]
    assert [weight for weight, _ in w.mirrors if weight] == [10, 25, 50, 100]
    assert reasons.SHADOW_STARTED in w.reasons()
    assert reasons.SHADOW_ENDED in w.reasons()


def test_the_canary_is_sized_for_the_mirrored_share() -> None:
    w = shadow_world(replicas=10)
    w.run(20)
    assert w.status.canary is not None
    assert w.status.canary.mirror == 50
    assert w.sizes["green"] == 5


def test_a_shadow_fail_rolls_back_before_any_live_weight() -> None:
    w = shadow_world()
    w.analyzer = lambda now: Measurement(
        phase="Fail",
        message="error rate 5.0 % [3.1–7.9 %] > 1.0 % over 600 requests",
        measured_at=now,
    )
    w.run(30)
    assert w.weights == [0]  # never a live weight
    assert w.status.canary is None  # and so no mirror either
    assert w.status.phase == "Degraded"
    assert (w.status.message or "").endswith(" in shadow")
    assert w.status.history[0].outcome == "RolledBack"
    assert w.status.held_revision == "r2"
    assert ("Warning", reasons.ANALYSIS_FAILED) in [(t, r) for t, r, _ in w.events]


def test_analysis_is_due_only_once_mirroring_began() -> None:
    w = shadow_world()
    w.broken.add("r2")
    w.run(20)
    assert w.status.canary is not None
    assert w.status.canary.mirror == 0  # pods not Ready: nothing mirrored, nothing measured
    assert not analysis_due(w.spec, w.status, w.now)
    assert w.looks == 0
    w.broken.clear()
    w.step()
    assert w.status.canary.mirror == 50
    w.now += timedelta(seconds=1)
    assert analysis_due(w.spec, w.status, w.now)


def test_shadow_inconclusive_pauses_at_the_deadline_without_live_traffic() -> None:
    w = shadow_world()
    w.analyzer = lambda now: measurement("Inconclusive", now)
    w.run(200)
    assert w.status.phase == "Paused"
    assert w.status.canary is not None
    assert (w.status.canary.weight, w.status.canary.mirror) == (0, 50)
    assert (w.status.message or "").startswith("paused in shadow")


def test_pause_resume_promote_and_abort_in_shadow() -> None:
    w = shadow_world()
    w.run(15)
    command(w, "pause:1")
    assert w.status.message == "paused in shadow by command"
    w.run(100)
    assert w.status.canary is not None
    assert (w.status.canary.weight, w.status.canary.mirror) == (0, 50)
    command(w, "resume:2")
    assert w.status.phase == "Progressing"
    assert w.status.canary.step_started_at == timestamp(w.now)  # a fresh shadow window
    command(w, "promote:3")  # skips the shadow step, not the first live step
    w.run(5)
    assert (w.status.canary.weight, w.status.canary.mirror) == (10, 0)
    command(w, "abort:4")
    assert w.status.history[0].outcome == "Aborted"


def test_promote_full_in_shadow_promotes_without_mirror() -> None:
    w = shadow_world()
    w.run(15)
    command(w, "promote --full:1")
    w.run(10)
    assert w.status.active_revision == "r2"
    assert w.status.canary is None


def test_a_newer_revision_restarts_the_shadow_step() -> None:
    w = shadow_world()
    w.run(15)
    new_revision(w, "r3", "v3")
    w.step()
    assert w.status.history[0].message == "v2 superseded by v3 in shadow"
    assert w.status.canary is not None
    assert (w.status.canary.revision, w.status.canary.mirror) == ("r3", 0)
    w.step()
    assert w.status.canary.mirror == 50


def test_a_restarted_operator_resumes_the_shadow_step() -> None:
    w = shadow_world()
    w.run(25)
    saved = ModelDeploymentStatus.model_validate(w.status.model_dump(by_alias=True))
    assert saved.canary is not None
    assert saved.canary.mirror == 50
    w.status = saved
    w.run(30)
    assert w.status.canary is not None
    assert (w.status.canary.weight, w.status.canary.mirror) == (10, 0)
    assert w.reasons().count(reasons.SHADOW_STARTED) == 1


def test_dropping_the_shadow_block_mid_shadow_stops_mirroring() -> None:
    w = shadow_world()
    w.run(15)
    w.spec = w.spec.model_copy(
        update={"rollout": w.spec.rollout.model_copy(update={"shadow": None})}
    )
    w.step()
    assert w.status.canary is not None
    assert (w.status.canary.weight, w.status.canary.mirror) == (10, 0)


REFUSAL = Refusal(
    reasons.SHADOW_REFUSED,
    "GatewayClass traefik does not support HTTPRouteRequestMirror, "
    "HTTPRouteRequestPercentageMirror (status.supportedFeatures): shadow refused",
)


def test_a_refused_shadow_starts_no_rollout_and_says_why_once() -> None:
    w = shadow_world()
    w.shadow_refusal = REFUSAL
    w.run(120)
    assert w.status.canary is None  # no canary slot, no weight, no mirror
    assert w.mirrors == [(0, 0)]
    assert w.sizes["green"] == 0
    assert (w.status.phase, w.status.active_revision) == ("Healthy", "r1")
    assert w.status.message == REFUSAL.message
    assert [(t, r) for t, r, _ in w.events].count(("Warning", reasons.SHADOW_REFUSED)) == 1
    assert next_action(w.inp(), None, w.now).requeue_after is not None  # the class is read again


def test_dropping_the_refused_shadow_lets_the_rollout_begin() -> None:
    w = shadow_world()
    w.shadow_refusal = REFUSAL
    w.run(20)
    w.spec = w.spec.model_copy(
        update={"rollout": w.spec.rollout.model_copy(update={"shadow": None})}
    )
    w.shadow_refusal = None  # the reconcile asks only while a shadow step is pending
    w.run(400)
    assert w.status.active_revision == "r2"
    assert all(mirror == 0 for _, mirror in w.mirrors)


def test_a_refusal_in_the_shadow_step_withdraws_the_canary_and_its_mirror() -> None:
    w = shadow_world()
    w.run(15)
    assert w.status.canary is not None
    assert w.status.canary.mirror == 50
    w.shadow_refusal = REFUSAL  # e.g. an operator upgraded mid-shadow, or the class changed
    w.step()
    assert w.status.canary is None
    assert w.status.draining is not None  # scaled down after scaleDownDelay, like a cancel
    assert (w.status.phase, w.status.message) == ("Healthy", REFUSAL.message)
    assert w.status.history[0].outcome == "Cancelled"
    assert w.status.history[0].message == REFUSAL.message
    w.run(60)
    assert w.status.canary is None  # and it does not start again while refused
    assert w.reasons().count(reasons.SHADOW_REFUSED) == 1


def test_a_refused_header_route_is_said_with_its_own_reason() -> None:
    w = new_revision(world().deployed())
    w.shadow_refusal = Refusal(
        reasons.HEADER_ROUTE_REFUSED,
        "GatewayClass cls does not support HTTPRoute (status.supportedFeatures): header route "
        "refused",
    )
    w.run(30)
    assert w.status.canary is None
    assert w.status.message == w.shadow_refusal.message
    assert w.reasons().count(reasons.HEADER_ROUTE_REFUSED) == 1
    assert reasons.SHADOW_REFUSED not in w.reasons()


# --- undo ------------------------------------------------------------------------------------


def promoted() -> World:
    w = new_revision(world().deployed())
    w.run(400)
    assert w.status.active_revision == "r2"
    assert w.status.previous is not None
    return w


def test_a_spec_revert_inside_keep_previous_is_an_undo_in_one_step() -> None:
    w = promoted()
    weights_before = list(w.weights)
    w.revision, w.version = "r1", "v1"
    transition = w.step()
    assert w.status.active_slot == "blue"
    assert w.status.active_revision == "r1"
    assert w.status.canary is None
    assert w.status.phase == "Healthy"
    assert w.status.history[0].outcome == "Undone"
    assert w.status.history[0].version == "v2"
    assert w.status.held_revision is None  # the spec no longer names v2: nothing to hold
    assert [e.reason for e in transition.events] == [reasons.UNDONE]
    assert w.weights == weights_before  # no step replayed
    assert w.status.draining is not None
    assert w.status.draining.slot == "green"


def test_a_revert_outside_the_window_is_a_normal_rollout() -> None:
    w = promoted()
    w.run(400)  # keepPrevious 5m has passed: the previous slot is scaled to 0
    assert w.status.previous is None
    w.revision, w.version = "r1", "v1"
    w.step()
    assert w.status.canary is not None
    assert w.status.canary.revision == "r1"
    assert reasons.UNDONE not in w.reasons()


def test_undo_command_holds_the_undone_revision_and_posts_undone() -> None:
    w = promoted()
    command(w, "undo:1")
    assert w.status.active_revision == "r1"
    assert w.status.held_revision == "r2"
    assert reasons.UNDONE in w.reasons()
    assert "kubectl modelfleet undo" in (w.status.message or "")


def test_undo_needs_ready_pods_in_the_previous_slot() -> None:
    w = promoted()
    w.broken.add("r1")
    command(w, "undo:1")
    assert w.status.active_revision == "r2"
    assert w.reasons()[-1] == reasons.COMMAND_IGNORED


def test_a_revert_in_shadow_cancels_the_canary_and_its_mirror() -> None:
    w = shadow_world()
    w.run(15)
    assert w.status.canary is not None
    assert w.status.canary.mirror == 50
    w.revision, w.version = "r1", "v1"
    w.step()
    assert w.status.canary is None
    assert w.status.phase == "Healthy"
    assert w.status.history[0].outcome == "Cancelled"
    assert w.weights == [0]


def test_looks_come_quickly_while_the_evidence_builds_then_every_interval() -> None:
    # interval 10 s: a quarter of it (2.5 s) until a look passes, then the interval again
    w = new_revision(world(analysis={"interval": "10s"}).deployed())
    w.analyzer = lambda now: measurement("Inconclusive", now)
    w.step()  # the canary slot starts
    w.step()  # pods Ready: weight 10 %
    assert w.status.canary is not None
    assert w.status.canary.weight == 10
    transition = w.step()
    assert transition.requeue_after == 2.5
    w.now += timedelta(seconds=2.5)
    assert analysis_due(w.spec, w.status, w.now)
    looks = w.looks
    w.step()
    assert w.looks == looks + 1  # an Inconclusive look is followed by another 2.5 s later
    w.analyzer = lambda now: measurement("Pass", now)
    w.now += timedelta(seconds=2.5)
    transition = w.step()
    assert w.status.canary.analysis.phase == "Pass"
    assert transition.requeue_after == 10
    w.now += timedelta(seconds=5)
    assert not analysis_due(w.spec, w.status, w.now)  # a passing canary: the interval again
    w.now += timedelta(seconds=5)
    assert analysis_due(w.spec, w.status, w.now)


def test_metrics_unavailable_is_not_hammered() -> None:
    w = new_revision(world(analysis={"interval": "10s"}).deployed())
    w.analyzer = lambda now: measurement("Error", now)
    w.step()
    w.step()
    w.step()
    assert w.status.canary is not None
    assert w.status.canary.analysis.phase == "Error"
    w.now += timedelta(seconds=5)
    assert not analysis_due(w.spec, w.status, w.now)
