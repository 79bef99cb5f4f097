"""The operator installed as a user does (`kubectl apply -k`, through hack/modelfleet_dev/realnode/overlay, which
swaps only the image names, the Prometheus address and the placement) runs as Ready Pods on a
real node, from the image built from Dockerfile.operator, with its own ServiceAccount.

It checks the session's shared install (`real_stack`, tests/real/conftest.py, made by
realnode.install.install_operator) rather than applying and deleting one of its own: a delete of
the overlay removes the namespace and the CRDs every later scenario of the session stands on.
"""

from __future__ import annotations

import json

import pytest
from modelfleet_dev.realnode import install
from modelfleet_dev.realnode.images import OPERATOR_REF

from tests.real.conftest import RealStack

pytestmark = pytest.mark.slow


def test_the_operator_pods_turn_ready_on_a_real_node(real_stack: RealStack) -> None:
    local = real_stack.real.control_plane
    local.kubectl(
        "-n", install.OPERATOR_NAMESPACE, "rollout", "status",
        f"deployment/{install.OPERATOR_DEPLOYMENT}", "--timeout=110s",
    )  # fmt: skip
    out = local.kubectl(
        "-n",
        install.OPERATOR_NAMESPACE,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=modelfleet-operator",
        "-o",
        "json",
    ).stdout
    pods = [p for p in json.loads(out)["items"] if "deletionTimestamp" not in p["metadata"]]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["spec"]["nodeName"] in real_stack.real.node_names
        assert pod["spec"]["serviceAccountName"] == "modelfleet-operator"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True  # the acting replica and the one standing by
        assert status["image"].endswith(OPERATOR_REF.removeprefix("localhost/"))
