"""Traefik's install for the real tier (hack/modelfleet_dev/realnode/traefik/): the Gateway is accepted only on an
entryPoint's port, and the controller serves the class and the providers the scenarios use."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelfleet_dev.realnode import traefik
from modelfleet_dev.realnode.images_run import ImageBuildError

KUBECTL = Path(sys.executable).parent / "kubectl"


def _objects() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(traefik.MANIFESTS_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(done.stdout) if d}


def _args() -> list[str]:
    (container,) = _objects()["Deployment/traefik"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/traefik:v3.6.12"
    args = container["args"]
    assert isinstance(args, list)
    return args


def test_the_gateway_listens_on_the_web_entrypoints_port() -> None:
    gateway = _objects()[f"Gateway/{traefik.GATEWAY_NAME}"]
    assert gateway["metadata"]["namespace"] == traefik.NAMESPACE
    assert gateway["spec"]["gatewayClassName"] == traefik.GATEWAY_CLASS
    (listener,) = gateway["spec"]["listeners"]
    assert listener["port"] == traefik.GATEWAY_PORT
    assert listener["allowedRoutes"] == {"namespaces": {"from": "All"}}
    assert f"--entryPoints.web.address=:{traefik.GATEWAY_PORT}" in _args()
    service = _objects()["Service/traefik"]
    assert service["spec"]["ports"][0]["port"] == traefik.GATEWAY_PORT


def test_traefik_serves_the_gateway_class_and_the_nginx_ingress_class() -> None:
    objects = _objects()
    assert objects["GatewayClass/traefik"]["spec"]["controllerName"] == (
        "traefik.io/gateway-controller"
    )
    assert objects["IngressClass/nginx"]["spec"]["controller"] == "k8s.io/ingress-nginx"
    args = _args()
    for flag in (
        "--providers.kubernetesgateway=true",
        "--experimental.kubernetesingressnginx=true",
        "--providers.kubernetesingressnginx=true",
    ):
        assert flag in args


def test_its_service_account_may_write_gateway_status() -> None:
    objects = _objects()
    binding = objects["ClusterRoleBinding/modelfleet-real-traefik"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "traefik", "namespace": traefik.NAMESPACE}
    ]
    rules = objects["ClusterRole/modelfleet-real-traefik"]["rules"]
    writable = {r for rule in rules if "update" in rule["verbs"] for r in rule["resources"]}
    assert {"gatewayclasses/status", "gateways/status", "httproutes/status"} <= writable
    readable = {r for rule in rules if "watch" in rule["verbs"] for r in rule["resources"]}
    assert {"backendtlspolicies", "endpointslices", "ingresses", "services"} <= readable


def test_the_backend_tls_policy_crd_goes_in_before_traefik(tmp_path: Path) -> None:
    steps = traefik.install_steps(["kubectl"], tmp_path / "crd.yaml")
    assert steps[0][-2:] == ["-f", str(tmp_path / "crd.yaml")]
    assert f"crd/{traefik.BACKEND_TLS_POLICY}" in steps[1]
    assert steps[2][-2:] == ["-k", str(traefik.MANIFESTS_DIR)]


def _done(cmd: Sequence[str], code: int, stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(list(cmd), code, "", stderr)


def test_install_waits_again_while_the_new_crd_has_no_conditions_yet(tmp_path: Path) -> None:
    """`kubectl wait --for=condition=Established` right after creating a CRD can fail outright
    ('.status.conditions accessor error: <nil>'); the install asks again instead of failing."""
    calls: list[str] = []
    refused = "error: .status.conditions accessor error: <nil> is of the type <nil>"

    def run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(cmd[3])
        first_wait = cmd[3] == "wait" and calls.count("wait") == 1
        return _done(cmd, 1 if first_wait else 0, refused if first_wait else "")

    traefik.install(tmp_path / "kubeconfig", "kubectl", run, crd=tmp_path / "crd.yaml")
    assert calls == ["apply", "wait", "wait", "apply", "-n", "-n"]


def test_install_fails_at_once_on_any_other_error(tmp_path: Path) -> None:
    def run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return _done(cmd, 1, "error: the server could not find the requested resource")

    with pytest.raises(ImageBuildError, match="could not find the requested resource"):
        traefik.install(tmp_path / "kubeconfig", "kubectl", run, crd=tmp_path / "crd.yaml")
