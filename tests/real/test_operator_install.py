"""The operator installed as a user does (`kubectl apply -k`, through hack/realnode/overlay, which
swaps only the image names, the Prometheus address and the placement) runs as a Ready Pod on a
real node, from the image built from Dockerfile.operator, with its own ServiceAccount."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from realnode.cluster import RealCluster
from realnode.images import OPERATOR_REF

pytestmark = pytest.mark.slow

OVERLAY = Path(__file__).resolve().parents[2] / "hack" / "realnode" / "overlay"
NAMESPACE = "modelfleet-system"


@pytest.fixture
def installed(real_cluster: RealCluster) -> Iterator[RealCluster]:
    real_cluster.control_plane.kubectl("apply", "-k", str(OVERLAY))
    try:
        yield real_cluster
    finally:
        real_cluster.control_plane.kubectl(
            "delete", "-k", str(OVERLAY), "--ignore-not-found", "--timeout=100s", check=False
        )


def test_the_operator_pod_turns_ready_on_a_real_node(installed: RealCluster) -> None:
    installed.control_plane.kubectl(
        "-n", NAMESPACE, "rollout", "status", "deployment/modelfleet-operator", "--timeout=240s"
    )
    out = installed.control_plane.kubectl(
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=modelfleet-operator",
        "-o",
        "json",
    ).stdout
    pods = json.loads(out)["items"]
    assert pods
    for pod in pods:
        assert pod["spec"]["nodeName"] in installed.node_names
        assert pod["spec"]["serviceAccountName"] == "modelfleet-operator"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        assert status["image"].endswith(OPERATOR_REF.removeprefix("localhost/"))
