"""The operator's kustomize base: least privilege, two replicas, probes, restricted pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

BASE = Path(__file__).resolve().parents[3] / "manifests" / "operator"


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / name).read_text())
    return loaded


def test_kustomization_lists_every_file() -> None:
    listed = set(_load("kustomization.yaml")["resources"])
    present = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_cluster_role_has_no_wildcards() -> None:
    for rule in _load("clusterrole.yaml")["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "resourceNames" not in rule or rule["resourceNames"]


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [
        ("modelfleet.io", "modeldeployments/status", "patch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "patch"),
        ("", "services", "delete"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("gateway.networking.k8s.io", "gateways", "get"),  # which class serves the route
        ("gateway.networking.k8s.io", "gatewayclasses", "get"),  # what that class can serve
        ("keda.sh", "scaledobjects", "delete"),
        ("", "events", "create"),
        ("", "secrets", "get"),  # a monitoring webhook's bearer token
        ("kopf.dev", "clusterkopfpeerings", "patch"),
        ("kopf.dev", "clusterkopfpeerings", "create"),  # its peering object, when missing
    ],
)
def test_cluster_role_grants_what_the_operator_does(group: str, resource: str, verb: str) -> None:
    assert any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in _load("clusterrole.yaml")["rules"]
    )


def test_secrets_are_only_read_one_by_one_never_listed_or_watched() -> None:
    verbs = {
        verb
        for rule in _load("clusterrole.yaml")["rules"]
        if "" in rule["apiGroups"] and "secrets" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert verbs == {"get"}


def test_deployment_runs_two_hardened_replicas_with_probes() -> None:
    deployment = _load("deployment.yaml")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _load("serviceaccount.yaml")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    assert container["command"] == ["modelfleet", "operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # acting or standing by


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = _load("namespace.yaml")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
