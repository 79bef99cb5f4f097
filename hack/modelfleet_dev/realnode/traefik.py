"""Installs Traefik (hack/modelfleet_dev/realnode/traefik/) as the real tier's Gateway API data plane.

Traefik's Gateway provider watches BackendTLSPolicy (gateway-api v1.4.0, standard channel) and
only logs errors without it; the local cluster does not install that CRD (adding it to
localcluster's CRD_SOURCES would change the control plane's build key), so it is applied here,
from the same gateway-api module, before Traefik itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .images_run import ImageBuildError

MANIFESTS_DIR = Path(__file__).resolve().parent / "traefik"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api@v1.4.0"
BACKEND_TLS_POLICY_CRD = "config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml"
BACKEND_TLS_POLICY = "backendtlspolicies.gateway.networking.k8s.io"
NAMESPACE = "traefik"
GATEWAY_NAME = "modelfleet"
GATEWAY_PORT = 8000  # the entryPoint `web` and the Gateway's listener
GATEWAY_CLASS = "traefik"
DEFAULT_KUBECTL = str(Path(sys.executable).parent / "kubectl")
NO_CONDITIONS_YET = ".status.conditions accessor error"


def backend_tls_policy_crd() -> Path:
    """The CRD's YAML inside the gateway-api module (downloaded into Go's module cache)."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", GATEWAY_API_MODULE],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or info.get("Error") or "Dir" not in info:
        raise ImageBuildError(f"go mod download {GATEWAY_API_MODULE}: {info or done.stderr}")
    path = Path(info["Dir"]) / BACKEND_TLS_POLICY_CRD
    if not path.is_file():
        raise ImageBuildError(f"{BACKEND_TLS_POLICY_CRD} not found in {GATEWAY_API_MODULE}")
    return path


def install_steps(kubectl: Sequence[str], crd: Path) -> list[list[str]]:
    """The kubectl commands, in order: the CRD, until established, then Traefik, until Ready."""
    apply = [*kubectl, "apply", "--server-side", "--field-manager=modelfleet-real-tier"]
    return [
        [*apply, "-f", str(crd)],
        [*kubectl, "wait", "--for=condition=Established", f"crd/{BACKEND_TLS_POLICY}"],
        [*apply, "-k", str(MANIFESTS_DIR)],
        [*kubectl, "-n", NAMESPACE, "rollout", "status", "deployment/traefik", "--timeout=180s"],
        [
            *kubectl,
            "-n",
            NAMESPACE,
            "wait",
            "--for=condition=Programmed",
            f"gateway/{GATEWAY_NAME}",
            "--timeout=60s",
        ],
    ]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def install(
    kubeconfig: Path,
    kubectl: str = DEFAULT_KUBECTL,
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = _run,
    crd: Path | None = None,
    retry_s: float = 30.0,
) -> None:
    """Apply the BackendTLSPolicy CRD and Traefik; return once its Gateway is Programmed.

    The localhost/traefik image must already be in the real node's containerd (images.py).
    """
    steps = install_steps(
        [kubectl, "--kubeconfig", str(kubeconfig)], crd or backend_tls_policy_crd()
    )
    for cmd in steps:
        deadline = time.monotonic() + retry_s
        while (done := run(cmd)).returncode != 0:
            # `kubectl wait` fails outright while a just-created CRD has no conditions yet
            if NO_CONDITIONS_YET not in done.stderr or time.monotonic() > deadline:
                raise ImageBuildError(f"{' '.join(cmd[3:])} failed: {done.stderr.strip()}")
            time.sleep(1.0)
