"""reconcile() against an in-memory fake API server: writes, idempotence, bad specs, status bits."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.apply import AppliedCache
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.handlers import MemoryDiffBaseStorage, _freshest, build_registry
from modelfleet.operator.kube import merge_patch
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.observe import observe_slot, pod_problem
from modelfleet.operator.reconcile import Context, InvalidSpecError, parse_spec, reconcile
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.status import set_condition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKube:
    """Just enough of KubeClient: objects in a dict; Deployments become Ready when applied
    (unless `ready=False`), created at T0."""

    def __init__(self, ready: bool = True) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.reads: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.ready = ready

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        self.reads.append(f"{kind}/{name}")
        return self.objects.get((kind, namespace or "", name))

    async def list(
        self, api_version: str, kind: str, namespace: Any = None, label_selector: Any = None
    ) -> list[Any]:
        self.reads.append(f"{kind}s")
        return []

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        meta = {**obj["metadata"], "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"}
        stored = {**obj, "metadata": meta}
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas", 1) if self.ready else 0
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

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any
    ) -> Any:
        self.writes.append(("patch", name))
        body = self.objects.get((kind, namespace or "", name))
        if body is not None:
            self.objects[(kind, namespace or "", name)] = _merge(body, patch)
        return body and self.objects[(kind, namespace or "", name)]

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


def _context(kube: FakeKube, deployments: LiveDeployments | None = None) -> Context:
    return Context(
        kube=kube,
        settings=OperatorSettings(server_image="example.org/server:1"),
        analyzer=PassingAnalyzer(),
        applied=AppliedCache(max_age=60),
        deployments=deployments,
    )


def _run(kube: FakeKube, ctx: Context, now: datetime) -> Any:
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    return asyncio.run(reconcile(body, ctx, now))


def _run_seconds(kube: FakeKube, ctx: Context, seconds: range) -> None:
    """One reconcile a second, at T0 + each of `seconds`."""
    for second in seconds:
        _run(kube, ctx, T0 + timedelta(seconds=second))


def _gateway_class(kube: FakeKube, name: str, features: list[str]) -> None:
    """Gateway `gw` in ml, of a class that publishes `features` in its status."""
    kube.objects[("Gateway", "ml", "gw")] = {"spec": {"gatewayClassName": name}}
    kube.objects[("GatewayClass", "", name)] = {
        "status": {"supportedFeatures": [{"name": feature} for feature in features]}
    }


def _new_version(body: dict[str, Any]) -> None:
    """The user applies v2 of the model: a new generation."""
    body["spec"]["model"] = {"uri": "s3://m/v2/model.onnx", "version": "v2"}
    body["metadata"]["generation"] = 2


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
        ({"model": {"uri": "gs://models/fraud/model"}}, "spec.model.format is required"),
        ({"rollout": {"steps": [0, 100]}}, "spec.rollout.steps: every weight"),
        ({"rollout": {"analysis": {"minAgreement": 0.9}}}, "spec.rollout.analysis.replay"),
        (
            {"rollout": {"analysis": {"maxScoreDelta": 0.2, "replay": {"liveSample": False}}}},
            "need rows to replay",
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


def test_slot_deployments_are_read_from_the_live_cache_not_the_api_server() -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md()
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert kube.reads == []  # the first reconcile has nothing to read; later ones know the slots
    uncached = FakeKube()
    uncached.objects[("ModelDeployment", "ml", "fraud")] = _md()
    for second in range(2):
        _run(uncached, _context(uncached), T0 + timedelta(seconds=second))
    assert uncached.reads == ["Deployment/fraud-blue", "Deployment/fraud-green"]


def test_what_must_be_absent_is_deleted_only_when_the_spec_changed() -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic={"gateway": {"parentRefs": [{"name": "gw"}]}}
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert [name for op, name in kube.writes if op == "delete"] == []
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    body["spec"]["traffic"] = {}
    body["metadata"]["generation"] = 2
    kube.writes.clear()
    _run(kube, ctx, T0 + timedelta(seconds=3))
    assert ("delete", "HTTPRoute/fraud") in kube.writes
    kube.writes.clear()
    _run(kube, ctx, T0 + timedelta(seconds=4))
    assert kube.writes == []


def test_pods_are_asked_why_only_after_a_slot_has_been_starting_for_a_while() -> None:
    kube = FakeKube(ready=False)
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md()
    ctx = _context(kube, LiveDeployments())
    _run(kube, ctx, T0)
    _run(kube, ctx, T0 + timedelta(seconds=1))
    assert kube.reads == []
    _run(kube, ctx, T0 + timedelta(seconds=30))
    assert kube.reads == ["Pods"]


@pytest.mark.parametrize(
    ("status", "stale"),
    [
        # a rolling update of a reused slot: the new pod Ready, the previous template's too
        ({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1}, 1),
        ({"observedGeneration": 2, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}, 0),
        ({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}, 0),
    ],
)
def test_a_slot_s_pods_of_an_earlier_template_are_counted_apart(
    status: dict[str, Any], stale: int
) -> None:
    live = _deployment("1", 2, 0)
    live["status"] = status
    owner = Owner("fraud", "ml", "u-1")
    observed = asyncio.run(observe_slot(FakeKube(), owner, "blue", live, T0))
    assert observed.stale_replicas == stale
    assert observed.ready_for("abc", 1) is (stale == 0 and status["observedGeneration"] == 2)


def _deployment(resource_version: str, generation: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "fraud-blue",
            "namespace": "ml",
            "resourceVersion": resource_version,
            "generation": generation,
            "labels": {"modelfleet.io/revision": "abc", "other": "x"},
            "annotations": {"modelfleet.io/pod-shape": "{}", "big": "x" * 1000},
            "managedFields": [{"manager": "modelfleet"}],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": []}}},
        "status": {"observedGeneration": generation, "readyReplicas": ready},
    }


def test_the_live_cache_keeps_the_newest_slim_copy() -> None:
    cache = LiveDeployments()
    cache.update(_deployment("20", 2, 1))
    cache.update(_deployment("10", 1, 0))  # an older event arriving late changes nothing
    kept = cache.get("ml", "fraud-blue")
    assert kept is not None
    assert (kept["metadata"]["generation"], kept["status"]["readyReplicas"]) == (2, 1)
    assert kept["metadata"]["labels"] == {"modelfleet.io/revision": "abc"}
    assert kept["metadata"]["annotations"] == {"modelfleet.io/pod-shape": "{}"}
    assert "managedFields" not in kept["metadata"]
    assert "template" not in kept["spec"]
    cache.forget("ml", "fraud-blue")
    assert cache.get("ml", "fraud-blue") is None


def test_the_applied_cache_keeps_digests_and_forgets_an_owner_by_uid_not_by_name() -> None:
    cache = AppliedCache(max_age=60)
    fraud = [("apps/v1", "Deployment", "ml", "fraud-blue"), ("v1", "Service", "ml", "fraud")]
    fraud_v2 = [
        ("apps/v1", "Deployment", "ml", "fraud-v2-blue"),
        ("v1", "Service", "ml", "fraud-v2"),
    ]
    for key in fraud:
        cache.remember(key, b"content", "uid-fraud")
    for key in fraud_v2:
        cache.remember(key, b"content", "uid-fraud-v2")
    assert cache.fresh(fraud[0], b"content")
    assert not cache.fresh(fraud[0], b"changed")
    cache.forget_owner("uid-fraud")
    assert not any(cache.fresh(key, b"content") for key in fraud)
    assert all(cache.fresh(key, b"content") for key in fraud_v2)  # `fraud-` prefix, other owner


def _named(name: str, uid: str) -> dict[str, Any]:
    body = _md()
    body["metadata"] = {**body["metadata"], "name": name, "uid": uid}
    return body


def test_a_deleted_owner_s_applied_entries_go_with_its_daemon_and_no_one_else_s() -> None:
    kube = FakeKube()
    ctx = _context(kube)
    for name, uid in (("fraud", "u-1"), ("fraud-v2", "u-2")):
        kube.objects[("ModelDeployment", "ml", name)] = _named(name, uid)

    def reconcile_writes(name: str, at: datetime) -> list[tuple[str, str]]:
        before = len(kube.writes)
        asyncio.run(reconcile(kube.objects[("ModelDeployment", "ml", name)], ctx, at))
        return [write for write in kube.writes[before:] if write[0] == "apply"]

    for name in ("fraud", "fraud-v2"):
        reconcile_writes(name, T0)
        reconcile_writes(name, T0 + timedelta(seconds=1))
        assert reconcile_writes(name, T0 + timedelta(seconds=2)) == []  # all cached
    registry = build_registry(OperatorSettings(server_image="example.org/server:1"))
    daemon = next(h for h in registry._spawning.get_all_handlers() if h.id == "requeue")
    # `fraud` deleted: kopf stops its daemon (already stopped here: it only runs its cleanup)
    body = kopf.Body(kube.objects[("ModelDeployment", "ml", "fraud")])  # type: ignore[arg-type]
    asyncio.run(daemon.fn(stopped=True, body=body, memo=kopf.Memo(ctx=ctx)))  # type: ignore[arg-type]
    assert reconcile_writes("fraud-v2", T0 + timedelta(seconds=3)) == []
    assert reconcile_writes("fraud", T0 + timedelta(seconds=3)) != []  # its entries were dropped


def _kopf_body(resource_version: str, generation: int, status: dict[str, Any]) -> kopf.Body:
    body = {**_md(), "status": status}
    body["metadata"] = {**body["metadata"], "resourceVersion": resource_version}
    body["metadata"]["generation"] = generation
    return kopf.Body(body)  # type: ignore[arg-type]


def test_the_freshest_object_is_the_newer_of_the_event_and_our_own_status_write() -> None:
    written = {"resourceVersion": 20, "generation": 1, "status": b'{"phase": "Healthy"}'}
    lagging = _freshest(_kopf_body("15", 1, {"phase": "Progressing"}), written)
    assert lagging is not None
    assert (lagging["status"], lagging["metadata"]["resourceVersion"]) == (
        {"phase": "Healthy"},
        "20",
    )
    newer = _freshest(_kopf_body("25", 1, {"phase": "Progressing"}), written)
    assert newer is not None
    assert newer["status"] == {"phase": "Progressing"}
    assert _freshest(_kopf_body("15", 2, {}), written) is None  # the spec moved: read it


def test_the_in_memory_diff_base_is_kopfs_essence() -> None:
    raw = {
        **_md(),
        "status": {"phase": "Healthy"},
    }
    raw["metadata"] = {
        **raw["metadata"],
        "labels": {"team": "a"},
        "annotations": {"modelfleet.io/command": "promote:1", "kopf.modelfleet.io/x": "{}"},
        "managedFields": [{"manager": "kubectl"}],
    }
    body = kopf.Body(raw)  # type: ignore[arg-type]
    reference = kopf.AnnotationsDiffBaseStorage(prefix="kopf.modelfleet.io")
    storage = MemoryDiffBaseStorage()
    essence = storage.build(body=body)
    assert essence == reference.build(body=body)
    assert storage.fetch(body=body) is None
    storage.store(body=body, patch=kopf.Patch(), essence=essence)
    assert storage.fetch(body=body) == essence
    storage.forget(body)
    assert storage.fetch(body=body) is None


def test_a_shadow_the_gateway_class_cannot_mirror_writes_no_mirror_and_starts_nothing() -> None:
    kube = FakeKube()
    _gateway_class(kube, "traefik", ["Gateway", "HTTPRoute"])
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic={"gateway": {"parentRefs": [{"name": "gw"}]}},
        rollout={"shadow": {"duration": "30s", "percent": 100}},
    )
    ctx = _context(kube)
    _run_seconds(kube, ctx, range(3))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    assert "GatewayClass/traefik" not in kube.reads  # no rollout pending: nothing to ask
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 10))
    refusal = (
        "GatewayClass traefik does not support HTTPRouteRequestMirror "
        "(status.supportedFeatures): shadow refused"
    )
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert (status.phase, status.active_version, status.canary) == ("Healthy", "v1", None)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ShadowRefused")
    assert progressing.message == refusal
    assert kube.events.count(("Warning", "ShadowRefused", refusal)) == 1
    route = kube.objects[("HTTPRoute", "ml", "fraud")]
    assert "filters" not in route["spec"]["rules"][0]  # no mirror was ever written
    assert kube.objects[("Deployment", "ml", "fraud-green")]["spec"]["replicas"] == 0
    assert kube.reads.count("GatewayClass/traefik") == 1  # kept between reconciles

    del body["spec"]["rollout"]["shadow"]  # the user drops the shadow step
    body["metadata"]["generation"] = 3
    for second in range(10, 14):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    canary = ModelDeploymentStatus.model_validate(body["status"]).canary
    assert canary is not None
    assert (canary.version, canary.weight, canary.mirror) == ("v2", 10, 0)


class RecordingAnalyzer:
    """Passes every look and keeps what it was asked to measure."""

    def __init__(self) -> None:
        self.targets: list[AnalysisTarget] = []

    async def measure(self, target: AnalysisTarget, spec: Any, now: datetime) -> Measurement:
        self.targets.append(target)
        return Measurement(phase="Pass", message="ok", measured_at=now, requests=500)


@pytest.mark.parametrize(
    ("traffic", "replicas", "expected"),
    [
        ({"gateway": {"parentRefs": [{"name": "gw"}]}}, 3, 0.10),  # the weight
        ({"ingress": {"host": "fraud.example.org"}}, 3, 0.10),
        ({}, 3, 0.25),  # replica ratio: 1 canary pod next to 3 Ready stable pods
    ],
    ids=["gateway", "ingress", "replica-ratio"],
)
def test_the_analysis_is_told_the_share_the_router_should_give_the_canary(
    traffic: dict[str, Any], replicas: int, expected: float
) -> None:
    kube = FakeKube()
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(traffic=traffic, replicas=replicas)
    analyzer = RecordingAnalyzer()
    ctx = dataclasses.replace(_context(kube), analyzer=analyzer)
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    body["spec"]["model"] = {"uri": "s3://m/v2/model.onnx", "version": "v2"}
    for second in range(3, 20):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert analyzer.targets, body["status"]
    assert {target.weight for target in analyzer.targets} == {10}
    assert analyzer.targets[0].expected_share == pytest.approx(expected)


def test_in_shadow_the_analysis_is_told_no_share_to_check() -> None:
    kube = FakeKube()
    _gateway_class(
        kube, "mirroring", ["HTTPRouteRequestMirror", "HTTPRouteRequestPercentageMirror"]
    )
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic={"gateway": {"parentRefs": [{"name": "gw"}]}},
        rollout={"shadow": {"duration": "30s", "percent": 50}},
    )
    analyzer = RecordingAnalyzer()
    ctx = dataclasses.replace(_context(kube), analyzer=analyzer)
    _run_seconds(kube, ctx, range(3))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 20))
    assert body["status"]["canary"]["mirror"] == 50
    assert analyzer.targets
    assert {(target.weight, target.expected_share) for target in analyzer.targets} == {(0, None)}
    route = kube.objects[("HTTPRoute", "ml", "fraud")]
    assert route["spec"]["rules"][0]["filters"][0]["type"] == "RequestMirror"  # the class can


class FailingAnalyzer:
    async def measure(self, target: AnalysisTarget, spec: Any, now: datetime) -> Measurement:
        return Measurement(phase="Fail", message="error rate", measured_at=now, requests=500)


@pytest.mark.parametrize(
    ("analyzer", "outcome"),
    [(PassingAnalyzer(), "Promoted"), (FailingAnalyzer(), "RolledBack")],
    ids=["promoted", "rolled-back"],
)
def test_the_canary_ingress_lives_only_while_the_canary_takes_a_weight(
    analyzer: Any, outcome: str
) -> None:
    kube = FakeKube()
    canary_key = ("Ingress", "ml", "fraud-canary")
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic={"ingress": {"host": "fraud.example.org"}},
        rollout={"steps": [10, 100], "stepDuration": "30s"},
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert canary_key not in kube.objects  # idle: a proxy ignoring canary-weight would use it
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    body["spec"]["model"] = {"uri": "s3://m/v2/model.onnx", "version": "v2"}
    body["metadata"]["generation"] = 2
    second = 3
    while (body["status"].get("canary") or {}).get("weight", 0) == 0 and second < 20:
        assert canary_key not in kube.objects  # the canary's pods are not Ready yet
        _run(kube, ctx, T0 + timedelta(seconds=second))
        second += 1
    canary = kube.objects[canary_key]
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == f"fraud-{body['status']['canary']['slot']}"
    ctx = dataclasses.replace(ctx, analyzer=analyzer)
    for step in range(40):  # the canary ends at generation 2 (a rollback changes no spec)
        _run(kube, ctx, T0 + timedelta(seconds=second + 10 * step))
        if body["status"].get("canary") is None:
            break
    assert [h["outcome"] for h in body["status"]["history"]][-1] == outcome
    assert canary_key not in kube.objects
    kube.writes.clear()
    for step in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second + 500 + step))
    assert canary_key not in kube.objects  # and never written again while idle
    assert ("apply", "Ingress/fraud-canary") not in kube.writes
