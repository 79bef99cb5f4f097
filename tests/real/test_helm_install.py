"""The operator installed with `helm install` of charts/modelfleet on the real tier: the chart with
the tier's image names, Prometheus URL and placement as values (what hack/modelfleet_dev/realnode/overlay changes
in the kustomize install; tests/integration/test_helm_chart.py shows both render the same), its
Deployment Available on a real node, a ModelDeployment Ready, then a clean `helm uninstall`.

Beside the session's shared stack (tests/real/conftest.py: the kustomize install in
modelfleet-system), without colliding with it: the release `modelfleet-helm` lives in a namespace
of its own, so its ServiceAccount, ClusterRole and binding have names of their own; both installs
watch the whole cluster, so they share the peering `modelfleet` (owned by the shared install:
`peering.create=false`) and only one of them acts at a time. The newer replicas have the higher
priority (their start time): while the release runs it acts and the shared operator stands by;
after `helm uninstall` the shared one acts again, and the test waits for that before it ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.realnode import clients, config, install
from modelfleet_dev.realnode.cluster import RealCluster

from tests.helm_chart import CHART, real_tier_values, run_helm, set_args
from tests.helm_chart import helm as helm
from tests.real.conftest import RealStack
from tests.real.waiting import wait_for

pytestmark = pytest.mark.slow

RELEASE = "modelfleet-helm"
RELEASE_NAMESPACE = "modelfleet-helm"
FULLNAME = f"{RELEASE}-operator"
SHARED_PEERING = "modelfleet"
HEALTH_PORT = 8091  # the operator container's ports named `health` and `metrics`
METRICS_PORT = 8090


def _pods(real: RealCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = real.control_plane.kubectl(
        "-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/name={name}", "-o", "json"
    ).stdout
    pods: list[dict[str, Any]] = json.loads(out)["items"]
    return pods


def _get_inside(real: RealCluster, pod: dict[str, Any], port: int, path: str) -> str:
    """GET from the pod's address, inside the run's network namespace."""
    url = f"http://{pod['status'].get('podIP')}:{port}{path}"
    return clients.run_inside(real.netns, ["curl", "-s", "--max-time", "3", url]).stdout


def _peering_state(real: RealCluster, pod: dict[str, Any]) -> str:
    """`acting`, `standby` or `waiting`, from the pod's /readyz body (Ready in the first two)."""
    answer = _get_inside(real, pod, HEALTH_PORT, "/readyz")
    try:
        return str(json.loads(answer)["state"])
    except (ValueError, KeyError):
        return "unknown"


def _md_ready(real: RealCluster, namespace: str) -> bool:
    found = real.control_plane.kubectl("-n", namespace, "get", "md/fraud", "-o", "json").stdout
    conditions = json.loads(found).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _states(real: RealCluster, namespace: str, name: str) -> list[str]:
    return sorted(_peering_state(real, pod) for pod in _pods(real, namespace, name))


def _shared_states(real: RealCluster) -> list[str]:
    return _states(real, install.OPERATOR_NAMESPACE, install.OPERATOR_DEPLOYMENT)


@pytest.fixture
def helm_release(real_stack: RealStack, helm: Path) -> Iterator[RealCluster]:
    """`helm install` with the tier's values; uninstalled (and its namespace gone) afterwards,
    and the shared install's replicas settled again (one acting, one standing by)."""
    real = real_stack.real
    kubeconfig = Path(real.kubeconfig)
    install.wait_namespace_gone_if_terminating(real, RELEASE_NAMESPACE)
    # settled first: one replica acting, the other standing by (a replica whose keep-alive is
    # late on a loaded machine reads `waiting` for a moment: a snapshot of that never comes back)
    settled = ["acting", "standby"] if _shared_states(real) else []
    wait_for(
        f"the shared install's replicas {settled}",
        lambda: _shared_states(real) == settled,
        90,
    )
    values = {
        **real_tier_values(real_stack.prometheus_url),
        "peering": {"name": SHARED_PEERING, "create": False},
    }
    run_helm(
        helm, "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
        *set_args(values), kubeconfig=kubeconfig,
    )  # fmt: skip
    try:
        yield real
    finally:
        run_helm(
            helm, "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout=100s",
            kubeconfig=kubeconfig,
        )  # fmt: skip
        real.control_plane.kubectl("delete", "namespace", RELEASE_NAMESPACE, "--timeout=100s")
        # the stack as the next test expects it: the shared install acting again
        wait_for(
            f"the shared operator's replicas {settled} again after helm uninstall",
            lambda: _shared_states(real) == settled,
            90,
        )


def test_helm_installs_the_operator_that_serves_a_model_and_uninstalls_cleanly(
    real_stack: RealStack, helm_release: RealCluster, real_namespace: str
) -> None:
    real = helm_release
    local = real.control_plane
    # (kubectl calls of LocalCluster are cut at 120 s)
    local.kubectl(
        "-n", RELEASE_NAMESPACE, "wait", "--for=condition=Available",
        f"deployment/{FULLNAME}", "--timeout=110s",
    )  # fmt: skip
    local.kubectl(
        "-n", RELEASE_NAMESPACE, "rollout", "status", f"deployment/{FULLNAME}", "--timeout=110s"
    )
    pods = _pods(real, RELEASE_NAMESPACE, FULLNAME)
    assert {pod["spec"]["nodeName"] for pod in pods} <= set(real.node_names)
    assert {pod["spec"]["serviceAccountName"] for pod in pods} == {FULLNAME}
    # one peering over both installs: a replica of the release acts (the newest start time has
    # the highest priority), every other replica of either install stands by
    wait_for(
        "one replica of the release acting, the shared install's standing by",
        lambda: (
            _states(real, RELEASE_NAMESPACE, FULLNAME) == ["acting", "standby"]
            and all(state == "standby" for state in _shared_states(real))
        ),
        90,
    )
    (acting,) = (
        p for p in _pods(real, RELEASE_NAMESPACE, FULLNAME) if _peering_state(real, p) == "acting"
    )
    model = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"uri": f"{real_stack.models_url}/model.txt", "version": "v1"},
            "replicas": 1,
            "nodeSelector": dict(config.REAL_NODE_SELECTOR),
            "tolerations": [dict(config.REAL_TOLERATION)],
        },
    }
    local.kubectl("-n", real_namespace, "apply", "-f", "-", input=json.dumps(model))
    wait_for("md/fraud Ready", lambda: _md_ready(real, real_namespace), 240)
    # only the release's replica acted meanwhile, and it reconciled (its metrics count it)
    assert _peering_state(real, acting) == "acting"
    assert all(state == "standby" for state in _shared_states(real))
    metrics = _get_inside(real, acting, METRICS_PORT, "/metrics")
    reconciles = re.search(
        r"^modelfleet_operator_reconcile_duration_seconds_count (\S+)$", metrics, re.M
    )
    assert reconciles, "no reconcile count on the release's acting replica"
    assert float(reconciles.group(1)) >= 1
    # its finalizer, handled by the release's operator before the release goes
    local.kubectl("-n", real_namespace, "delete", "md/fraud", "--timeout=100s")
