"""The real tier's Prometheus, as a user runs it: prometheus-operator and a `Prometheus` object.

`start(real)` installs hack/realnode/monitoring/ on the real node: prometheus-operator v0.85.0
as a Pod (its ServiceAccount and RBAC), and the `Prometheus` object `monitoring/modelfleet`
(every PodMonitor of every namespace, 2 s scrapes; its own ServiceAccount may list and watch
pods). prometheus-operator creates its StatefulSet, whose pod runs Prometheus 3.5.0 from
localhost/prometheus:v3.5.0 (images.py builds it from the Go module at the version
prometheus-operator's module graph requires) beside prometheus-operator's config reloader, and
turns each PodMonitor the modelfleet operator writes (operator/builders/podmonitor.py) into a
Kubernetes-discovery scrape job: the slot pods are found through the API server, labelled
`namespace`, `pod`, `container`, `endpoint`; the server's own `deployment`, `slot`, `revision`
labels complete what the operator's PromQL selects on. A PodMonitor endpoint's `interval`
(5 s in the operator's) overrides the object's 2 s.

The CRDs Prometheus and Probe are applied first, from prometheus-operator's module (the local
cluster installs PodMonitor, ServiceMonitor and PrometheusRule from the same module).

Where it answers: the Service `prometheus-operated` that prometheus-operator creates is headless,
and the real tier has no cluster DNS, so a ClusterIP Service `monitoring/prometheus` selects the
same pods (monitoring/service.yaml); `start` returns `http://<its ClusterIP>:9090`, which the
modelfleet operator Pod queries, and `targets()` / `query()` ask it from inside the run's
namespace (kube-proxy's rules serve ClusterIPs there too).

Before this, the tier ran Debian's Prometheus 2.42 (built without Kubernetes discovery) fed by a
process writing the pods as file-SD targets; prometheus-operator replaced both.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from . import clients
from .cluster import RealCluster

MANIFESTS_DIR = Path(__file__).resolve().parent / "monitoring"
NAMESPACE = "monitoring"
SERVICE = "prometheus"  # monitoring/service.yaml: a ClusterIP beside headless prometheus-operated
PROMETHEUS_NAME = "modelfleet"  # the `Prometheus` object; its StatefulSet is prometheus-<name>
OPERATOR_DEPLOYMENT = "prometheus-operator"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CRD_FOLDER = "example/prometheus-operator-crd"
# the local cluster installs PodMonitor, ServiceMonitor and PrometheusRule (localcluster.paths);
# the Prometheus controller also needs these two (Probe: it watches them beside the monitors)
CRDS = ("prometheuses", "probes")
FIELD_MANAGER = "modelfleet-real-tier"
PORT = 9090


class PrometheusError(RuntimeError):
    """Prometheus did not start or did not answer; the message says what was seen."""


def start(real: RealCluster, timeout: float = 180.0) -> str:
    """Install prometheus-operator and the `Prometheus` object (monitoring/) on the real node;
    return the Service's URL once Prometheus answers ready through it. `url`, `targets` and
    `query` use that URL afterwards."""
    for step in install_steps(crd_files()):
        done = real.control_plane.kubectl(*step, check=False)
        # a CRD just created has no status yet, and `kubectl wait` fails at once on it
        for _ in range(30):
            if "accessor error" not in done.stderr:
                break
            time.sleep(1.0)
            done = real.control_plane.kubectl(*step, check=False)
        if done.returncode != 0:
            raise PrometheusError(f"kubectl {' '.join(step)} failed: {done.stderr.strip()}")
    base_url = service_url(real)
    deadline = time.monotonic() + timeout
    while not _ready(real, base_url):
        if time.monotonic() > deadline:
            raise PrometheusError(
                f"Prometheus not ready at {base_url} after {timeout:.0f}s: {_describe(real)}"
            )
        time.sleep(1.0)
    _url_file(real).write_text(base_url)
    return base_url


def _url_file(real: RealCluster) -> Path:
    directory = real.state_dir / "prometheus"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "url"


def url(real: RealCluster) -> str:
    """The URL `start` returned (inside the namespace)."""
    path = _url_file(real)
    if not path.is_file():
        raise PrometheusError("the real tier's Prometheus was not started (prometheus.start)")
    return path.read_text()


def _ready(real: RealCluster, base_url: str) -> bool:
    check = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"]
    done = clients.run_inside(real.netns, [*check, f"{base_url}/-/ready"], timeout=10)
    return done.stdout == "200"


def crd_files(module_at_version: str = PROMETHEUS_OPERATOR_MODULE) -> list[Path]:
    """The CRDs of `CRDS`, as YAML inside prometheus-operator's module (Go's module cache)."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or info.get("Error") or "Dir" not in info:
        raise PrometheusError(f"go mod download {module_at_version}: {info or done.stderr}")
    paths = [Path(info["Dir"]) / CRD_FOLDER / f"monitoring.coreos.com_{n}.yaml" for n in CRDS]
    if missing := [p.name for p in paths if not p.is_file()]:
        raise PrometheusError(f"{missing} not found in {module_at_version}/{CRD_FOLDER}")
    return paths


