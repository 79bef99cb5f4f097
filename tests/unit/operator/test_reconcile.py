"""reconcile() against an in-memory fake API server: writes, idempotence, bad specs, status bits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.reconcile import (
    AppliedCache,
    Context,
    InvalidSpecError,
    merge_patch,
    parse_spec,
    pod_problem,
    reconcile,
)
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.status import set_condition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKube:
    """Just enough of KubeClient: objects in a dict; Deployments become Ready when applied."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        return self.objects.get((kind, namespace or "", name))

    async def list(
        self, api_version: str, kind: str, namespace: Any = None, label_selector: Any = None
    ) -> list[Any]:
        return []

    async def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        stored = {**obj, "metadata": {**obj["metadata"], "generation": 1}}
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas", 1)
            stored["status"] = {
                "observedGeneration": 1,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
            }
        self.objects[key] = stored
        self.writes.append(("apply", f"{obj['kind']}/{obj['metadata']['name']}"))
        return stored

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        self.writes.append(("delete", f"{kind}/{name}"))
        return self.objects.pop((kind, namespace or "", name), None) is not None

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Any
    ) -> Any:
        self.writes.append(("status", name))
        body = self.objects[(kind, namespace, name)]
        body["status"] = _merge(body.get("status", {}), status)
        return body

    async def post_event(
        self, involved: Any, event_type: str, reason: str, message: str, now: Any = None
    ) -> None:
        self.events.append((event_type, reason, message))

    async def has_api(self, api_version: str, kind: str) -> bool:
        return kind in ("HTTPRoute", "PodMonitor")


def _merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class PassingAnalyzer:
    async def measure(self, target: AnalysisTarget, spec: Any, now: datetime) -> Measurement:
        return Measurement(phase="Pass", message="ok", measured_at=now, requests=500)


def _md(**spec: Any) -> dict[str, Any]:
    body = {"model": {"uri": "s3://m/v1/model.onnx", "version": "v1"}, **spec}
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": body,
    }


def _context(kube: FakeKube) -> Context:
    return Context(
        kube=kube,  # type: ignore[arg-type]
        settings=OperatorSettings(server_image="example.org/server:1"),
        analyzer=PassingAnalyzer(),
        applied=AppliedCache(max_age=60),
    )


def _run(kube: FakeKube, ctx: Context, now: datetime) -> Any:
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    return asyncio.run(reconcile(body, ctx, now))


def test_first_reconciles_create_every_child_then_nothing_is_written() -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic={"gateway": {"parentRefs": [{"name": "gw"}]}}
    )
    ctx = _context(kube)
    _run(kube, ctx, T0)
    _run(kube, ctx, T0 + timedelta(seconds=1))
    kinds = {name.split("/")[0] for op, name in kube.writes if op == "apply"}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "HTTPRoute", "PodMonitor"}
    status = ModelDeploymentStatus.model_validate(
        kube.objects[("ModelDeployment", "ml", "fraud")]["status"]
    )
    assert status.phase == "Healthy"
    kube.writes.clear()
    outcome = _run(kube, ctx, T0 + timedelta(seconds=2))
    assert kube.writes == []
    assert outcome.status_written is False


def test_a_new_revision_is_switched_blue_green() -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(rollout={"steps": [100]})
    ctx = _context(kube)
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    body["spec"]["model"] = {"uri": "s3://m/v2/model.onnx", "version": "v2"}
    for second in range(3, 8):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    status = body["status"]
    assert (status["activeSlot"], status["activeVersion"]) == ("green", "v2")
    stable = kube.objects[("Service", "ml", "fraud")]
    assert stable["spec"]["selector"]["modelfleet.io/slot"] == "green"
    blue = kube.objects[("Deployment", "ml", "fraud-blue")]
    assert blue["metadata"]["labels"]["modelfleet.io/revision"] == status["previous"]["revision"]
    assert "Promoted" in [reason for _, reason, _ in kube.events]


def test_an_invalid_spec_is_reported_and_touches_nothing() -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(rollout={"steps": [50, 10, 100]})
    with pytest.raises(InvalidSpecError, match="steps"):
        _run(kube, _context(kube), T0)
    assert [op for op, _ in kube.writes] == ["status"]
    conditions = kube.objects[("ModelDeployment", "ml", "fraud")]["status"]["conditions"]
    degraded = next(c for c in conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert kube.events[0][1] == "InvalidSpec"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicas": -1}, "spec.replicas"),
        ({"rollout": {"steps": [10, 50]}}, "end at 100"),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}, "minReplicas"),
        (
            {"traffic": {"ingress": {"host": "h"}, "gateway": {"parentRefs": [{"name": "g"}]}}},
            "at most one",
        ),
    ],
)
def test_parse_spec_names_the_problem(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        parse_spec(_md(**spec))


def test_merge_patch_deletes_with_null_and_recurses() -> None:
    old = {"a": 1, "canary": {"weight": 10, "analysis": {"phase": "Pass"}}, "gone": True}
    new = {"a": 1, "canary": {"weight": 25, "analysis": {}}}
    assert merge_patch(old, new) == {
        "gone": None,
        "canary": {"weight": 25, "analysis": {"phase": None}},
    }
    assert merge_patch(new, new) == {}


def test_set_condition_keeps_the_transition_time_when_status_is_unchanged() -> None:
    first = set_condition([], "Ready", True, "Available", "1/1", 1, T0)
    again = set_condition(first, "Ready", True, "Available", "2/2", 2, T0 + timedelta(hours=1))
    assert again[0].last_transition_time == first[0].last_transition_time
    assert (again[0].message, again[0].observed_generation) == ("2/2", 2)
    flipped = set_condition(
        again, "Ready", False, "PodsNotReady", "0/2", 2, T0 + timedelta(hours=2)
    )
    assert flipped[0].last_transition_time == "2026-01-01T02:00:00Z"


@pytest.mark.parametrize(
    ("pod_status", "problem"),
    [
        (
            {
                "containerStatuses": [
                    {
                        "state": {
                            "waiting": {"reason": "CrashLoopBackOff", "message": "model failed"}
                        }
                    }
                ]
            },
            "CrashLoopBackOff: model failed",
        ),
        (
            {
                "containerStatuses": [
                    {"state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled"}}}
                ]
            },
            "OOMKilled",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/5 nodes",
                    }
                ]
            },
            "Unschedulable: 0/5 nodes",
        ),
        ({"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}, None),
    ],
)
def test_pod_problem_reads_the_reason(pod_status: dict[str, Any], problem: str | None) -> None:
    assert pod_problem([{"status": pod_status}]) == problem
