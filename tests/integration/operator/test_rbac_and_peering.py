"""The operator with exactly manifests/operator's ServiceAccount, and two peered replicas.

RBAC: the ServiceAccount, ClusterRole and binding of the kustomize base are applied, a token comes
from a TokenRequest, and the operator runs with only that token: any permission missing from the
ClusterRole shows up as a 403 and fails the test.
Peering: two replicas share a ClusterKopfPeering; only the higher priority acts (ready, gauge 1),
the other stands by (live and ready, gauge 0, says so in its log) and takes over when it is
killed. Without its peering object the operator creates it and acts; two replicas that kopf pauses
both (same priority) fail their liveness.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from modelfleet_dev.harness.gateway import BASE_FEATURES, install_gateway

from tests.integration.operator.kube import (
    condition,
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


def _peering_for_this_test(cluster: Any) -> str:
    """A ClusterKopfPeering of the test's own, so the operator under test acts alone."""
    peering = f"rbac-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": peering},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    return peering


def test_the_operator_needs_nothing_beyond_its_cluster_role(
    cluster: Any,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Path,
) -> None:
    kubeconfig = _service_account_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    peering = _peering_for_this_test(cluster)
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
    assert not _refusals(operator.logs())
    events = cluster.kubectl("get", "events", "-n", namespace).stdout
    assert "Promoted" in events


def test_with_its_cluster_role_the_operator_reads_the_gateway_class_before_a_shadow_step(
    cluster: Any,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Path,
) -> None:
    kubeconfig = _service_account_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    peering = _peering_for_this_test(cluster)
    # like Traefik's: the class publishes its features, no mirror among them
    install_gateway(cluster.api_client(), namespace, "gw", "modelfleet-rbac", BASE_FEATURES)
    operator = start_operator(namespace, kubeconfig=kubeconfig, peering=peering)
    spec: dict[str, Any] = {
        "model": {"uri": example_model(), "version": "v1"},
        "traffic": {"gateway": {"parentRefs": [{"name": "gw"}]}},
        "rollout": {"shadow": {"duration": "30s", "percent": 20}},
    }
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    spec["model"] = {"uri": example_model("model-v2.onnx"), "version": "v2"}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    refused = wait_for(
        lambda: (
            condition(status(cluster, "fraud", namespace), "Progressing").get("reason")
            == "ShadowRefused"
            and status(cluster, "fraud", namespace)
        ),
        60,
        "shadow refused",
    )
    # read with the ServiceAccount's token: the class's features, not a 403, decided
    assert condition(refused, "Progressing")["message"] == (
        "GatewayClass modelfleet-rbac does not support HTTPRouteRequestMirror, "
        "HTTPRouteRequestPercentageMirror (status.supportedFeatures): shadow refused"
    )
    assert refused.get("canary") is None
    assert refused["activeVersion"] == "v1"
    assert "filters" not in must_get(cluster, "httproute", "fraud", namespace)["spec"]["rules"][0]
    assert not _refusals(operator.logs())


# an HTTP 403 or kopf's APIForbiddenError; not a 403 inside a timestamp (`21:52:34,403`) or a
# peering name or priority, which a plain substring test took for one
_REFUSAL = re.compile(r"forbidden|(?<![\w,.:-])403(?!\w)", re.IGNORECASE)


def _refusals(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if _REFUSAL.search(line)]


def _acted(operator: OperatorProcess) -> bool:
    return "Handler 'reconcile' succeeded" in operator.logs()


def _acting_gauge(operator: OperatorProcess) -> float | None:
    found = re.search(r"^modelfleet_operator_acting (\S+)$", operator.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else None


def _state(operator: OperatorProcess, path: str = "/readyz") -> tuple[int, str]:
    code, report = operator.probe(path)
    return code, report["state"]


def test_without_its_peering_object_the_operator_creates_it_and_acts(
    cluster: Any,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    tmp_path: Path,
) -> None:
    """crds/ applied, the operator started at once, no ClusterKopfPeering: it must not wait for
    ever (it did: logged "Initial authentication has finished", then nothing, /healthz 200)."""
    peering = f"missing-{uuid.uuid4().hex[:6]}"
    assert get(cluster, "clusterkopfpeering", peering, "default") is None
    # with exactly its ClusterRole: creating the peering object is within it
    kubeconfig = _service_account_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    operator = start_operator(namespace, kubeconfig=kubeconfig, peering=peering)
    apply_yaml(
        model_deployment(
            "fraud", namespace, model={"uri": example_model(), "version": "v1"}, replicas=1
        )
    )
    wait_ready(cluster, "fraud", namespace)
    created = must_get(cluster, "clusterkopfpeering", peering, "default")
    assert len(created.get("status") or {}) == 1, created  # this replica's keep-alive
    assert _state(operator) == (200, "acting")
    assert _state(operator, "/healthz") == (200, "acting")
    assert _acting_gauge(operator) == 1
    logs = operator.logs()
    assert f"peering '{peering}' did not exist: created it" in logs, logs[-3000:]
    assert f"acting on peering '{peering}'" in logs, logs[-3000:]


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
    # each says where it stands: readiness, liveness, the gauge and a log line
    wait_for(lambda: _state(standby) == (200, "standby"), 30, "the standby's /readyz")
    assert _state(standby, "/healthz") == (200, "standby")
    assert standby.probe("/readyz")[1]["leader"] == leader.probe("/readyz")[1]["identity"]
    assert _state(leader) == (200, "acting")
    assert (_acting_gauge(leader), _acting_gauge(standby)) == (1, 0)
    assert f"standing by on peering '{peering}'" in standby.logs(), standby.logs()[-2000:]
    assert f"acting on peering '{peering}'" in leader.logs(), leader.logs()[-2000:]

    leader.kill()
    spec["replicas"] = 2
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(
        lambda: must_get(cluster, "deployment", "fraud-blue", namespace)["spec"]["replicas"] == 2,
        60,
        "the standby to take over and scale the slot",
    )
    wait_for(lambda: _acted(standby), 30, "the standby's reconcile in its log")
    # it reads the peering status every lifetime/4 s: a look or two after kopf resumed it
    wait_for(lambda: _state(standby) == (200, "acting"), 15, "the new leader's /readyz")
    assert _acting_gauge(standby) == 1


def test_replicas_that_kopf_pauses_both_fail_their_liveness(
    namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    """Same priority: kopf freezes both, so neither acts nor stands by for a live peer; their
    liveness must say so (after two peering lifetimes) instead of answering 200 for ever."""
    peering = f"tie-{uuid.uuid4().hex[:6]}"
    same = {"MODELFLEET_OPERATOR_PEERING_PRIORITY": "100"}
    replicas = [start_operator(namespace, peering=peering, env=same) for _ in range(2)]
    for replica in replicas:

        def failing(replica: Any = replica) -> bool:
            return bool(_state(replica, "/healthz")[0] == 503)

        wait_for(failing, 60, "liveness to fail")
        _, report = replica.probe("/healthz")
        assert report["state"] == "waiting"
        assert "same priority" in report["reason"]
        assert _state(replica) == (503, "waiting")
        assert "neither acting nor standing by" in replica.logs(), replica.logs()[-2000:]
