"""Editing `rollout.steps` or `rollout.stepDuration` while a canary is in flight.

The canary never gains weight from an edit alone: its step is re-anchored in the new list (see
`step_position`), a weight still being analysed keeps its analysis, and an edit of stepDuration
counts from the start of the current step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from modelfleet.operator import reasons
from modelfleet.operator.api import CanaryStatus
from modelfleet.operator.rollout.steps import StepPosition, step_position
from tests.unit.operator.specs import make_spec
from tests.unit.operator.test_rollout import (
    World,
    command,
    measurement,
    new_revision,
    world,
)


def edit_rollout(w: World, **rollout: Any) -> None:
    w.spec = w.spec.model_copy(update={"rollout": w.spec.rollout.model_copy(update=rollout)})


def run_until(w: World, done: Callable[[World], bool], limit: float = 600, tick: float = 1) -> None:
    end = w.now + timedelta(seconds=limit)
    while not done(w):
        assert w.now < end, f"not reached in {limit} s: {w.status.message}"
        w.step()
        w.now += timedelta(seconds=tick)


def at_weight(weight: int) -> Callable[[World], bool]:
    return lambda w: w.status.canary is not None and w.status.canary.weight == weight


def canary_of(w: World) -> CanaryStatus:
    assert w.status.canary is not None
    return w.status.canary


def at_step_two_of_four() -> World:
    """A canary at step index 2 of [10, 25, 50, 100]: weight 50, its analysis under way."""
    w = new_revision(world().deployed())
    run_until(w, at_weight(50))
    w.step()
    assert (canary_of(w).step_index, canary_of(w).weight) == (2, 50)
    return w


def test_shortening_the_steps_at_step_two_holds_the_weight_then_promotes() -> None:
    w = at_step_two_of_four()
    edit_rollout(w, steps=[50, 100])
    w.step()  # the reconcile after the edit: no index past the new list
    assert (canary_of(w).steps, canary_of(w).step_index, canary_of(w).weight) == ([50, 100], 0, 50)
    w.run(400)
    assert w.weights == [0, 10, 25, 50, 100, 0]
    assert w.status.active_revision == "r2"
    assert w.status.history[0].outcome == "Promoted"


@pytest.mark.parametrize("verb", ["abort", "promote", "promote --full", "pause"])
def test_every_command_acts_right_after_the_edit(verb: str) -> None:
    w = at_step_two_of_four()
    edit_rollout(w, steps=[50, 100])
    command(w, f"{verb}:1")  # the first reconcile after the edit carries the command
    assert reasons.COMMAND in w.reasons()
    w.run(400)
    outcome = w.status.history[0].outcome if w.status.history else None
    expected = {"abort": "Aborted", "pause": None}.get(verb, "Promoted")
    assert outcome == expected


def test_a_new_revision_right_after_the_edit_supersedes_the_canary() -> None:
    w = at_step_two_of_four()
    edit_rollout(w, steps=[50, 100])
    new_revision(w, "r3", "v3")
    w.step()
    assert w.status.history[0].outcome == "Superseded"
    assert (canary_of(w).revision, canary_of(w).steps, canary_of(w).weight) == ("r3", [50, 100], 0)
    w.run(400)
    assert w.status.active_revision == "r3"


def test_a_weight_the_new_steps_lack_is_held_until_its_analysis_passes() -> None:
    w = new_revision(world().deployed())
    run_until(w, at_weight(25))
    w.analyzer = lambda now: measurement("Inconclusive", now)
    edit_rollout(w, steps=[10, 50, 100])  # 25 % is no step any more; it has not passed yet
    w.run(60)
    assert canary_of(w).weight == 25  # neither back to 10 % nor up to 50 % by the edit
    assert (canary_of(w).steps, canary_of(w).step_index) == ([10, 25, 50, 100], 1)
    w.analyzer = lambda now: measurement("Pass", now)
    w.run(400)
    assert w.weights == [0, 10, 25, 50, 100, 0]
    assert w.status.active_revision == "r2"


def test_an_edit_while_the_next_weight_waits_for_pods_goes_to_the_first_new_step_above() -> None:
    w = new_revision(world().deployed())
    run_until(w, at_weight(25))
    w.broken.add("r2")  # from here the canary's pods are not Ready: 50 % waits for them
    run_until(w, lambda w: canary_of(w).step_index == 2)
    assert canary_of(w).weight == 25
    edit_rollout(w, steps=[10, 40, 100])
    w.run(20)
    assert canary_of(w).weight == 25
    assert (canary_of(w).steps, canary_of(w).step_index) == ([10, 40, 100], 1)
    w.broken.clear()
    w.run(400)
    assert w.weights == [0, 10, 25, 40, 100, 0]


@pytest.mark.parametrize(
    ("before", "index", "weight", "after", "expected"),
    [
        # unchanged steps: the index as written
        ([10, 25, 50, 100], 2, 50, [10, 25, 50, 100], ([10, 25, 50, 100], 2)),
        # the weight is a step of the new list: that step, its analysis continues
        ([10, 25, 50, 100], 2, 50, [50, 100], ([50, 100], 0)),
        ([10, 25, 50, 100], 1, 25, [5, 25, 100], ([5, 25, 100], 1)),
        # the weight is no step of the new list and was being analysed: held as a step of its own
        ([10, 25, 50, 100], 1, 25, [10, 50, 100], ([10, 25, 50, 100], 1)),
        ([10, 25, 50, 100], 1, 25, [50, 100], ([25, 50, 100], 0)),
        ([10, 25, 50, 100], 3, 100, [50, 100], ([50, 100], 1)),
        # the weight had passed (the next step waited for pods): the first new step above it
        ([10, 25, 50, 100], 2, 25, [50, 100], ([50, 100], 0)),
        ([10, 25, 50, 100], 2, 25, [10, 50, 100], ([10, 50, 100], 1)),
        ([10, 25, 50, 100], 1, 10, [10, 50, 100], ([10, 50, 100], 1)),
        ([10, 25, 50, 100], 3, 25, [30, 100], ([30, 100], 0)),  # `promote` had skipped 50 %
        # no live weight yet: the first step
        ([10, 25, 50, 100], 0, 0, [50, 100], ([50, 100], 0)),
        # a held weight re-anchored again after a second edit
        ([25, 50, 100], 0, 25, [50, 100], ([25, 50, 100], 0)),
        ([25, 50, 100], 0, 25, [10, 100], ([10, 25, 100], 1)),
        # a status from an operator that did not record the steps: read against the spec's
        (None, 2, 50, [50, 100], ([50, 100], 0)),
        (None, 1, 25, [10, 25, 50, 100], ([10, 25, 50, 100], 1)),
    ],
)
def test_step_position_after_an_edit(
    before: list[int] | None,
    index: int,
    weight: int,
    after: list[int],
    expected: tuple[list[int], int],
) -> None:
    spec = make_spec(rollout={"steps": after})
    canary = CanaryStatus(
        slot="green", revision="r2", version="v2", weight=weight, step_index=index, steps=before
    )
    position = step_position(spec, canary)
    assert position == StepPosition(tuple(expected[0]), expected[1])
    # never past the first new step above the current weight: the edit skips no step
    assert position.weight <= min((step for step in after if step > weight), default=100)


def test_promote_full_stays_at_the_last_step_after_an_edit() -> None:
    spec = make_spec(rollout={"steps": [50, 100]})
    canary = CanaryStatus(
        slot="green", revision="r2", version="v2", weight=25, step_index=3, skip_analysis=True
    )
    assert step_position(spec, canary) == StepPosition((50, 100), 1)


def test_a_longer_step_duration_applies_to_the_current_step_from_its_start() -> None:
    w = new_revision(world(steps=[50, 100]).deployed())
    run_until(w, at_weight(50))
    started = w.now - timedelta(seconds=1)  # the weight was set in the last reconcile
    w.run(10)
    edit_rollout(w, step_duration="90s")
    run_until(w, at_weight(100))
    assert w.now - started >= timedelta(seconds=90)
    assert w.now - started <= timedelta(seconds=105)


def test_a_shorter_step_duration_ends_a_step_that_has_dwelt_long_enough() -> None:
    w = new_revision(world(steps=[50, 100], stepDuration="5m").deployed())
    run_until(w, at_weight(50))
    w.run(60)
    assert canary_of(w).weight == 50
    edit_rollout(w, step_duration="30s")  # the step is 60 s old: it has dwelt long enough
    w.run(15)
    assert canary_of(w).weight == 100
