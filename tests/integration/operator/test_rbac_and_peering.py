"""The operator with exactly manifests/operator's ServiceAccount, and two peered replicas.

RBAC: the ServiceAccount, ClusterRole and binding of the kustomize base are applied, a token comes
from a TokenRequest, and the operator runs with only that token: any permission missing from the
ClusterRole shows up as a 403 and fails the test.
Peering: two replicas share a ClusterKopfPeering; only the higher priority acts, and the other
takes over when it is killed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.integration.operator.kube import (
    get,
    model_deployment,
    must_get,
    status,
    wait_for,
    wait_ready,
)
from tests.operator_fixtures import REPO, OperatorProcess

RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def _service_account_kubeconfig(cluster: Any, path: Path) -> Path:
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests" / "operator")).stdout
    objects = [obj for obj in yaml.safe_load_all(rendered) if obj and obj["kind"] in RBAC_KINDS]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    account = next(obj for obj in objects if obj["kind"] == "ServiceAccount")["metadata"]
    token = cluster.kubectl(
        "create", "token", account["name"], "-n", account["namespace"], "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    admin_cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [admin_cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": admin_cluster["name"], "user": "operator"}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_the_operator_needs_nothing_beyond_its_cluster_role(
    cluster: Any,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Path,
) -> None:
    kubeconfig = _service_account_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    peering = f"rbac-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": peering},
            }
        ),
    )
    operator = start_operator(namespace, kubeconfig=kubeconfig, peering=peering)
    spec: dict[str, Any] = {
        "model": {"uri": example_model(), "version": "v1"},
        "traffic": {"gateway": {"parentRefs": [{"name": "gw"}]}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "metric": "rps", "target": 10},
        "rollout": {"steps": [100]},
    }
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    assert get(cluster, "scaledobject", "fraud-blue", namespace) is not None
    # switch router and autoscaler kinds and roll out v2: create, patch and delete everywhere
    spec["traffic"] = {"ingress": {"host": "fraud.example.org"}}
    spec["autoscaling"]["metric"] = "cpu"
    spec["model"] = {"uri": example_model("model-v2.onnx"), "version": "v2"}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("activeVersion") == "v2", 90, "v2 active"
    )
    wait_for(lambda: get(cluster, "httproute", "fraud", namespace) is None, 30, "no HTTPRoute")
    assert must_get(cluster, "hpa", "fraud-green", namespace)
    logs = operator.logs()
    assert "403" not in logs, logs[-3000:]
    assert "Forbidden" not in logs, logs[-3000:]
    events = cluster.kubectl("get", "events", "-n", namespace).stdout
    assert "Promoted" in events


def _acted(operator: OperatorProcess) -> bool:
    return "Handler 'reconcile' succeeded" in operator.logs()


def test_only_one_peered_replica_acts_and_the_other_takes_over(
    cluster: Any,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    peering = f"failover-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": peering},
            }
        ),
    )
    leader = start_operator(
        namespace, peering=peering, env={"MODELFLEET_OPERATOR_PEERING_PRIORITY": "200"}
    )
    standby = start_operator(
        namespace, peering=peering, env={"MODELFLEET_OPERATOR_PEERING_PRIORITY": "100"}
    )
    spec: dict[str, Any] = {"model": {"uri": example_model(), "version": "v1"}, "replicas": 1}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    assert _acted(leader)
    assert not _acted(standby), standby.logs()[-2000:]

    leader.kill()
    spec["replicas"] = 2
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(
        lambda: must_get(cluster, "deployment", "fraud-blue", namespace)["spec"]["replicas"] == 2,
        60,
        "the standby to take over and scale the slot",
    )
    wait_for(lambda: _acted(standby), 30, "the standby's reconcile in its log")
