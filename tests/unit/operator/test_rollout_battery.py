"""Random edits applied mid-rollout to the pure state machine (hypothesis, derandomized).

Each example is a sequence of what can happen while a canary is in flight: the clock moves, the
spec is edited (steps, stepDuration, the traffic block switched between gateway, ingress and none,
shadow added or removed, autoscaling toggled, a new or reverted revision), the analysis changes its
verdict, the canary's pods break or recover, a command arrives. Only edits the operator accepts
(`parse_spec`) reach the machine, as in the cluster. After every reconcile: nothing raised, and no
traffic went to a slot without Ready pods (a weight or mirror raised, or the active slot moved).
"""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.reconcile import InvalidSpecError, parse_spec
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.types import SlotObservation
from modelfleet.operator.routers import proportional_replicas
from tests.spec_strategies import steps
from tests.unit.operator.test_rollout import FAST, World, measurement

GATEWAY = {"gateway": {"parentRefs": [{"name": "gw"}], "hostnames": ["fraud.example.org"]}}
INGRESS = {"ingress": {"host": "fraud.example.org"}}
TRAFFIC = {"gateway": GATEWAY, "ingress": INGRESS, "none": {}}
RECONCILE_EVERY = 5  # seconds between the reconciles while time passes

waits = st.tuples(st.just("wait"), st.sampled_from([1, 10, 35, 130]))
pods = st.tuples(st.just("pods"), st.sampled_from(["break", "recover"]))
edits = st.one_of(  # time passing and pods failing drawn more often: they reach the late steps
    waits,
    waits,
    waits,
    waits,
    pods,
    st.tuples(st.just("steps"), steps()),
    st.tuples(st.just("stepDuration"), st.sampled_from(["5s", "20s", "2m"])),
    st.tuples(st.just("traffic"), st.sampled_from(sorted(TRAFFIC))),
    st.tuples(
        st.just("shadow"),
        st.sampled_from([None, {"duration": "20s"}, {"duration": "20s", "percent": 30}]),
    ),
    st.tuples(
        st.just("autoscaling"), st.sampled_from([None, {"minReplicas": 2, "maxReplicas": 5}])
    ),
    st.tuples(st.just("analysis"), st.sampled_from(["Pass", "Fail", "Inconclusive", "Error"])),
    pods,
    st.tuples(
        st.just("command"),
        st.sampled_from(["promote", "promote --full", "abort", "retry", "pause", "resume", "undo"]),
    ),
    st.tuples(st.just("revision"), st.sampled_from(["r2", "r3", "r1"])),
)


class Battery:
    """A World (the pure machine against a simulated cluster) and the spec as a user edits it."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {
            "model": {"uri": "s3://models/fraud/v1/model.onnx", "version": "v1"},
            "replicas": 3,
            "rollout": dict(FAST),
        }
        self.world = World(spec=self._parse(self.body))
        self.world.step()
        self.world.step()
        self.commands = itertools.count(1)
        self.edit(("revision", "r2"))

    @staticmethod
    def _parse(body: dict[str, Any]) -> Any:
        return parse_spec({"metadata": {"name": "fraud"}, "spec": body})

    def _respec(self, body: dict[str, Any]) -> None:
        try:
            self.world.spec = self._parse(body)
        except InvalidSpecError:
            return  # refused: the machine never sees it (the status says why)
        self.body = body

    def edit(self, edit: tuple[str, Any]) -> None:
        kind, value = edit
        w, body = self.world, copy.deepcopy(self.body)
        rollout = body["rollout"]
        if kind == "wait":
            return
        elif kind in ("steps", "stepDuration"):
            rollout[kind] = value
            self._respec(body)
        elif kind == "traffic":
            body["traffic"] = TRAFFIC[value]
            self._respec(body)
        elif kind in ("shadow", "autoscaling"):
            target = rollout if kind == "shadow" else body
            target.pop(kind, None)
            if value is not None:
                target[kind] = value
            self._respec(body)
        elif kind == "analysis":
            w.analyzer = lambda now: measurement(value, now)
        elif kind == "pods":
            canary = w.status.canary
            revision = canary.revision if canary else w.revision
            w.broken = {revision} if value == "break" else set()
        elif kind == "command":
            w.command = Command.parse(f"{value}:{next(self.commands)}")
        else:  # a new revision, or the spec back at the one that was serving first
            w.revision, version = value, {"r1": "v1", "r2": "v2", "r3": "v3"}[value]
            body["model"]["version"] = version
            w.version = version
            self._respec(body)

    def run(self, edit: tuple[str, Any]) -> None:
        """The edit, then the reconciles that follow it: one at once, more while time passes."""
        self.edit(edit)
        self.reconcile()
        if edit[0] == "wait":
            for _ in range(max(1, edit[1] // RECONCILE_EVERY)):
                self.world.now += timedelta(seconds=min(edit[1], RECONCILE_EVERY))
                self.reconcile()

    def reconcile(self) -> None:
        w = self.world
        before, seen = w.status.model_copy(deep=True), w.observations()
        w.step()
        _traffic_only_to_ready_pods(before, w.status, seen, w.replicas)


def _traffic_only_to_ready_pods(
    before: ModelDeploymentStatus,
    after: ModelDeploymentStatus,
    seen: dict[str, SlotObservation],
    active_replicas: int,
) -> None:
    old, new = before.canary, after.canary
    if new is not None:
        same = old is not None and old.revision == new.revision
        weight_raised = new.weight > (old.weight if same and old else 0)
        mirror_raised = new.mirror > (old.mirror if same and old else 0)
        if weight_raised or mirror_raised:
            share = new.weight if weight_raised else new.mirror
            needed = proportional_replicas(active_replicas, share)
            assert seen[new.slot].ready_for(new.revision, needed), (
                f"canary {new.revision} given {share}% without {needed} Ready pods: "
                f"{seen[new.slot]}"
            )
    moved = before.active_slot is not None and (
        after.active_slot,
        after.active_revision,
    ) != (before.active_slot, before.active_revision)
    if moved:
        assert after.active_slot is not None
        assert after.active_revision is not None
        assert seen[after.active_slot].ready_for(after.active_revision, 1), (
            f"active slot moved to {after.active_slot} ({after.active_revision}) without Ready "
            f"pods: {seen[after.active_slot]}"
        )


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(edits, min_size=1, max_size=30))
def test_random_edits_mid_rollout_never_raise_nor_route_to_unready_pods(
    sequence: list[tuple[str, Any]],
) -> None:
    battery = Battery()
    for edit in [*sequence, ("wait", 300)]:  # then time passes without edits: still nothing raises
        battery.run(edit)
