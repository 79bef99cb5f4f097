"""The real tier's Prometheus through prometheus-operator (hack/modelfleet_dev/realnode/monitoring/): what the
`Prometheus` object selects, the images it and prometheus-operator run, the Service the modelfleet
operator queries, and the order realnode.prometheus installs it in; and the image build's cache
cleanup, which the Prometheus binary's name once tripped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelfleet_dev.realnode import config, prometheus
from modelfleet_dev.realnode.images import (
    PROMETHEUS_CONFIG_RELOADER_REF,
    PROMETHEUS_OPERATOR_REF,
    PROMETHEUS_REF,
    RECIPES,
)
from modelfleet_dev.realnode.images_go import older_builds

KUBECTL = Path(sys.executable).parent / "kubectl"


def _objects() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(prometheus.MANIFESTS_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(done.stdout) if d}


def test_the_prometheus_object_selects_every_podmonitor_and_runs_our_image() -> None:
    spec = _objects()[f"Prometheus/{prometheus.PROMETHEUS_NAME}"]["spec"]
    # modelfleet writes one PodMonitor per ModelDeployment, in its namespace, with no label
    # a selector could count on: the empty selectors match all of them
    assert spec["podMonitorSelector"] == {}
    assert spec["podMonitorNamespaceSelector"] == {}
    assert spec["image"] == PROMETHEUS_REF
    assert PROMETHEUS_REF.endswith(f":{spec['version']}")
    assert spec["scrapeInterval"] == "2s"
    assert spec["nodeSelector"] == config.REAL_NODE_SELECTOR
    assert spec["tolerations"] == [config.REAL_TOLERATION]


def test_prometheus_operator_runs_our_images() -> None:
    deployment = _objects()[f"Deployment/{prometheus.OPERATOR_DEPLOYMENT}"]
    assert deployment["metadata"]["namespace"] == prometheus.NAMESPACE
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == PROMETHEUS_OPERATOR_REF
    assert f"--prometheus-config-reloader={PROMETHEUS_CONFIG_RELOADER_REF}" in container["args"]
    for ref in (PROMETHEUS_OPERATOR_REF, PROMETHEUS_CONFIG_RELOADER_REF, PROMETHEUS_REF):
        assert ref in RECIPES


def test_the_service_selects_the_pods_prometheus_operator_labels() -> None:
    service = _objects()[f"Service/{prometheus.SERVICE}"]
    assert service["metadata"]["namespace"] == prometheus.NAMESPACE
    assert service["spec"].get("clusterIP") != "None"  # a ClusterIP, unlike prometheus-operated
    # prometheus-operator v0.85 labels each pod of Prometheus <name> with these two
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": "prometheus",
        "operator.prometheus.io/name": prometheus.PROMETHEUS_NAME,
    }
    assert service["spec"]["ports"] == [{"name": "web", "port": 9090, "targetPort": "web"}]


def test_prometheus_reads_pods_and_the_operator_writes_what_it_manages() -> None:
    objects = _objects()
    binding = objects["ClusterRoleBinding/modelfleet-real-prometheus-pods"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus", "namespace": prometheus.NAMESPACE}
    ]
    rules = objects["ClusterRole/modelfleet-real-prometheus-pods"]["rules"]
    pods = {"apiGroups": [""], "resources": ["pods", "services", "endpoints"]}
    assert {**pods, "verbs": ["get", "list", "watch"]} in rules
    operator_rules = objects["ClusterRole/modelfleet-real-prometheus-operator"]["rules"]
    granted = {
        (group, resource)
        for rule in operator_rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for needed in [("apps", "statefulsets"), ("", "secrets"), ("", "services")]:
        assert needed in granted


def test_the_crds_are_established_before_the_objects_that_use_them() -> None:
    crds = [Path(f"/m/monitoring.coreos.com_{name}.yaml") for name in prometheus.CRDS]
    steps = prometheus.install_steps(crds)
    applied = [i for i, step in enumerate(steps) if step[0] == "apply"]
    waited = next(i for i, step in enumerate(steps) if step[0] == "wait")
    kustomize = next(i for i, step in enumerate(steps) if "-k" in step)
    assert all(i < waited for i in applied if i != kustomize)
    assert waited < kustomize
    assert all("--server-side" in steps[i] for i in applied)
    assert "crd/prometheuses.monitoring.coreos.com" in steps[waited]


def test_a_new_prometheus_build_leaves_prometheus_operators_builds_alone(tmp_path: Path) -> None:
    for name in ("prometheus-0ld", "prometheus-operator-0b98", "prometheus-config-reloader-11d6"):
        (tmp_path / name).mkdir()
    assert older_builds(tmp_path, "prometheus") == [tmp_path / "prometheus-0ld"]
    assert older_builds(tmp_path, "prometheus-operator") == [tmp_path / "prometheus-operator-0b98"]


def test_the_kubelet_syncs_pods_often_enough_for_a_new_podmonitor_to_be_scraped_soon() -> None:
    """prometheus-operator hands Prometheus a new PodMonitor's job through a Secret volume,
    which the kubelet refreshes at each pod sync (default: every minute)."""
    layout = config.NodeLayout("abc123", 1)
    kubelet = config.kubelet_config(layout, Path("/ca.crt"), cgroup_v1=False)
    assert kubelet["syncFrequency"] == "10s"


def test_an_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prometheus.MODE_ENV, "kubernetes-sd")
    with pytest.raises(prometheus.PrometheusError, match="expected one of operator, file-sd"):
        prometheus.mode()
    monkeypatch.delenv(prometheus.MODE_ENV)
    assert prometheus.mode() == prometheus.DEFAULT_MODE
