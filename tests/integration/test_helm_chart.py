"""charts/modelfleet renders what the kustomize install renders, so the two cannot drift.

`helm lint`, then `helm template` against `kubectl kustomize`: with the defaults (manifests/operator),
with the real tier's settings (hack/modelfleet_dev/realnode/overlay: other images, Prometheus URL, placement) and
one replica, and with the monitoring objects (manifests/monitoring). The only differences allowed
are the labels Helm adds and the ClusterKopfPeering only the chart carries. Needs the helm binary
(built into the cache by `python -m modelfleet_dev.localcluster.helm`, as hack/setup.sh does) and kubectl.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.localcluster.cluster import kubectl_binary
from modelfleet_dev.realnode.install import operator_kustomization

from modelfleet.operator.settings import OperatorSettings
from tests.helm_chart import (
    CHART,
    REPO,
    objects,
    real_tier_values,
    run_helm,
    template,
    without_helm_labels,
)
from tests.helm_chart import helm as helm

PEERING = ("ClusterKopfPeering", "modelfleet")
PART_OF = "app.kubernetes.io/part-of"


def kustomize(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """`kubectl kustomize`; the CRDs without the part-of label kustomize adds to every object:
    Helm installs the chart's crds/ as the generator wrote them, untemplated."""
    done = subprocess.run(
        [kubectl_binary(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = objects(done.stdout)
    for (kind, name), document in rendered.items():
        if kind == "CustomResourceDefinition":
            rendered[kind, name] = without_helm_labels(document, also=(PART_OF,))
    return rendered


def comparable(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {key: without_helm_labels(document) for key, document in rendered.items()}


def env_by_name(rendered: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Containers' env in name order: a kustomize patch reorders the list (no value refers to
    another, so the order means nothing)."""
    for document in rendered.values():
        pod = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            container["env"] = sorted(container.get("env", []), key=lambda item: item["name"])
    return rendered


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "monitoring": {"prometheusRule": True, "dashboard": True},
            "namespace": {"create": True},
            "notify": {"slackUrl": "https://hooks.example.org/x", "teamsUrl": "https://t.example"},
        },
    ],
    ids=["defaults", "everything-on"],
)
def test_helm_lint_passes_strict(helm: Path, values: dict[str, Any]) -> None:
    args = [arg for k, v in values.items() for arg in ("--set-json", f"{k}={json.dumps(v)}")]
    out = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in out


def test_the_defaults_render_the_kustomize_install(helm: Path) -> None:
    chart = objects(template(helm, {"namespace": {"create": True}}))
    assert chart.pop(PEERING)["apiVersion"] == "kopf.dev/v1"
    assert comparable(chart) == kustomize(REPO / "manifests" / "operator")


def test_the_real_tiers_settings_render_the_real_tiers_overlay(helm: Path, tmp_path: Path) -> None:
    url = "http://10.240.0.1:9090"
    kustomization = json.loads(operator_kustomization(url, tmp_path))
    kustomization["replicas"] = [{"name": "modelfleet-operator", "count": 1}]
    (tmp_path / "kustomization.yaml").write_text(json.dumps(kustomization))
    values = {**real_tier_values(url), "replicas": 1, "namespace": {"create": True}}
    chart = objects(template(helm, values))
    del chart[PEERING]
    expected = env_by_name(kustomize(tmp_path))
    assert env_by_name(comparable(chart)) == expected
    deployment = expected["Deployment", "modelfleet-operator"]
    assert deployment["spec"]["replicas"] == 1  # the comparison saw the settings change
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/modelfleet-operator:dev"
    assert {"name": "MODELFLEET_OPERATOR_PROMETHEUS_URL", "value": url} in container["env"]


def test_the_monitoring_objects_are_manifests_monitoring(helm: Path) -> None:
    values = {"monitoring": {"prometheusRule": True, "dashboard": True}}
    # the chart labels them part-of modelfleet as all of its objects; manifests/monitoring does not
    rendered = objects(template(helm, values, namespace="monitoring"))
    chart = {key: without_helm_labels(doc, also=(PART_OF,)) for key, doc in rendered.items()}
    expected = kustomize(REPO / "manifests" / "monitoring")
    assert set(expected) == {
        ("PrometheusRule", "modelfleet"),
        ("ConfigMap", "modelfleet-dashboard"),
    }
    for key, document in expected.items():
        assert chart[key]["metadata"].pop("namespace") == "monitoring"
        assert chart[key] == document, key


def test_monitoring_and_the_namespace_are_off_by_default(helm: Path) -> None:
    kinds = {kind for kind, _ in objects(template(helm, {}))}
    assert kinds == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ClusterKopfPeering",
    }


def test_another_release_names_its_cluster_scoped_objects_and_peering_after_itself(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"peering": {"name": "second", "create": False}, "watchNamespaces": ["a", "b"]}
    chart = objects(template(helm, values, release="second", namespace="second-ns"))
    assert ("ClusterKopfPeering", "second") not in chart
    binding = chart["ClusterRoleBinding", "second-operator"]
    assert binding["roleRef"]["name"] == "second-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "second-operator", "namespace": "second-ns"}
    ]
    pod = chart["Deployment", "second-operator"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "second-operator"
    # the operator reads the environment the chart writes as meant
    for item in pod["containers"][0]["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    settings = OperatorSettings()
    assert (settings.peering, settings.namespaces) == ("second", ["a", "b"])


NOTIFY_VARIABLES = {
    "slackUrl": "MODELFLEET_OPERATOR_NOTIFY_SLACK_URL",
    "teamsUrl": "MODELFLEET_OPERATOR_NOTIFY_TEAMS_URL",
    "cloudeventsUrl": "MODELFLEET_OPERATOR_NOTIFY_CLOUDEVENTS_URL",
}


def _notify_env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        item["name"]: item.get("valueFrom")
        for item in container["env"]
        if item["name"].startswith("MODELFLEET_OPERATOR_NOTIFY_")
    }


def test_the_notify_urls_reach_the_operator_from_the_charts_secret(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack, events = "https://hooks.example.org/services/T0/B0/SECRET", "http://ce.example.org/in"
    values = {"notify": {"slackUrl": slack, "cloudeventsUrl": events}}
    chart = objects(template(helm, values))
    secret = chart.pop(("Secret", "modelfleet-operator-notify"))
    assert secret["metadata"]["namespace"] == "modelfleet-system"
    assert secret["stringData"] == {"slackUrl": slack, "cloudeventsUrl": events}
    deployment = chart["Deployment", "modelfleet-operator"]
    assert slack not in json.dumps(deployment)  # a credential: only the Secret holds it
    assert _notify_env(deployment) == {
        variable: {
            "secretKeyRef": {"name": "modelfleet-operator-notify", "key": key, "optional": True}
        }
        for key, variable in NOTIFY_VARIABLES.items()
    }
    assert "checksum/notify" in deployment["spec"]["template"]["metadata"]["annotations"]
    # what the kubelet then sets (an absent optional key: no variable) is what the operator reads
    for key, value in secret["stringData"].items():
        monkeypatch.setenv(NOTIFY_VARIABLES[key], value)
    settings = OperatorSettings()
    assert settings.notify_slack_url is not None
    assert settings.notify_slack_url.get_secret_value() == slack
    assert settings.notify_teams_url is None
    assert settings.notify_cloudevents_url is not None
    assert settings.notify_cloudevents_url.get_secret_value() == events


def test_notify_names_an_existing_secret_and_is_off_by_default(helm: Path) -> None:
    values = {"notify": {"existingSecret": "platform-hooks", "teamsUrl": "http://ignored.example"}}
    chart = objects(template(helm, values))
    assert not [key for key in chart if key[0] == "Secret"]
    deployment = chart["Deployment", "modelfleet-operator"]
    assert {ref["secretKeyRef"]["name"] for ref in _notify_env(deployment).values()} == {
        "platform-hooks"
    }
    assert "checksum/notify" not in deployment["spec"]["template"]["metadata"]["annotations"]
    assert _notify_env(objects(template(helm, {}))["Deployment", "modelfleet-operator"]) == {}
