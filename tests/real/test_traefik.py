"""Traefik (built from its Go module) as a Pod on the real node: its Gateway is Programmed, an
HTTPRoute through it reaches a backend Pod, and its GatewayClass says what it supports."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from modelfleet_dev.realnode import clients, traefik
from modelfleet_dev.realnode.cluster import RealCluster
from modelfleet_dev.realnode.images import OPERATOR_REF

from tests.real.waiting import wait_for

pytestmark = pytest.mark.slow


def _get(real: RealCluster, *args: str) -> dict[str, Any]:
    out = real.control_plane.kubectl("get", *args, "-o", "json").stdout
    document: dict[str, Any] = json.loads(out)
    return document


@pytest.fixture(scope="module")
def gateway(real_cluster: RealCluster) -> str:
    """Traefik installed and its Gateway Programmed; the listener's ClusterIP:port."""
    traefik.install(real_cluster.kubeconfig)
    service = _get(real_cluster, "-n", traefik.NAMESPACE, "service/traefik")
    return f"{service['spec']['clusterIP']}:{traefik.GATEWAY_PORT}"


def _backend(real: RealCluster, namespace: str) -> None:
    """A plain HTTP server Pod (Python from our operator image) and its Service."""
    pod = clients.real_pod(
        "web", OPERATOR_REF, command=["python", "-m", "http.server", "8080"], port=8080
    )
    pod["metadata"]["namespace"] = namespace
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": traefik.NAMESPACE}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    }
    for document in (pod, service, route):
        real.control_plane.kubectl("apply", "-f", "-", input=json.dumps(document))
    real.control_plane.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s"
    )


def test_a_route_through_traefik_reaches_a_pod(
    real_cluster: RealCluster, real_namespace: str, gateway: str
) -> None:
    _backend(real_cluster, real_namespace)
    host, port = gateway.split(":")
    with clients.forward(real_cluster.netns, host, int(port)) as local:

        def answered() -> bool:
            try:
                return httpx.get(f"http://{local}/", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("an answer from the backend through the Gateway", answered, timeout=60)
    route = _get(real_cluster, "-n", real_namespace, "httproute/web")
    (parent,) = route["status"]["parents"]
    accepted = [c for c in parent["conditions"] if c["type"] == "Accepted"]
    assert accepted[0]["status"] == "True"


def test_the_gateway_class_publishes_its_features_without_mirroring(
    real_cluster: RealCluster, gateway: str
) -> None:
    """What the operator reads before a shadow step (REAL_NODE.md: mirroring answers 500)."""
    status = _get(real_cluster, f"gatewayclass/{traefik.GATEWAY_CLASS}")["status"]
    names = {feature["name"] for feature in status.get("supportedFeatures", [])}
    assert "HTTPRoute" in names
    assert "HTTPRouteRequestMirror" not in names
