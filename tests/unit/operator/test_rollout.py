"""The rollout state machine, driven through whole rollouts against a simulated cluster.

`World` plays the cluster: every slot gets the pods `plan_replicas` asks for, Ready at once unless a
test says otherwise. Measurements come from a scripted fake analyzer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator import reasons
from modelfleet.operator.api import SLOTS, ModelDeploymentSpec, ModelDeploymentStatus
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.rollout import (
    Command,
    RolloutInput,
    SlotObservation,
    Transition,
    analysis_due,
    next_action,
    plan_replicas,
)
from modelfleet.operator.routers import proportional_replicas
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
    analyzer: Callable[[datetime], Measurement] = lambda now: measurement("Pass", now)
    looks: int = 0
    command: Command | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)

    def observations(self) -> dict[str, SlotObservation]:
        out = {}
        for slot in SLOTS:
            revision = self.revisions[slot]
            ready = 0 if revision in self.broken else self.sizes[slot]
            problem = "CrashLoopBackOff: model failed to load" if revision in self.broken else None
            out[slot] = SlotObservation(revision, self.sizes[slot], ready, ready, problem)
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
