"""Traefik's install for the real tier (hack/realnode/traefik/): the Gateway is accepted only on an
entryPoint's port, and the controller serves the class and the providers the scenarios use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from realnode import traefik

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
