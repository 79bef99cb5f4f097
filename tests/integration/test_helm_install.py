"""`helm install` of charts/modelfleet against the local control plane, and an operator running
with exactly what the chart installed.

Helm 4 applies the chart server-side (field manager `helm`, operation Apply), so the API server
validates every object; the CRDs already there (operator_crds) are left as they are. The operator
runs as a process (kwok's nodes only pretend to run the chart's pods) with a token of the chart's
ServiceAccount and the environment of the chart's Deployment, in the chart's peering, and serves a
ModelDeployment to Ready. `helm uninstall` removes what the chart made and keeps the CRDs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helm_chart import CHART, run_helm, set_args
from tests.helm_chart import helm as helm
from tests.integration.operator.kube import get, model_deployment, wait_ready
from tests.integration.operator.test_rbac_and_peering import _refusals
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.slow


def applied_by_helm(cluster: Any, *name: str) -> bool:
    """Whether Helm wrote the object with a server-side apply (its managedFields say so)."""
    found = cluster.kubectl("get", *name, "-o", "json", "--show-managed-fields").stdout
    document = json.loads(found)
    return any(
        entry["manager"] == "helm" and entry["operation"] == "Apply"
        for entry in document["metadata"].get("managedFields", [])
    )


def test_the_chart_installs_server_side_and_its_operator_serves_a_model(
    cluster: Any,
    operator_crds: None,
    namespace: str,
    helm: Path,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Path,
) -> None:
    release = f"mf-{uuid.uuid4().hex[:6]}"  # its own cluster-scoped names and peering
    values = {"peering": {"name": release}, "watchNamespaces": [namespace], "replicas": 1}
    kubeconfig = Path(cluster.kubeconfig)
    run_helm(
        helm,
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        *set_args(values),
        kubeconfig=kubeconfig,
    )
    try:
        fullname = f"{release}-operator"
        deployment = get(cluster, "deployment", fullname, namespace)
        assert deployment is not None
        assert applied_by_helm(cluster, "-n", namespace, "deployment", fullname)
        assert applied_by_helm(cluster, "clusterrole", fullname)
        assert applied_by_helm(cluster, "clusterkopfpeering", release)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        # the chart's environment, but Prometheus on loopback (the chart's is an in-cluster name)
        env = {e["name"]: e["value"] for e in container["env"]}
        env.pop("MODELFLEET_OPERATOR_PROMETHEUS_URL")
        assert env["MODELFLEET_OPERATOR_NAMESPACES"] == json.dumps([namespace])
        operator = start_operator(
            kubeconfig=cluster.service_account_kubeconfig(namespace, fullname, tmp_path / "sa"),
            env=env,
            peering=env["MODELFLEET_OPERATOR_PEERING"],
        )
        apply_yaml(
            model_deployment(
                "fraud", namespace, model={"uri": example_model(), "version": "v1"}, replicas=1
            )
        )
        wait_ready(cluster, "fraud", namespace)
        assert not _refusals(operator.logs())
    finally:
        run_helm(helm, "uninstall", release, "-n", namespace, "--wait", kubeconfig=kubeconfig)
    assert cluster.kubectl("get", "clusterrole", f"{release}-operator", check=False).returncode != 0
    assert cluster.kubectl("get", "clusterkopfpeering", release, check=False).returncode != 0
    cluster.kubectl("get", "crd", "modeldeployments.modelfleet.io")  # Helm never deletes crds/
