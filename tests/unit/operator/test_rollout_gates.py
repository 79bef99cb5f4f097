"""Webhook and approval gates and the smoke test in the rollout machine (issue #17).

`GateWorld` is the simulated cluster of test_rollout.py plus the reconcile's part of the gates: at
each pass it asks what `gates_due` names and feeds the scripted answers to `next_action`, as the
reconcile feeds the `RolloutGates` adapter's.
"""

# `w.step()` changes `w.status` in place; mypy keeps a field narrowed across the call.
# mypy: disable-error-code="comparison-overlap"

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator import observe, reasons
from modelfleet.operator.api import CanaryStatus, as_json
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.rollout.approvals import SMOKE_GATE, gate_body, gates_due
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.types import GateAnswer, RolloutInput, Transition
from modelfleet.operator.status import summarize
from tests.unit.operator.specs import make_spec
from tests.unit.operator.test_rollout import FAST, World, measurement, new_revision

Answer = Callable[[str, datetime], tuple[bool, str]]
OK: Answer = lambda gate, now: (True, "HTTP 200")  # noqa: E731


def _hook(name: str, type_: str, **more: Any) -> dict[str, Any]:
    target = {} if more.get("manual") else {"url": f"http://gates.example.org/{name}"}
    return {"name": name, "type": type_, **target, **more}


@dataclass
class GateWorld(World):
    answer: Answer = OK
    asked: list[tuple[str, datetime]] = field(default_factory=list)
    answers: tuple[GateAnswer, ...] = ()

    def inp(self) -> RolloutInput:
        return dataclasses.replace(super().inp(), gate_answers=self.answers)

    def step(self) -> Transition:
        due = gates_due(self.spec, self.status, self.now)
        names = [hook.name for hook in due.webhooks] + ([SMOKE_GATE] if due.smoke else [])
        self.asked += [(name, self.now) for name in names]
        self.answers = tuple(GateAnswer(name, *self.answer(name, self.now)) for name in names)
        try:
            return super().step()
        finally:
            self.answers = ()

    def approve(self, command_id: str) -> None:
        self.command = Command("approve", command_id)
        self.step()


def gated(answer: Answer = OK, **rollout: Any) -> GateWorld:
    w = GateWorld(spec=make_spec(rollout={**FAST, **rollout}), answer=answer)
    w.deployed()
    new_revision(w)
    return w


def _asked(w: GateWorld, gate: str) -> list[datetime]:
    return [at for name, at in w.asked if name == gate]


# --- before any traffic: preRollout webhooks and the smoke test -----------------------------


def test_a_failing_pre_rollout_webhook_rolls_back_before_any_weight() -> None:
    w = gated(
        lambda gate, now: (False, "HTTP 500: smoke failed"), webhooks=[_hook("smoke", "preRollout")]
    )
    w.run(60)
    assert w.weights == [0]
    assert w.looks == 0  # no traffic, nothing measured
    assert w.status.phase == "Degraded"
    entry = w.status.history[0]
    assert entry.outcome == "RolledBack"
    assert (
        entry.message == "preRollout gate smoke failed: HTTP 500: smoke failed before any traffic"
    )
    assert reasons.GATE_FAILED in w.reasons()
    assert w.status.held_revision == "r2"


def test_a_failing_smoke_test_rolls_back_before_any_weight() -> None:
    answer: Answer = lambda gate, now: (False, "12/64 rows answered with finite scores")  # noqa: E731
    w = gated(answer, smoke={"requests": [[0.1, 0.2]]})
    w.run(60)
    assert w.weights == [0]
    assert w.status.history[0].outcome == "RolledBack"
    assert w.status.history[0].message == (
        "the smoke test failed: 12/64 rows answered with finite scores before any traffic"
    )
    assert reasons.SMOKE_TEST_FAILED in w.reasons()


