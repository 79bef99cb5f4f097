"""What the real tier's scenarios install on top of a started `RealCluster`, as a user would.

- `serve_models(real)`: the example models over HTTP from a process inside the run's namespace
  (`http://10.240.0.1:8090/model.txt`). A `file://` URI names a file inside the server image,
  where examples/models/ is not; `http(s)://` is what the server downloads itself (httpx), and a
  pod reaches the namespace's API address through its bridge's gateway.
- `install_operator(real, prometheus_url)`: `kubectl apply -k` of a kustomization whose only
  base is hack/modelfleet_dev/realnode/overlay (manifests/ with the local images) and whose only patch puts the
  real tier's Prometheus URL in place of the overlay's placeholder; then the operator
  Deployment's rollout complete: both replicas Ready (one acting, one standing by).
- `gateway_address(real)`: Traefik's Service, the Gateway's listener inside the namespace.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from modelfleet_dev import REPO_DIR
from modelfleet_dev.localcluster.cluster import ClusterError

from . import clients, netns, traefik
from .cluster import RealCluster
from .node import wait_for

OVERLAY_DIR = Path(__file__).resolve().parent / "overlay"
MODELS_DIR = REPO_DIR / "examples" / "models"
MODEL_FILES_PORT = 8090
OPERATOR_NAMESPACE = "modelfleet-system"
OPERATOR_DEPLOYMENT = "modelfleet-operator"
PROMETHEUS_ENV = "MODELFLEET_OPERATOR_PROMETHEUS_URL"


def models_url() -> str:
    return f"http://{netns.API_ADDRESS}:{MODEL_FILES_PORT}"


def serve_models(real: RealCluster, folder: Path = MODELS_DIR, timeout: float = 30.0) -> str:
    """Serve `folder` read-only over HTTP inside the namespace; return its base URL."""
    cmd = [
        sys.executable, "-m", "http.server", str(MODEL_FILES_PORT),
        "--bind", netns.API_ADDRESS, "--directory", str(folder),
    ]  # fmt: skip
    managed = real.processes.start("model-files", netns.in_netns(real.netns, cmd))
    probe = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"]
    wait_for(
        f"the model files at {models_url()}",
        lambda: clients.run_inside(real.netns, [*probe, f"{models_url()}/"]).stdout == "200",
        managed,
        timeout,
    )
    return models_url()


def operator_kustomization(prometheus_url: str, folder: Path, overlay: Path = OVERLAY_DIR) -> str:
    """The kustomization written in `folder`: the overlay (by a relative path: kustomize
    refuses absolute ones), and the Prometheus address patched in."""
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR_DEPLOYMENT, "namespace": OPERATOR_NAMESPACE},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "operator",
                            "env": [{"name": PROMETHEUS_ENV, "value": prometheus_url}],
                        }
                    ]
                }
            }
        },
    }
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay.resolve(), folder.resolve())],
        "patches": [{"patch": json.dumps(patch)}],
    }
    return json.dumps(document, indent=2) + "\n"


def install_operator(real: RealCluster, prometheus_url: str, timeout: float = 110.0) -> None:
    """`kubectl apply -k` the operator, then wait for its Deployment's rollout (`timeout` below
    the 120 s every kubectl call of LocalCluster is allowed)."""
    folder = real.state_dir / "install-operator"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(operator_kustomization(prometheus_url, folder))
    local = real.control_plane
    wait_namespace_gone_if_terminating(real, OPERATOR_NAMESPACE)
    applied = local.kubectl("apply", "-k", str(folder), check=False)
    if applied.returncode != 0:
        # one apply holds the CRDs and a ClusterKopfPeering: the latter is refused until the
        # CRD is established, as for any user; wait for the CRDs, then apply again
        local.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        local.kubectl("apply", "-k", str(folder))
    # as a user checks it: both replicas Ready, the acting one and the one standing by
    local.kubectl(
        "-n", OPERATOR_NAMESPACE, "rollout", "status",
        f"deployment/{OPERATOR_DEPLOYMENT}", f"--timeout={int(timeout)}s",
    )  # fmt: skip


def operator_logs(real: RealCluster, tail: int = 200) -> str:
    """The last `tail` lines of every operator Pod's log, by `kubectl logs` (each line prefixed
    with its Pod), or why they could not be read."""
    done = real.control_plane.kubectl(
        "-n", OPERATOR_NAMESPACE, "logs", "-l", f"app.kubernetes.io/name={OPERATOR_DEPLOYMENT}",
        "--prefix", f"--tail={tail}", "--max-log-requests=10",
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return f"kubectl logs failed: {done.stderr.strip()}"
    return done.stdout


def wait_namespace_gone_if_terminating(
    real: RealCluster, namespace: str, timeout: float = 100.0
) -> None:
    """A namespace being deleted refuses new content ("it is being terminated") until its
    pods have stopped on the node: wait until it is gone, then an apply can recreate it."""
    found = real.control_plane.kubectl(
        "get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False
    )
    if found.returncode != 0 or found.stdout.strip() != "Terminating":
        return
    real.control_plane.kubectl(
        "wait", "--for=delete", f"namespace/{namespace}", f"--timeout={int(timeout)}s"
    )


def install_gateway(real: RealCluster) -> str:
    """Traefik (GatewayClass `traefik`, Gateway `traefik/modelfleet`); its listener's address."""
    traefik.install(real.kubeconfig)
    return gateway_address(real)


def gateway_address(real: RealCluster) -> str:
    """`<ClusterIP>:8000` of Traefik's Service (reachable inside the namespace)."""
    service = real.control_plane.kubectl(
        "-n", traefik.NAMESPACE, "get", "service", "traefik", "-o", "json"
    )
    return f"{json.loads(service.stdout)['spec']['clusterIP']}:{traefik.GATEWAY_PORT}"


def wait_answering(real: RealCluster, url: str, timeout: float = 60.0) -> None:
    """Until `url` (inside the namespace) answers at all (any HTTP code)."""
    probe = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url]
    deadline = time.monotonic() + timeout
    while clients.run_inside(real.netns, probe).stdout in ("", "000"):
        if time.monotonic() > deadline:
            raise ClusterError(f"{url} did not answer inside {real.netns} in {timeout:.0f}s")
        time.sleep(0.5)
