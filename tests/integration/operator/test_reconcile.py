"""The operator against the local control plane: children, routers, GPU placement, GC, idempotence.

Server pods are process-backed (a real `modelfleet serve` per pod, serving the example models), so
Ready means a model was really loaded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from tests.integration.operator.kube import (
    backend_weights,
    condition,
    get,
    items,
    model_deployment,
    must_get,
    status,
    wait_for,
    wait_ready,
)
from tests.operator_fixtures import OperatorProcess

GATEWAY = {"gateway": {"parentRefs": [{"name": "gw"}], "hostnames": ["fraud.example.org"]}}
BLUE_GREEN = {"steps": [100], "keepPrevious": "10m"}


def _children(uid: str) -> list[tuple[str, str]]:
    return [
        ("deployment", "fraud-blue"),
        ("deployment", "fraud-green"),
        ("service", "fraud"),
        ("service", "fraud-blue"),
        ("service", "fraud-green"),
        ("pdb", "fraud-blue"),
        ("pdb", "fraud-green"),
    ]


def test_every_child_with_the_gateway_router(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    apply_yaml(
        model_deployment(
            "fraud",
            namespace,
            model={"uri": example_model(), "version": "v1"},
            replicas=1,
            traffic=GATEWAY,
            rollout=BLUE_GREEN,
        )
    )
    wait_ready(cluster, "fraud", namespace)
    uid = must_get(cluster, "md", "fraud", namespace)["metadata"]["uid"]
    for kind, name in [
        *_children(uid),
        ("httproute", "fraud"),
        ("podmonitor", "fraud"),
    ]:
        obj = must_get(cluster, kind, name, namespace)
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"]) == (uid, True), (kind, name)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelfleet"
        assert obj["metadata"]["labels"]["modelfleet.io/deployment"] == "fraud"
    route = must_get(cluster, "httproute", "fraud", namespace)
    assert backend_weights(route) == [("fraud-blue", 100)]
    assert route["spec"]["hostnames"] == ["fraud.example.org"]
    current = status(cluster, "fraud", namespace)
    assert current["phase"] == "Healthy"
    assert (current["activeSlot"], current["activeVersion"], current["ready"]) == (
        "blue",
        "v1",
        "1/1",
    )
    assert current["url"] == "http://fraud.example.org/"
    assert condition(current, "Ready")["reason"] == "Available"
    assert condition(current, "Ready")["observedGeneration"] == 1
    (pod,) = items(cluster, "pods", namespace, "modelfleet.io/slot=blue")
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "modelfleet-server"
    printed = cluster.kubectl("get", "md", "-n", namespace).stdout
    assert re.search(r"fraud\s+Healthy\s+v1\s+1/1", printed), printed


def test_ingress_router_and_autoscalers_follow_the_spec(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    spec: dict[str, Any] = {
        "model": {"uri": example_model(), "version": "v1"},
        "traffic": {"ingress": {"host": "fraud.example.org", "annotations": {"a": "b"}}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "rps", "target": 50},
        "rollout": BLUE_GREEN,
    }
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    main = must_get(cluster, "ingress", "fraud", namespace)
    backend = main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "fraud-blue"
    assert get(cluster, "ingress", "fraud-canary", namespace) is None  # written only for a canary
    assert main["metadata"]["annotations"]["a"] == "b"
    scaled = must_get(cluster, "scaledobject", "fraud-blue", namespace)
    assert scaled["spec"]["triggers"][0]["type"] == "prometheus"
    assert get(cluster, "hpa", "fraud-blue", namespace) is None
    # in place (same revision): cpu → an HPA replaces the ScaledObject; gateway replaces ingress
    spec["autoscaling"]["metric"] = "cpu"
    spec["traffic"] = GATEWAY
    revision = status(cluster, "fraud", namespace)["activeRevision"]
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(lambda: get(cluster, "hpa", "fraud-blue", namespace), 30, "the HPA")
    wait_for(lambda: get(cluster, "scaledobject", "fraud-blue", namespace) is None, 30, "no SO")
    wait_for(lambda: get(cluster, "ingress", "fraud", namespace) is None, 30, "no Ingress")
    assert get(cluster, "httproute", "fraud", namespace) is not None
    assert status(cluster, "fraud", namespace)["activeRevision"] == revision
    assert get(cluster, "hpa", "fraud-green", namespace) is None


def test_gpu_pods_land_on_the_fake_gpu_nodes(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    apply_yaml(
        model_deployment(
            "fraud",
            namespace,
            model={"uri": example_model()},
            replicas=2,
            gpu={"count": 2, "product": "NVIDIA-A100-SXM4-80GB"},
        )
    )
    wait_ready(cluster, "fraud", namespace)
    pods = items(cluster, "pods", namespace, "modelfleet.io/slot=blue")
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-gpu-"), pod["spec"]["nodeName"]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "2"


def test_children_are_garbage_collected_on_delete(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    apply_yaml(model_deployment("fraud", namespace, model={"uri": example_model()}))
    wait_ready(cluster, "fraud", namespace)
    cluster.kubectl("delete", "md", "fraud", "-n", namespace, "--wait=true", "--timeout=60s")
    for kind in ("deployments", "services", "pdb", "pods"):

        def gone(kind: str = kind) -> bool:
            return not items(cluster, kind, namespace)

        wait_for(gone, 60, f"no {kind} left")


def test_a_slot_deployment_changed_by_someone_else_is_put_back_at_once(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    apply_yaml(model_deployment("fraud", namespace, model={"uri": example_model()}, replicas=1))
    wait_ready(cluster, "fraud", namespace)
    cluster.kubectl("scale", "deployment/fraud-blue", "--replicas=0", "-n", namespace)
    # within a few seconds, not after the applied-children cache expires (10 resyncs: 50 s here)
    wait_for(
        lambda: must_get(cluster, "deployment", "fraud-blue", namespace)["spec"]["replicas"] == 1,
        20,
        "the operator to put the slot's replicas back",
    )
    wait_ready(cluster, "fraud", namespace)


def _versions(cluster: Any, namespace: str) -> dict[str, str]:
    found = {}
    for kind in ("md", "deployments", "services", "pdb", "httproute", "podmonitor"):
        for obj in items(cluster, kind, namespace):
            found[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return found


def _reconciles(operator: OperatorProcess) -> float:
    match = re.search(
        r"^modelfleet_operator_reconcile_duration_seconds_count (\S+)$",
        operator.metrics(),
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


def test_an_unchanged_object_is_reconciled_without_a_single_write(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    apply_yaml(
        model_deployment("fraud", namespace, model={"uri": example_model()}, traffic=GATEWAY)
    )
    wait_ready(cluster, "fraud", namespace)

    def settled() -> dict[str, str] | None:
        before = _versions(cluster, namespace)
        time.sleep(3)
        return before if before == _versions(cluster, namespace) else None

    before = wait_for(settled, 60, "the object to settle")
    reconciles = _reconciles(operator)
    time.sleep(12)  # the resync timer (5 s here) reconciles at least twice meanwhile
    assert _reconciles(operator) >= reconciles + 2
    assert _versions(cluster, namespace) == before


def test_blue_green_switch_when_the_new_slot_is_ready(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    spec: dict[str, Any] = {
        "model": {"uri": example_model(), "version": "v1"},
        "traffic": GATEWAY,
        "rollout": BLUE_GREEN,
    }
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    spec["model"] = {"uri": example_model("model-v2.onnx"), "version": "v2"}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("activeVersion") == "v2",
        90,
        "v2 to become active",
    )
    route = must_get(cluster, "httproute", "fraud", namespace)
    assert backend_weights(route) == [("fraud-green", 100)]
    stable = must_get(cluster, "service", "fraud", namespace)
    assert stable["spec"]["selector"]["modelfleet.io/slot"] == "green"
    current = status(cluster, "fraud", namespace)
    assert current["history"][0]["outcome"] == "Promoted"
    assert current["previous"]["slot"] == "blue"  # kept warm for undo
    blue = must_get(cluster, "deployment", "fraud-blue", namespace)
    assert blue["spec"]["replicas"] == 1
    green_pods = items(cluster, "pods", namespace, "modelfleet.io/slot=green")
    assert all(
        pod["metadata"]["labels"]["modelfleet.io/revision"] == current["activeRevision"]
        for pod in green_pods
    )
    reasons = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=fraud"
    ).stdout
    assert "Promoted" in reasons


def test_a_model_that_fails_to_load_never_gets_traffic_and_status_says_why(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Any,
) -> None:
    spec: dict[str, Any] = {
        "model": {"uri": example_model(), "version": "v1"},
        "traffic": GATEWAY,
        "rollout": BLUE_GREEN,
    }
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    spec["model"] = {"uri": broken.as_uri(), "version": "broken"}
    apply_yaml(model_deployment("fraud", namespace, **spec))

    def explained() -> str | None:
        message = status(cluster, "fraud", namespace).get("message", "")
        return message if "waiting for canary pods" in message and "(" in message else None

    message = wait_for(explained, 90, "a status message with the pods' reason")
    current = status(cluster, "fraud", namespace)
    assert current["canary"]["weight"] == 0
    assert current["activeVersion"] == "v1"
    assert condition(current, "Ready")["status"] == "True"
    assert backend_weights(must_get(cluster, "httproute", "fraud", namespace)) == [
        ("fraud-blue", 100),
        ("fraud-green", 0),
    ]
    assert "0/1 ready" in message