def test_pre_rollout_gates_run_once_pods_are_ready_then_the_first_weight_follows() -> None:
    w = gated(smoke={"requests": [[0.1]]}, webhooks=[_hook("qa", "preRollout")])
    w.broken.add("r2")
    w.run(30)
    assert w.asked == []  # not before the canary's pods are Ready
    w.broken.clear()
    w.run(400)
    assert sorted(name for name, _ in w.asked) == [SMOKE_GATE, "qa"]  # once each
    assert w.weights == [0, 10, 25, 50, 100, 0]
    assert w.status.history[0].outcome == "Promoted"
    passed = [m for _, reason, m in w.events if reason == reasons.GATE_PASSED]
    assert sorted(passed) == [
        "preRollout gate qa passed: HTTP 200",
        "the smoke test passed: HTTP 200",
    ]


def test_pre_rollout_gates_come_before_the_mirror_of_a_shadow_step() -> None:
    answers: list[bool] = [False]
    w = gated(
        lambda gate, now: (answers[-1], "HTTP 200" if answers[-1] else "HTTP 503"),
        webhooks=[_hook("qa", "preRollout", onFailure="hold")],
        shadow={"duration": "30s", "percent": 100},
    )
    w.spec = w.spec.model_copy(
        update={"traffic": make_spec(traffic={"gateway": {"parentRefs": [{"name": "g"}]}}).traffic}
    )
    w.run(60)
    assert w.mirrors == [(0, 0)]  # held: nothing mirrored yet
    assert w.status.canary is not None
    assert "gate qa (answered HTTP 503)" in (w.status.message or "")
    answers.append(True)
    w.run(60)
    assert (0, 100) in w.mirrors


def test_a_failed_gate_with_on_failure_report_lets_the_rollout_go_on() -> None:
    w = gated(
        lambda gate, now: (False, "timed out after 10 s"),
        webhooks=[_hook("qa", "preRollout", onFailure="report")],
    )
    w.run(400)
    assert w.status.history[0].outcome == "Promoted"
    assert reasons.GATE_REPORTED in w.reasons()


# --- confirm gates: approvals while the analysis keeps running -----------------------------


def test_a_holding_confirm_promotion_gate_keeps_the_canary_at_100_and_asks_each_interval() -> None:
    w = gated(
        lambda gate, now: (False, "HTTP 403: change freeze"),
        webhooks=[_hook("release", "confirmPromotion")],
    )
    w.run(400)
    canary = w.status.canary
    assert canary is not None
    assert canary.weight == 100
    assert w.status.phase == "Progressing"  # no progressDeadline pauses an approval
    assert canary.gates is not None
    assert canary.gates.stage == "confirmPromotion"
    assert w.status.message == (
        "canary v2 waiting for approval at 100%: confirmPromotion gate release "
        "(answered HTTP 403: change freeze)"
    )
    asked = _asked(w, "release")
    assert len(asked) > 5
    assert all(
        later - earlier >= timedelta(seconds=10) for earlier, later in itertools.pairwise(asked)
    )
    assert w.reasons().count(reasons.GATE_HOLDING) == 1  # one Event, not one per look


def test_a_fail_still_rolls_back_while_a_confirm_gate_holds() -> None:
    w = gated(
        lambda gate, now: (False, "HTTP 403"), webhooks=[_hook("release", "confirmPromotion")]
    )
    w.run(400)
    looks_while_held = w.looks
    w.run(60)
    assert w.looks > looks_while_held  # the analysis keeps running during the wait
    w.analyzer = lambda now: measurement("Fail", now, error_rate=0.2)
    w.run(15)
    assert w.status.phase == "Degraded"
    assert w.status.history[0].outcome == "RolledBack"
    assert w.status.canary is None
    assert w.weights[-1] == 0


def test_a_confirm_step_webhook_that_answers_2xx_is_an_approval_in_the_history() -> None:
    answers = {"qa": False}
    w = gated(
        lambda gate, now: (answers[gate], "HTTP 202" if answers[gate] else "HTTP 409"),
        webhooks=[_hook("qa", "confirmStep")],
    )
    w.run(60)
    assert w.status.canary is not None
    assert w.status.canary.weight == 10
    answers["qa"] = True
    w.run(15)
    assert w.status.canary.weight == 25
    approved = w.status.history[0]
    assert approved.outcome == "Approved"
    assert approved.message == "confirmStep gate qa approved at 10% (webhook answered HTTP 202)"
    assert approved.version == "v2"


