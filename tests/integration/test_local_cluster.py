"""The local control plane behaves like a real cluster where the operator depends on it."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.localcluster import LocalCluster
from modelfleet_dev.localcluster.cluster import kubectl_binary
from modelfleet_dev.localcluster.kubeapi import KubeApi

from tests.integration.waiting import wait_for

APPLY = "application/apply-patch+yaml"


@pytest.fixture
def api(cluster: LocalCluster) -> Iterator[KubeApi]:
    client = cluster.http()
    yield client
    client.close()


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return result


def _widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "steps": {"type": "array", "items": {"type": "integer"}}
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.steps[size(self.steps) - 1] == 100",
                                            "message": "the last step must be 100",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_a_crd_with_a_cel_rule_rejects_a_bad_object_with_the_servers_message(
    cluster: LocalCluster, namespace: str
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.modelfleet.test"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(_widget_crd(group)))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s")
    try:

        def widget(name: str, steps: list[int]) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"steps": steps},
                }
            )

        good = wait_for(
            "the new CRD to be served",
            lambda: (
                cluster.kubectl(
                    "create", "-f", "-", input=widget("good", [10, 100]), check=False
                ).returncode
                == 0
            ),
        )
        assert good
        bad = cluster.kubectl("create", "-f", "-", input=widget("bad", [10, 50]), check=False)
        assert bad.returncode != 0
        assert "the last step must be 100" in bad.stderr
        assert "Invalid value" in bad.stderr
    finally:
        cluster.kubectl("delete", f"crd/widgets.{group}", "--wait=false")


def test_server_side_apply_merges_managers_and_reports_conflicts_as_409(
    api: KubeApi, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/ssa"

    def apply(manager: str, data: dict[str, str], force: bool = False) -> Any:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}
        params = {"fieldManager": manager, **({"force": "true"} if force else {})}
        return api.http.patch(
            path, params=params, content=json.dumps(body), headers={"Content-Type": APPLY}
        )

    assert apply("modelfleet", {"weight": "10"}).status_code == 201
    assert apply("someone-else", {"owner": "sre"}).status_code == 200
    conflict = apply("someone-else", {"weight": "50"})
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "Conflict"
    assert 'conflict with "modelfleet"' in conflict.json()["message"]
    forced = apply("someone-else", {"owner": "sre", "weight": "50"}, force=True)
    assert forced.status_code == 200
    assert forced.json()["data"] == {"owner": "sre", "weight": "50"}

    # An update with a stale resourceVersion is a 409 too (optimistic concurrency).
    current = api.get(path)
    assert current is not None
    stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "1"}}
    replaced = api.http.put(path, content=json.dumps(stale))
    assert replaced.status_code == 409
    assert "the object has been modified" in replaced.json()["message"]


def test_deleting_an_owner_garbage_collects_its_children(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = get_json(cluster, "configmap", "owner", "-n", namespace)
    for index in range(3):
        child = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"child-{index}",
                "namespace": namespace,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
        cluster.kubectl("create", "-f", "-", input=json.dumps(child))
    assert len(get_json(cluster, "secrets", "-n", namespace, "-l", "")["items"]) >= 3

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def children_left() -> bool:
        names = [
            s["metadata"]["name"] for s in get_json(cluster, "secrets", "-n", namespace)["items"]
        ]
        return not any(name.startswith("child-") for name in names)

    wait_for("the garbage collector to delete the children", children_left, timeout=60)


def _deployment(name: str, replicas: int, pod_spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            },
        }
    )


def test_a_deployments_pods_become_ready_on_kwok_nodes(
    cluster: LocalCluster, namespace: str
) -> None:
    spec = {"containers": [{"name": "main", "image": "example.invalid/app:1"}]}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_deployment("web", 3, spec))
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-cpu-")
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert pod["status"]["podIP"].startswith("10.244.")
    # The ReplicaSet and the Deployment status follow, as the operator will read them.
    deployment = get_json(cluster, "deployment", "web", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 3


def _gpu_pod(name: str, tolerate: bool) -> str:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "example.invalid/gpu:1",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
        ],
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    }
    if tolerate:
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_gpu_pods_land_on_gpu_nodes_only_when_they_tolerate_the_taint(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=_gpu_pod("tolerates", True))
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=_gpu_pod("intolerant", False))
    cluster.kubectl(
        "wait", "--for=condition=Ready", "pod/tolerates", "-n", namespace, "--timeout=60s"
    )
    placed = get_json(cluster, "pod", "tolerates", "-n", namespace)
    assert placed["spec"]["nodeName"].startswith("kwok-gpu-")

    def unschedulable() -> dict[str, Any] | None:
        pod = get_json(cluster, "pod", "intolerant", "-n", namespace)
        conditions = {c["type"]: c for c in pod["status"].get("conditions", [])}
        scheduled = conditions.get("PodScheduled")
        return scheduled if scheduled and scheduled.get("reason") == "Unschedulable" else None

    condition = wait_for("the scheduler to give up on the intolerant pod", unschedulable)
    assert condition["status"] == "False"
    # Both GPU nodes refuse it for their taint (the CPU nodes for the GPU node selector).
    assert "2 node(s) had untolerated taint" in condition["message"]
    pod = get_json(cluster, "pod", "intolerant", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_the_cluster_has_the_nodes_and_crds_the_operator_needs(cluster: LocalCluster) -> None:
    nodes = get_json(cluster, "nodes")["items"]
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    gpus = [n for n in nodes if "nvidia.com/gpu" in n["status"]["allocatable"]]
    assert len(nodes) == 5
    assert zones == {"zone-a", "zone-b"}
    assert len(gpus) == 2
    for node in gpus:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert node["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
        ]
        assert "nvidia.com/gpu.product" in node["metadata"]["labels"]
    crds = {c["metadata"]["name"] for c in get_json(cluster, "crds")["items"]}
    assert {
        "scaledobjects.keda.sh",
        "podmonitors.monitoring.coreos.com",
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
    } <= crds


def test_a_service_account_token_from_token_request_is_authorised_by_rbac(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "operator", "-n", namespace)
    kubeconfig = cluster.service_account_kubeconfig(namespace, "operator", tmp_path / "sa")

    def can_list_pods() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl_binary(), f"--kubeconfig={kubeconfig}", "get", "pods", "-n", namespace],
            capture_output=True,
            text=True,
            timeout=60,
        )

    denied = can_list_pods()
    assert denied.returncode != 0
    assert f"system:serviceaccount:{namespace}:operator" in denied.stderr
    assert "forbidden" in denied.stderr

    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "operator-reads-pods",
        "--role=pod-reader",
        f"--serviceaccount={namespace}:operator",
        "-n",
        namespace,
    )
    allowed = wait_for("RBAC to allow the ServiceAccount", lambda: can_list_pods().returncode == 0)
    assert allowed
