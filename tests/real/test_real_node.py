"""The real tier's foundation: real nodes Ready, pods with real IPs, Services through
kube-proxy, and the API server reachable from a pod through the `kubernetes` Service."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from modelfleet_dev.realnode import clients, config, netns
from modelfleet_dev.realnode.cluster import RealCluster
from modelfleet_dev.realnode.images import SERVER_REF

from tests.real.waiting import wait_for

pytestmark = pytest.mark.slow


def _get(real: RealCluster, path: str) -> dict[str, Any]:
    api = real.control_plane.http()
    try:
        return api.get(path) or {}
    finally:
        api.close()


def _create(real: RealCluster, namespace: str, manifest: dict[str, Any]) -> None:
    real.control_plane.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(manifest))


def _pod(real: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    return _get(real, f"/api/v1/namespaces/{namespace}/pods/{name}")


def _running_and_ready(real: RealCluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = _pod(real, namespace, name)
    status = pod.get("status", {})
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )
    return pod if status.get("phase") == "Running" and ready else None


def test_real_node_is_ready_labelled_and_tainted(real_cluster: RealCluster) -> None:
    assert real_cluster.timings["nodes_ready_s"] < 120
    node = _get(real_cluster, f"/api/v1/nodes/{real_cluster.node_names[0]}")
    assert node["metadata"]["labels"][config.TIER_KEY] == config.TIER_VALUE
    taint = {"key": config.TIER_KEY, "value": config.TIER_VALUE, "effect": "NoSchedule"}
    assert taint in node["spec"]["taints"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == netns.node_address(1)


def test_pod_of_the_server_image_runs_with_a_pod_ip(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    pod = clients.real_pod("web", SERVER_REF, ["python", "-m", "http.server", "8080"], port=8080)
    _create(real_cluster, real_namespace, pod)
    running = wait_for(
        "pod web Running and Ready", lambda: _running_and_ready(real_cluster, real_namespace, "web")
    )
    assert running["spec"]["nodeName"] == real_cluster.node_names[0]
    pod_ip = running["status"]["podIP"]
    assert pod_ip.startswith("10.241.1."), pod_ip
    with clients.forward(real_cluster.netns, pod_ip, 8080) as local:
        assert httpx.get(f"http://{local}/", timeout=10).status_code == 200


def test_service_cluster_ip_answers_inside_the_namespace(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    pod = clients.real_pod(
        "backend",
        SERVER_REF,
        ["python", "-m", "http.server", "8080"],
        labels={"app": "backend"},
        port=8080,
    )
    _create(real_cluster, real_namespace, pod)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend"},
        "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _create(real_cluster, real_namespace, service)
    wait_for(
        "pod backend Ready", lambda: _running_and_ready(real_cluster, real_namespace, "backend")
    )
    path = f"/api/v1/namespaces/{real_namespace}/services/backend"
    cluster_ip = _get(real_cluster, path)["spec"]["clusterIP"]
    url = f"http://{cluster_ip}:80/"
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", url]
    # kube-proxy programs the rules a moment after the endpoint turns Ready
    wait_for(
        f"{url} answering 200 inside {real_cluster.netns}",
        lambda: clients.run_inside(real_cluster.netns, curl).stdout == "200",
        60,
    )
    with clients.forward(real_cluster.netns, cluster_ip, 80) as local:
        assert httpx.get(f"http://{local}/", timeout=10).status_code == 200


_VERSION_FROM_POD = """
import json, os, ssl, urllib.request
ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
with urllib.request.urlopen(f"https://{host}:{port}/version",
                            context=ssl.create_default_context(cafile=ca), timeout=10) as answer:
    print("API server", json.load(answer)["gitVersion"])
"""


def test_kubernetes_service_is_reachable_from_a_pod(
    real_cluster: RealCluster, real_namespace: str
) -> None:
    """The path the operator Pod takes: ClusterIP 10.96.0.1 → kube-proxy → the advertised
    address inside the namespace → the forwarder → the API server on host loopback, over TLS
    verified with the ServiceAccount's CA (the serving cert holds the ClusterIP)."""
    endpoints = _get(real_cluster, "/api/v1/namespaces/default/endpoints/kubernetes")
    addresses = [a["ip"] for subset in endpoints["subsets"] for a in subset["addresses"]]
    assert addresses == [netns.API_ADDRESS]
    pod = clients.real_pod(
        "probe", SERVER_REF, ["python", "-c", _VERSION_FROM_POD], restart="Never"
    )

    def finished() -> str | None:
        phase = _pod(real_cluster, real_namespace, "probe").get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    _create(real_cluster, real_namespace, pod)
    assert wait_for("pod probe to finish", finished) == "Succeeded"
    assert real_cluster.pod_log(real_namespace, "probe") == "API server v1.35.4\n"