def test_a_manual_confirm_step_waits_for_kubectl_approve_at_each_step() -> None:
    w = gated(webhooks=[_hook("ops", "confirmStep", manual=True)])
    w.run(120)
    assert w.asked == []  # a manual gate is asked of nobody
    assert w.status.canary is not None
    assert w.status.canary.weight == 10
    assert w.status.message == (
        "canary v2 waiting for approval at 10%: confirmStep gate ops (kubectl modelfleet approve)"
    )
    w.approve("c1")
    w.run(60)
    assert w.status.canary.weight == 25
    assert w.status.history[0].message == (
        "confirmStep gate ops approved at 10% (kubectl modelfleet approve, command c1)"
    )
    assert (("Normal", reasons.COMMAND, "approve:c1: approved ops")) in w.events
    w.approve("c2")
    w.run(60)
    w.approve("c3")
    w.run(120)  # the last step has no confirmStep: promoted after its analysis
    assert w.status.history[0].outcome == "Promoted"
    assert [h.outcome for h in w.status.history[:4]] == ["Promoted", *["Approved"] * 3]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("approve:c1", Command("approve", "c1")),
        ("approve --by=system:admin:c1", Command("approve", "c1", by="system:admin")),
        ("promote --full --by=ana:c2", Command("promote", "c2", full=True, by="ana")),
    ],
)
def test_who_approved_travels_in_the_command(text: str, command: Command) -> None:
    assert Command.parse(text) == command
    assert command.render() == text


def test_the_approver_is_named_in_the_history() -> None:
    w = gated(webhooks=[_hook("ops", "confirmStep", manual=True)])
    w.run(120)
    w.command = Command("approve", "c9", by="system:serviceaccount:ml:release")
    w.step()
    assert w.status.history[0].message == (
        "confirmStep gate ops approved at 10% "
        "(kubectl modelfleet approve by system:serviceaccount:ml:release, command c9)"
    )


def test_a_wait_ends_when_an_edit_takes_its_gates_out_of_the_spec() -> None:
    w = gated(webhooks=[_hook("ops", "confirmStep", manual=True)])
    w.run(120)
    assert w.status.canary is not None
    assert w.status.canary.gates is not None
    w.spec = make_spec(rollout=FAST, model={"uri": w.spec.model.uri, "version": "v2"})
    w.run(15)
    assert w.status.canary is not None
    assert w.status.canary.weight == 25
    assert w.status.canary.gates is None  # no stale wait left for the condition to report


def test_approve_with_nothing_waiting_is_ignored() -> None:
    w = gated(webhooks=[_hook("ops", "confirmStep", manual=True)])
    w.run(10)  # at 10 %, still analysing
    w.approve("early")
    assert ("Normal", reasons.COMMAND_IGNORED, "approve:early: nothing to do") in w.events
    w.run(60)
    assert w.status.canary is not None
    assert w.status.canary.weight == 10  # the early approve did not count


def test_a_pause_stops_asking_and_resume_asks_again() -> None:
    w = gated(lambda gate, now: (False, "HTTP 403"), webhooks=[_hook("release", "confirmStep")])
    w.run(60)
    w.command = Command("pause", "p1")
    w.step()
    asked = len(w.asked)
    w.run(60)
    assert len(w.asked) == asked
    w.command = Command("resume", "r1")
    w.run(60)
    assert len(w.asked) > asked


# --- after the promotion -------------------------------------------------------------------


def test_a_failing_post_rollout_webhook_is_an_event_and_the_message() -> None:
    w = gated(lambda gate, now: (False, "HTTP 500"), webhooks=[_hook("announce", "postRollout")])
    w.run(400)
    assert w.status.active_revision == "r2"
    assert w.status.phase == "Healthy"
    assert w.status.post_rollout is None
    assert len(_asked(w, "announce")) == 1
    assert w.status.message == "postRollout gate announce failed after v2 was promoted: HTTP 500"
    assert reasons.POST_ROLLOUT_FAILED in w.reasons()


