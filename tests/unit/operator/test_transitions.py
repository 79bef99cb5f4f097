"""The transition table is bound to the machine: every move `next_action` makes is in `MOVES`, and
every move of `MOVES` is made by one of the rollouts below.

`Tracked` is test_rollout_gates.py's simulated cluster (which asks the gates as the reconcile does)
recording, at each pass, the state of the status before and after (`state_of`). A state that stays
itself is a move only where the table draws one: a Starting canary superseded by a newer revision,
a Step whose live weight rises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from modelfleet.operator import reasons
from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.transitions import (
    GROUPS,
    MOVES,
    START,
    STATES,
    render_mermaid,
    state_of,
)
from modelfleet.operator.rollout.types import Refusal, Transition
from tests.unit.operator.specs import make_spec
from tests.unit.operator.test_rollout import FAST, measurement, new_revision
from tests.unit.operator.test_rollout_gates import OK, Answer, GateWorld

Pair = tuple[str, str]


def observed_move(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> Pair | None:
    """The move one pass made, or None when it stayed where it was."""
    source, target = state_of(before), state_of(after)
    if source != target:
        return source, target
    old, new = before.canary, after.canary
    if old is None or new is None:
        return None
    if source == "Starting" and old.revision != new.revision:
        return source, target  # superseded
    if source == "Step" and 0 < old.weight < new.weight:
        return source, target  # the next weight
    return None


@dataclass
class Tracked(GateWorld):
    moves: list[Pair] = field(default_factory=list)
    sent: int = 0  # commands sent, for their ids

    def step(self) -> Transition:
        before = self.status
        transition = super().step()
        if move := observed_move(before, self.status):
            self.moves.append(move)
        return transition

    def send(self, text: str) -> None:
        """`kubectl modelfleet <text>` (a fresh id each time), then one pass."""
        self.sent += 1
        self.command = Command.parse(f"{text}:c{self.sent}")
        self.step()

    def revert(self) -> None:
        """The spec goes back to v1, the revision r1 was deployed with."""
        new_revision(self, "r1", "v1")


def _hook(name: str, stage: str, manual: bool = False, **more: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"manual": True} if manual else {"url": f"http://gates.test/{name}"}
    return {"name": name, "type": stage, **target, **more}


def rolling(answer: Answer = OK, **rollout: Any) -> Tracked:
    """r1 Healthy, then r2 applied."""
    w = Tracked(spec=make_spec(rollout={**FAST, **rollout}), answer=answer)
    w.deployed()
    new_revision(w)
    return w


SHADOW: dict[str, Any] = {"shadow": {"duration": "40s", "percent": 50}}


def _failing_gate(gate: str, now: datetime) -> tuple[bool, str]:
    """The webhook gate named release answers 403, any other 200."""
    return (False, "HTTP 403") if gate == "release" else (True, "HTTP 200")


# --- the rollouts that make the moves ----------------------------------------------------------


def walk() -> Tracked:
    w = rolling()
    w.run(400)
    assert w.status.history[0].outcome == "Promoted"
    return w


def new_revision_while_deploying() -> Tracked:
    w = Tracked(spec=make_spec(rollout=FAST))
    w.broken.add("r1")
    w.run(10)
    new_revision(w)
    w.step()
    return w


def superseded() -> Tracked:
    w = rolling()
    w.broken.add("r2")
    w.run(10)
    new_revision(w, "r3", "v3")
    w.step()
    w.run(30)  # r3's pods are Ready: a live weight
    new_revision(w, "r4", "v4")
    w.step()
    return w


def superseded_by_a_refused_revision() -> Tracked:
    """The refused revision is not started and the canary it superseded is drained: the active
    version serves (Healthy) until the refusal lifts."""
    refusal = Refusal(reasons.SHADOW_REFUSED, "GatewayClass cls cannot mirror")
    w = rolling()
    w.broken.add("r2")
    w.run(10)
    new_revision(w, "r3", "v3")
    w.shadow_refusal = refusal
    w.step()  # from Starting
    assert (w.status.canary, w.status.phase) == (None, "Healthy")
    w.shadow_refusal = None
    w.run(20)
    new_revision(w, "r4", "v4")
    w.shadow_refusal = refusal
    w.step()  # from a live weight
    assert (w.status.canary, w.status.phase) == (None, "Healthy")
    assert w.status.draining is not None  # the superseded canary's slot scales down after its delay
    return w


def shadow_passes_then_fails() -> Tracked:
    w = rolling(**SHADOW)
    w.run(60)  # mirrored, then Pass for 40 s: the first live weight
    new_revision(w, "r3", "v3")
    w.run(20)
    w.analyzer = lambda now: measurement("Fail", now)
    w.run(20)
    assert w.status.phase == "Degraded"
    return w


def shadow_paused_resumed_promoted() -> Tracked:
    w = rolling(**SHADOW)
    w.analyzer = lambda now: measurement("Inconclusive", now)
    w.run(200)
    assert w.status.phase == "Paused"
    w.send("resume")
    w.send("promote --full")
    w.run(30)
    assert w.status.history[0].outcome == "Promoted"
    return w


def shadow_skipped_by_promote() -> Tracked:
    w = rolling(**SHADOW)
    w.analyzer = lambda now: measurement("Inconclusive", now)
    w.run(10)
    w.send("promote")
    return w


def shadow_refused() -> Tracked:
    refusal = Refusal(reasons.SHADOW_REFUSED, "GatewayClass cls cannot mirror")
    w = rolling(**SHADOW)
    w.broken.add("r2")
    w.run(10)  # Starting: the canary's pods are not Ready
    w.shadow_refusal = refusal
    w.step()  # withdrawn before mirroring began
    w.shadow_refusal = None
    new_revision(w, "r3", "v3")
    w.run(20)  # in the shadow step
    w.shadow_refusal = refusal
    w.step()  # withdrawn from the shadow step
    return w


def cancelled_and_reverted() -> Tracked:
    w = rolling()
    w.run(20)
    w.revert()
    w.step()  # cancelled at a live weight
    new_revision(w, "r3", "v3")
    w.broken.add("r3")
    w.run(10)
    w.revert()
    w.step()  # cancelled while Starting
    new_revision(w, "r4", "v4")
    w.analyzer = lambda now: measurement("Fail", now)
    w.run(30)
    w.revert()
    w.step()  # the spec back on what runs after a rollback
    return w


def aborted_and_retried() -> Tracked:
    w = rolling()
    w.run(20)
    w.send("abort")
    w.send("retry")
    w.broken.add("r2")
    w.send("abort")  # while Starting
    w.broken.clear()
    new_revision(w, "r3", "v3")
    w.run(20)
    return w


def pre_rollout_gate_fails() -> Tracked:
    w = rolling(_failing_gate, webhooks=[_hook("release", "preRollout")])
    w.run(30)
    assert w.status.phase == "Degraded"
    return w


def blue_green() -> Tracked:
    w = rolling(steps=[100])
    w.run(20)
    return w


def blue_green_with_approval() -> Tracked:
    w = rolling(steps=[100], webhooks=[_hook("ops", "confirmPromotion", manual=True)])
    w.run(20)
    w.send("approve")
    return w


def paused_while_starting() -> Tracked:
    w = rolling()
    w.broken.add("r2")
    w.run(200)  # progressDeadline 2m
    assert w.status.phase == "Paused"
    w.send("resume")
    w.send("pause")
    return w


def paused_at_a_step() -> Tracked:
    w = rolling()
    w.run(20)
    w.send("pause")
    w.send("resume")
    w.send("pause")
    w.send("promote")
    w.send("pause")
    w.send("promote --full")
    w.run(20)
    w.analyzer = lambda now: measurement("Inconclusive", now)
    new_revision(w, "r3", "v3")
    w.run(200)  # no conclusive Pass by progressDeadline
    assert w.status.phase == "Paused"
    return w


def approvals() -> Tracked:
    w = rolling(webhooks=[_hook("ops", "confirmStep", manual=True)])
    w.run(60)
    w.send("approve")
    w.run(60)
    w.send("pause")
    w.send("resume")
    w.analyzer = lambda now: measurement("Fail", now)
    w.run(30)
    assert w.status.phase == "Degraded"
    return w


def webhook_refuses_promotion() -> Tracked:
    w = rolling(
        _failing_gate, webhooks=[_hook("release", "confirmPromotion", onFailure="rollback")]
    )
    w.run(400)
    assert w.status.phase == "Degraded"
    return w


def confirm_promotion_approved() -> Tracked:
    w = rolling(webhooks=[_hook("ops", "confirmPromotion", manual=True)])
    w.run(400)
    w.send("approve")
    assert w.status.history[0].outcome == "Promoted"
    return w


def metrics_unavailable_rolls_back() -> Tracked:
    w = rolling(analysis={"onMetricsUnavailable": "rollback"})
    w.analyzer = lambda now: measurement("Error", now)
    w.run(30)
    assert w.status.phase == "Degraded"
    return w


def undone_and_retried() -> Tracked:
    w = walk()
    w.send("undo")
    w.send("retry")
    w.run(400)
    w.revert()
    w.step()  # undone by the spec's revert
    new_revision(w, "r3", "v3")
    w.step()
    w.run(400)
    new_revision(w, "r4", "v4")
    w.step()  # from Promoted
    return w


def post_rollout_gate_fails() -> Tracked:
    w = rolling(_failing_gate, webhooks=[_hook("release", "postRollout", onFailure="rollback")])
    w.run(400)
    assert w.status.history[0].outcome == "Undone"
    return w


ROLLOUTS: tuple[Callable[[], Tracked], ...] = (
    walk,
    new_revision_while_deploying,
    superseded,
    superseded_by_a_refused_revision,
    shadow_passes_then_fails,
    shadow_paused_resumed_promoted,
    shadow_skipped_by_promote,
    shadow_refused,
    cancelled_and_reverted,
    aborted_and_retried,
    pre_rollout_gate_fails,
    blue_green,
    blue_green_with_approval,
    paused_while_starting,
    paused_at_a_step,
    approvals,
    webhook_refuses_promotion,
    confirm_promotion_approved,
    metrics_unavailable_rolls_back,
    undone_and_retried,
    post_rollout_gate_fails,
)


def _in_table(move: Pair) -> bool:
    return any(entry.matches(*move) for entry in MOVES)


@pytest.mark.parametrize("rollout", ROLLOUTS, ids=lambda rollout: rollout.__name__)
def test_every_move_the_machine_makes_is_in_the_table(rollout: Callable[[], Tracked]) -> None:
    moves = rollout().moves
    assert moves, "the rollout made no move"
    missing = sorted({move for move in moves if not _in_table(move)})
    assert not missing, f"moves the machine made that transitions.MOVES lacks: {missing}"


def test_every_move_of_the_table_is_made() -> None:
    made = {move for rollout in ROLLOUTS for move in rollout().moves}
    unmade = [entry for entry in MOVES if not any(entry.matches(*move) for move in made)]
    assert not unmade, f"moves of transitions.MOVES no rollout here makes: {unmade}"


# --- the table itself ------------------------------------------------------------------------


def test_the_table_names_only_its_states() -> None:
    known = {*STATES, *GROUPS}
    grouped = [state for members in GROUPS.values() for state in members]
    assert set(grouped) <= set(STATES)
    for entry in MOVES:
        assert entry.source in {START, *known}, entry
        assert entry.target in STATES, entry
    assert {entry.target for entry in MOVES} == set(STATES)  # every state is reached


def test_no_two_moves_share_their_ends() -> None:
    ends = [(entry.source, entry.target) for entry in MOVES]
    assert len(ends) == len(set(ends))


def test_the_labels_are_plain_text_for_mermaid() -> None:
    for text in [entry.cause for entry in MOVES] + list(STATES.values()):
        assert re.fullmatch(r"[A-Za-z0-9 ,.\-\[\]]+", text), text


def test_the_diagram_draws_every_state_and_move() -> None:
    diagram = render_mermaid()
    assert diagram.startswith("```mermaid\nstateDiagram-v2\n")
    for entry in MOVES:
        assert f"    {entry.source} --> {entry.target} : {entry.cause}\n" in diagram
    for state in STATES:
        assert f" {state} : " in diagram
