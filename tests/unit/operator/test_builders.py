"""Pure builders: names, labels, owner references, pod hardening, GPU placement, autoscaling."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.operator.api import AutoscalingSpec
from modelfleet.operator.builders.autoscaling import build_hpa, build_scaled_object, uses_keda
from modelfleet.operator.builders.common import Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment
from modelfleet.operator.builders.pdb import build_pdb
from modelfleet.operator.builders.podmonitor import build_pod_monitor
from modelfleet.operator.builders.service import build_slot_service, build_stable_service
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import SHAPE_ANNOTATION, PodShape, revision_of, shape_of
from tests.unit.operator.specs import make_spec


def _plan(settings: OperatorSettings, replicas: int | None = 2, **spec: Any) -> SlotPlan:
    shape = shape_of(make_spec(**spec), settings)
    return SlotPlan(slot="green", shape=shape, revision=revision_of(shape), replicas=replicas)


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def test_deployment_names_labels_and_owner(owner: Owner, settings: OperatorSettings) -> None:
    plan = _plan(settings)
    deployment = build_deployment(owner, plan, settings)
    meta = deployment["metadata"]
    assert meta["name"] == "fraud-green"
    assert meta["namespace"] == "ml"
    assert meta["ownerReferences"][0]["uid"] == "0000-1111"
    assert meta["ownerReferences"][0]["controller"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "modelfleet-server"
    assert labels["app.kubernetes.io/instance"] == "fraud"
    assert labels["app.kubernetes.io/managed-by"] == "modelfleet"
    assert labels["modelfleet.io/slot"] == "green"
    assert labels["modelfleet.io/revision"] == plan.revision
    # the selector is immutable: it must not carry the revision
    assert "modelfleet.io/revision" not in deployment["spec"]["selector"]["matchLabels"]
    assert PodShape.from_annotation(meta["annotations"][SHAPE_ANNOTATION]) == plan.shape


def test_pod_is_hardened_and_probed(owner: Owner, settings: OperatorSettings) -> None:
    pod = build_deployment(owner, _plan(settings), settings)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["readinessProbe"]["periodSeconds"] == 10
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 300
    )
    assert {port["name"]: port["containerPort"] for port in container["ports"]} == {
        "http": 8080,
        "metrics": 8082,
    }
    assert container["command"] == ["modelfleet", "serve"]
    assert {"name": "model-cache", "emptyDir": {}} in pod["volumes"]


def test_server_env_follows_the_contract(owner: Owner, settings: OperatorSettings) -> None:
    plan = _plan(
        settings,
        model={"uri": "s3://m/v7/model.onnx", "version": "v7", "sha256": "b" * 64},
        server={
            "workers": 3,
            "batching": {"maxBatchSize": 64},
            "env": [{"name": "A", "value": "1"}],
        },
        auth={"apiKeySecretRef": {"name": "keys", "key": "k"}},
    )
    env = _env(build_deployment(owner, plan, settings))
    assert env["MODELFLEET_MODEL_URI"] == "s3://m/v7/model.onnx"
    assert env["MODELFLEET_MODEL_NAME"] == "fraud"
    assert env["MODELFLEET_MODEL_FORMAT"] == "onnx"
    assert env["MODELFLEET_MODEL_VERSION"] == "v7"
    assert env["MODELFLEET_MODEL_SHA256"] == "b" * 64
    assert env["MODELFLEET_WORKERS"] == "3"
    assert env["MODELFLEET_MAX_BATCH_SIZE"] == "64"
    assert env["MODELFLEET_DEPLOYMENT"] == "fraud"
    assert env["MODELFLEET_SLOT"] == "green"
    assert env["MODELFLEET_REVISION"] == plan.revision
    assert env["MODELFLEET_API_KEY_FILE"].endswith("/k")
    assert env["A"] == "1"


def test_pvc_uri_is_mounted_read_only(owner: Owner, settings: OperatorSettings) -> None:
    plan = _plan(settings, model={"uri": "pvc://models/fraud/v7.onnx"})
    deployment = build_deployment(owner, plan, settings)
    pod = deployment["spec"]["template"]["spec"]
    assert {
        "name": "model-pvc",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    assert _env(deployment)["MODELFLEET_MODEL_URI"] == "file:///mnt/models/models/fraud/v7.onnx"


def test_baseline_reaches_the_server_env_only_when_set(
    owner: Owner, settings: OperatorSettings
) -> None:
    plan = _plan(settings, monitoring={"baselineUri": "s3://m/v7/train.csv", "bins": 20})
    env = _env(build_deployment(owner, plan, settings))
    assert env["MODELFLEET_BASELINE_URI"] == "s3://m/v7/train.csv"
    assert env["MODELFLEET_BASELINE_BINS"] == "20"
    assert "MODELFLEET_BASELINE_ROWS" not in env  # the server's default cap
    bare = _env(build_deployment(owner, _plan(settings, monitoring={"window": "5m"}), settings))
    assert not any(name.startswith("MODELFLEET_BASELINE_") for name in bare)


@pytest.mark.parametrize(
    ("baseline", "volumes"),
    [
        ("pvc://models/fraud/train.csv", {"model-pvc": "models"}),
        ("pvc://training/fraud/train.csv", {"model-pvc": "models", "baseline-pvc": "training"}),
    ],
)
def test_pvc_baseline_is_mounted_read_only_once_per_claim(
    owner: Owner, settings: OperatorSettings, baseline: str, volumes: dict[str, str]
) -> None:
    plan = _plan(
        settings, model={"uri": "pvc://models/fraud/v7.onnx"}, monitoring={"baselineUri": baseline}
    )
    deployment = build_deployment(owner, plan, settings)
    pod = deployment["spec"]["template"]["spec"]
    claims = {
        volume["name"]: volume["persistentVolumeClaim"]["claimName"]
        for volume in pod["volumes"]
        if "persistentVolumeClaim" in volume
    }
    assert claims == volumes
    mounts = {mount["name"] for mount in pod["containers"][0]["volumeMounts"]}
    assert set(volumes) <= mounts
    path = baseline.removeprefix("pvc://")
    assert _env(deployment)["MODELFLEET_BASELINE_URI"] == f"file:///mnt/models/{path}"


@pytest.mark.parametrize(
    ("gpu", "selector", "tolerations"),
    [
        (
            {"count": 2},
            None,
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        (
            {
                "count": 1,
                "product": "NVIDIA-A100",
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
            },
            {"nvidia.com/gpu.product": "NVIDIA-A100"},
            [{"key": "gpu", "operator": "Exists"}],
        ),
    ],
)
def test_gpu_limits_selector_and_tolerations(
    owner: Owner,
    settings: OperatorSettings,
    gpu: dict[str, Any],
    selector: dict[str, str] | None,
    tolerations: list[dict[str, Any]],
) -> None:
    pod = build_deployment(owner, _plan(settings, gpu=gpu), settings)["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpu["count"]
    assert pod.get("nodeSelector") == selector
    assert pod["tolerations"] == tolerations


def test_autoscaled_slot_leaves_replicas_to_the_autoscaler(
    owner: Owner, settings: OperatorSettings
) -> None:
    assert (
        "replicas" not in build_deployment(owner, _plan(settings, replicas=None), settings)["spec"]
    )
    assert build_deployment(owner, _plan(settings, replicas=0), settings)["spec"]["replicas"] == 0


def test_services(owner: Owner) -> None:
    stable = build_stable_service(owner, "blue")
    assert stable["metadata"]["name"] == "fraud"
    assert stable["spec"]["selector"]["modelfleet.io/slot"] == "blue"
    both = build_stable_service(owner, None)
    assert "modelfleet.io/slot" not in both["spec"]["selector"]
    green = build_slot_service(owner, "green")
    assert green["metadata"]["name"] == "fraud-green"
    assert [port["name"] for port in green["spec"]["ports"]] == ["http", "metrics"]


def test_pdb_never_blocks_a_drain(owner: Owner) -> None:
    pdb = build_pdb(owner, "blue")
    assert pdb["metadata"]["name"] == "fraud-blue"
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("metric", "keda"),
    [("cpu", False), ("memory", False), ("rps", True), ("latency", True), ("inflight", True)],
)
def test_autoscaler_kind_follows_the_metric(metric: str, keda: bool) -> None:
    assert uses_keda(AutoscalingSpec.model_validate({"metric": metric})) is keda


def test_hpa_and_scaled_object(owner: Owner) -> None:
    spec = AutoscalingSpec.model_validate(
        {"minReplicas": 2, "maxReplicas": 5, "metric": "cpu", "target": 60}
    )
    hpa = build_hpa(owner, "blue", spec)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fraud-blue"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    rps = spec.model_copy(update={"metric": "rps", "target": 150})
    scaled = build_scaled_object(owner, "green", rps, "http://prom:9090")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["threshold"] == "150"
    assert 'deployment="fraud"' in trigger["metadata"]["query"]
    assert 'slot="green"' in trigger["metadata"]["query"]


def test_pod_monitor_scrapes_the_metrics_port(owner: Owner) -> None:
    monitor = build_pod_monitor(owner)
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "fraud"
