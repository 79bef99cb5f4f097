"""The webhook gates through reconcile() against the in-memory fake API server (test_reconcile's):
the reconcile asks what the status's open wait names, no more often than the analysis interval,
feeds the answers to the machine, and counts an approval as no finished rollout."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from modelfleet.operator.api import ModelDeploymentSpec, ModelDeploymentStatus
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.rollout.approvals import DueGates
from modelfleet.operator.rollout.types import GateAnswer
from tests.unit.operator.test_reconcile import T0, FakeKube, _context, _md, _new_version, _run

HOOK = {"name": "release", "type": "confirmStep", "url": "http://gates.example.org/release"}


class ScriptedGates:
    """Implements `GateAsker`: answers every due webhook with `answer`, records each ask."""

    def __init__(self) -> None:
        self.answer = (False, "HTTP 403")
        self.asked: list[tuple[str, str | None]] = []

    async def ask(
        self,
        owner: Owner,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        due: DueGates,
        smoke_address: str | None,
    ) -> tuple[GateAnswer, ...]:
        self.asked += [
            (hook.name, status.canary.version if status.canary else None) for hook in due.webhooks
        ]
        return tuple(GateAnswer(hook.name, *self.answer) for hook in due.webhooks)


def _outcomes(metrics: OperatorMetrics) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "modelfleet_operator_rollout_outcomes"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_confirm_step_webhook_is_asked_each_interval_and_its_2xx_moves_the_canary_on() -> None:
    kube, gates, metrics = FakeKube(), ScriptedGates(), OperatorMetrics()
    rollout: dict[str, Any] = {"steps": [50, 100], "stepDuration": "5s", "webhooks": [HOOK]}
    rollout["analysis"] = {"interval": "2s"}
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(rollout=rollout)
    ctx: Any = dataclasses.replace(_context(kube), gates=gates, metrics=metrics)
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    second = 0.0
    for _ in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
        second += 1
    _new_version(body)
    while second < 40:
        _run(kube, ctx, T0 + timedelta(seconds=second))
        second += 0.5
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert status.canary is not None
    assert status.canary.weight == 50
    assert status.canary.gates is not None
    asked = len(gates.asked)
    assert 5 <= asked <= 18  # about once per 2 s interval while held, not once per reconcile
    assert set(gates.asked) == {("release", "v2")}
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert progressing.reason == "AwaitingApproval"
    assert "gate release (answered HTTP 403)" in progressing.message

    gates.answer = (True, "HTTP 200")
    while second < 80 and body["status"].get("canary"):
        _run(kube, ctx, T0 + timedelta(seconds=second))
        second += 0.5
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert (status.active_version, status.canary) == ("v2", None)
    assert [h.outcome for h in status.history] == ["Promoted", "Approved"]
    assert _outcomes(metrics) == {"Promoted": 1.0}  # an approval is no finished rollout
