"""The real tier installs the operator as a user does: `kubectl apply -k manifests/`, through an
overlay (hack/modelfleet_dev/realnode/overlay) that swaps only the image names and the Prometheus address, and
places the operator Pod on a real node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
PLACEHOLDER_PROMETHEUS = "http://real-tier-prometheus.invalid:9090"
# the real nodes' label and taint (hack/modelfleet_dev/realnode/config.py)
REAL_NODE_SELECTOR = {"modelfleet.io/node-tier": "real"}
REAL_TOLERATION = {
    "key": "modelfleet.io/node-tier",
    "operator": "Equal",
    "value": "real",
    "effect": "NoSchedule",
}


def _render(folder: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects
    }


def _operator_container(objects: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    deployment = objects["Deployment", "modelfleet-system", "modelfleet-operator"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_the_top_level_kustomization_installs_the_operator() -> None:
    user = _render("manifests")
    assert user == _render("manifests/operator")
    assert ("ServiceAccount", "modelfleet-system", "modelfleet-operator") in user
    assert ("CustomResourceDefinition", "", "modeldeployments.modelfleet.io") in user


def test_the_overlay_changes_only_images_env_and_placement() -> None:
    user, real = _render("manifests"), _render("hack/modelfleet_dev/realnode/overlay")
    assert real.keys() == user.keys()
    user_container, real_container = _operator_container(user), _operator_container(real)
    assert real_container["image"] == "localhost/modelfleet-operator:dev"
    env = {e["name"]: e["value"] for e in real_container["env"]}
    assert env["MODELFLEET_OPERATOR_SERVER_IMAGE"] == "localhost/modelfleet-server:dev"
    assert env["MODELFLEET_OPERATOR_PROMETHEUS_URL"] == PLACEHOLDER_PROMETHEUS
    pod = real["Deployment", "modelfleet-system", "modelfleet-operator"]["spec"]["template"]["spec"]
    assert pod.pop("nodeSelector") == REAL_NODE_SELECTOR
    assert pod.pop("tolerations") == [REAL_TOLERATION]
    # with those values put back, the overlay renders exactly what a user installs
    user_env = {e["name"]: e["value"] for e in user_container["env"]}
    real_container["image"] = user_container["image"]
    for item in real_container["env"]:
        item["value"] = user_env[item["name"]]
    assert real == user


def test_one_apply_installs_everything_it_holds() -> None:
    """`kubectl apply -k` maps every object before creating any: an object of a CRD created by
    the same apply fails with "ensure CRDs are installed first" on a fresh cluster."""
    user = _render("manifests")
    created = {
        (o["spec"]["group"], o["spec"]["names"]["kind"])
        for o in user.values()
        if o["kind"] == "CustomResourceDefinition"
    }
    of_those = [
        key for key, o in user.items() if (o["apiVersion"].split("/")[0], o["kind"]) in created
    ]
    assert of_those == []