def install_steps(crds: list[Path]) -> list[list[str]]:
    """kubectl arguments, in order: the CRDs (server-side: too large for the last-applied
    annotation) until established, then monitoring/ (the operator, the `Prometheus` object, its
    Service), until the operator Deployment is available."""
    apply = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}"]
    return [
        *([*apply, "-f", str(crd)] for crd in crds),
        [
            "wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{name}.monitoring.coreos.com" for name in CRDS),
        ],
        [*apply, "-k", str(MANIFESTS_DIR)],
        [
            "-n", NAMESPACE, "rollout", "status", f"deployment/{OPERATOR_DEPLOYMENT}",
            "--timeout=100s",
        ],
    ]  # fmt: skip


def service_url(real: RealCluster) -> str:
    """`http://<ClusterIP>:9090` of the Service in front of the `Prometheus` object's pods."""
    service = real.control_plane.kubectl("-n", NAMESPACE, "get", "service", SERVICE, "-o", "json")
    return f"http://{json.loads(service.stdout)['spec']['clusterIP']}:{PORT}"


def _describe(real: RealCluster) -> str:
    """What a failed start leaves to read: the Prometheus pods' phases and waiting reasons."""
    listed = real.control_plane.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json", check=False)
    if listed.returncode != 0:
        return listed.stderr.strip()
    states = []
    for pod in json.loads(listed.stdout)["items"]:
        reasons = [
            f"{c['name']}: {next(iter(c.get('state', {}).values()), {}).get('reason', '?')}"
            for c in pod.get("status", {}).get("containerStatuses", [])
        ]
        phase = pod.get("status", {}).get("phase")
        states.append(f"{pod['metadata']['name']} {phase} ({', '.join(reasons)})")
    return "; ".join(states) or f"no pods in {NAMESPACE}"


# --- asking it ---------------------------------------------------------------------------------
def targets(real: RealCluster) -> list[dict[str, Any]]:
    """Prometheus' active targets (asked from inside the namespace)."""
    base_url = url(real)
    cmd = ["curl", "-s", "--max-time", "5", f"{base_url}/api/v1/targets?state=active"]
    done = clients.run_inside(real.netns, cmd, timeout=10)
    if done.returncode != 0:
        raise PrometheusError(f"cannot read {base_url}/api/v1/targets: {done.stderr.strip()}")
    active: list[dict[str, Any]] = json.loads(done.stdout)["data"]["activeTargets"]
    return active


def query(real: RealCluster, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector (asked from inside the namespace)."""
    cmd = ["curl", "-s", "--max-time", "5", "-G", f"{url(real)}/api/v1/query"]
    done = clients.run_inside(real.netns, [*cmd, "--data-urlencode", f"query={promql}"])
    body = json.loads(done.stdout or "{}")
    if body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {done.stdout or done.stderr}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