def test_a_failing_post_rollout_webhook_with_rollback_undoes_to_the_warm_slot() -> None:
    w = gated(
        lambda gate, now: (False, "HTTP 500"),
        webhooks=[_hook("verify", "postRollout", onFailure="rollback")],
    )
    w.run(400)
    assert w.status.active_revision == "r1"
    assert w.status.history[0].outcome == "Undone"
    assert w.status.held_revision == "r2"  # not rolled out again until the spec changes


# --- the body a webhook gets ---------------------------------------------------------------


def test_the_body_carries_the_identity_and_the_latest_figures() -> None:
    w = gated(lambda gate, now: (False, "HTTP 403"), webhooks=[_hook("qa", "confirmStep")])
    w.run(60)
    assert w.spec.rollout.webhooks is not None
    body = gate_body("ml", "fraud", w.spec.rollout.webhooks[0], w.status)
    canary = w.status.canary
    assert canary is not None
    assert body == {
        "gate": "qa",
        "type": "confirmStep",
        "namespace": "ml",
        "name": "fraud",
        "revision": "r2",
        "version": "v2",
        "activeRevision": "r1",
        "activeVersion": "v1",
        "slot": "green",
        "weight": 10,
        "step": 1,
        "steps": [10, 25, 50, 100],
        "analysis": as_json(canary.analysis),
    }
    assert body["analysis"]["phase"] == "Pass"


def test_nothing_is_due_while_paused_and_a_holding_gate_waits_an_interval() -> None:
    w = gated(lambda gate, now: (False, "HTTP 403"), webhooks=[_hook("qa", "confirmStep")])
    w.run(60)
    wait = w.status.canary.gates if w.status.canary else None
    assert wait is not None
    assert wait.asked_at is not None
    asked_at = datetime.fromisoformat(wait.asked_at)
    assert not gates_due(w.spec, w.status, asked_at + timedelta(seconds=9))
    assert gates_due(w.spec, w.status, asked_at + timedelta(seconds=10))
    paused = w.status.model_copy(update={"phase": "Paused"})
    assert not gates_due(w.spec, paused, asked_at + timedelta(seconds=30))


# --- what the status and the reconcile make of it ------------------------------------------


@pytest.mark.parametrize(
    ("webhooks", "reason"),
    [
        ([_hook("ops", "confirmStep", manual=True)], reasons.AWAITING_APPROVAL),
        ([_hook("qa", "preRollout", onFailure="hold")], reasons.RUNNING_GATES),
    ],
)
def test_the_progressing_condition_says_what_the_rollout_waits_for(
    webhooks: list[dict[str, Any]], reason: str
) -> None:
    w = gated(lambda gate, now: (False, "HTTP 409"), webhooks=webhooks)
    w.run(120)
    summary = summarize(w.spec, w.status, w.observations(), {}, "http://fraud", 2, w.now)
    progressing = next(c for c in summary.conditions if c.type == reasons.PROGRESSING)
    assert (progressing.status, progressing.reason) == ("True", reason)
    assert progressing.message == w.status.message
    assert "waiting for" in progressing.message


class PodsKube:
    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind, namespace, name) == ("v1", "Service", "ml", "fraud-green")
        return {"spec": {"clusterIP": "10.96.0.42"}}

    async def list(self, api_version: str, kind: str, namespace: str, selector: Any) -> Any:
        ready = {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.0.0.7"}
        meta = {
            "name": "fraud-green-1",
            "labels": {"modelfleet.io/revision": "r2"},
            "annotations": {"local/address": "127.0.0.1:40123"},
        }
        return [{"metadata": meta, "status": ready}]


def test_the_smoke_test_goes_through_the_canary_service_or_the_local_pod_address() -> None:
    owner = Owner(name="fraud", namespace="ml", uid="uid-1")
    canary = CanaryStatus(slot="green", revision="r2", version="v2")
    kube: Any = PodsKube()
    via_service = asyncio.run(observe.smoke_address(kube, None, owner, canary))
    assert via_service == "10.96.0.42:8082"
    local = asyncio.run(observe.smoke_address(kube, "local/address", owner, canary))
    assert local == "127.0.0.1:40123"
