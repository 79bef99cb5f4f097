"""The real tier's Prometheus, one of two (`MODELFLEET_REAL_PROMETHEUS`, see `mode()`):

- `operator` (the default): what a user runs. `start_operated` applies the Prometheus and Probe
  CRDs from prometheus-operator's module, then hack/modelfleet_dev/realnode/monitoring/: prometheus-operator
  v0.85.0 as a Pod and a `Prometheus` object selecting every PodMonitor, so Prometheus 3.5.0
  (built from its Go module, images.py) finds the slot pods through the PodMonitors the operator
  writes, by Kubernetes discovery. It answers at a ClusterIP Service beside the headless
  `prometheus-operated` (no cluster DNS here). Its config reloader re-reads the configuration
  every 5 s: monitoring/prometheus.yaml says why.
- `file-sd`, described below: Debian's `prometheus` inside the run's namespace, a start of a few
  seconds without prometheus-operator's images.

The kwok tier's Prometheus (hack/modelfleet_dev/localcluster/prometheus.py) listens on host loopback; here the
slot pods have real IPs inside the namespace, so Prometheus runs there too (entered with
`nsenter --net`, like containerd and kubelet) and scrapes them every 2 s.

Discovery: Debian's Prometheus 2.42 is built without `kubernetes_sd_configs` (promtool: "field
kubernetes_sd_configs not found"), so a small process (`python -m modelfleet_dev.realnode.prometheus discover`)
lists the pods from the API server every second and writes them as file-SD targets carrying the
meta labels Kubernetes pod discovery would give (`__meta_kubernetes_pod_label_…`, one target per
container port). The relabelling is then what a kubernetes_sd job would run.

What it keeps mirrors the PodMonitor the operator writes (operator/builders/podmonitor.py): pods
of a ModelDeployment (`app.kubernetes.io/managed-by=modelfleet` with the `instance` and
`modelfleet.io/deployment` labels the PodMonitor selects on), their container port named
`metrics`, path /metrics; and the target labels are the ones prometheus-operator gives a
PodMonitor's targets (`namespace`, `pod`, `container`, `endpoint`). The operator's PromQL needs
`namespace` plus the server's own `deployment`, `slot`, `revision` labels.

It listens on the namespace's API address (`10.240.0.1:9090`): the operator Pod reaches it
there; host-side tests through a loopback forwarder (`clients.forward`) or `query()`. Both
processes belong to the run's `ProcessGroup`, so `stop()` and a crashed run's teardown stop
them by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from modelfleet_dev import HACK_DIR
from modelfleet_dev.localcluster import pki
from modelfleet_dev.localcluster.kubeapi import KubeApi

from . import clients, netns
from .cluster import RealCluster
from .node import wait_for

# Which Prometheus `start` runs: "operator" (prometheus-operator from the `Prometheus` object in
# monitoring/, the default) or "file-sd" (Debian's Prometheus on the namespace's API address,
# below). With "operator" the whole tier passes in one session since its config reloader re-reads
# the configuration every 5 s; before, every PodMonitor after the first waited up to 3 minutes.
MODE_ENV = "MODELFLEET_REAL_PROMETHEUS"
MODES = ("operator", "file-sd")
DEFAULT_MODE = "operator"
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
SCRAPE_INTERVAL = "2s"
USER = "modelfleet-real-prometheus"
MANAGED_BY = "modelfleet"
METRICS_PORT_NAME = "metrics"  # operator/builders/common.py: the server's metrics port
_META = "__meta_kubernetes_pod_"


class PrometheusError(RuntimeError):
    """Prometheus did not start; the message holds its log's last lines."""


def address() -> str:
    """Where the file-SD Prometheus listens, inside the namespace."""
    return f"{netns.API_ADDRESS}:{PORT}"


def _label(key: str) -> str:
    """A Kubernetes label key as Kubernetes discovery spells it in meta labels."""
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in key)


# --- discovery -------------------------------------------------------------------------------
def pod_targets(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """File-SD target groups for `pods`: one per container port of a pod with an IP, labelled
    like Prometheus' Kubernetes discovery (role `pod`) labels it."""
    groups = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        ip = status.get("podIP")
        if not ip:
            continue
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )
        common = {
            "__meta_kubernetes_namespace": meta["namespace"],
            f"{_META}name": meta["name"],
            f"{_META}uid": meta.get("uid", ""),
            f"{_META}ip": ip,
            f"{_META}node_name": spec.get("nodeName", ""),
            f"{_META}phase": status.get("phase", ""),
            f"{_META}ready": str(ready).lower(),
        }
        for key, value in (meta.get("labels") or {}).items():
            common[f"{_META}label_{_label(key)}"] = value
            common[f"{_META}labelpresent_{_label(key)}"] = "true"
        for container in spec.get("containers", []):
            for port in container.get("ports", []):
                labels = {
                    **common,
                    f"{_META}container_name": container["name"],
                    f"{_META}container_image": container.get("image", ""),
                    f"{_META}container_init": "false",
                    f"{_META}container_port_name": port.get("name", ""),
                    f"{_META}container_port_number": str(port["containerPort"]),
                    f"{_META}container_port_protocol": port.get("protocol", "TCP"),
                }
                groups.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": labels})
    return groups


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    staging = path.with_suffix(".tmp")
    staging.write_text(text)
    os.replace(staging, path)  # atomic: Prometheus never reads half a file


def discover(api: KubeApi, out: Path, every: float = 1.0) -> None:
    """List the pods every `every` seconds and keep `out` (file-SD JSON) up to date. Forever."""
    while True:
        try:
            listed = api.get("/api/v1/pods") or {"items": []}
            _write_if_changed(out, json.dumps(pod_targets(listed["items"]), indent=1))
        except httpx.HTTPError as error:  # the API server restarting: keep the last targets
            print(f"listing pods failed: {error}", file=sys.stderr, flush=True)
        time.sleep(every)


# --- configuration -----------------------------------------------------------------------------
def scrape_config(targets_file: Path, interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """prometheus.yml: one job over the pods a modelfleet PodMonitor selects."""
    selected = ["app.kubernetes.io/instance", "modelfleet.io/deployment"]
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": "modelfleet-pods",
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
                "relabel_configs": [
                    {
                        "action": "keep",
                        "source_labels": [
                            f"{_META}label_{_label('app.kubernetes.io/managed-by')}",
                            *(f"{_META}labelpresent_{_label(key)}" for key in selected),
                        ],
                        "regex": f"{MANAGED_BY};true;true",
                    },
                    {
                        "action": "keep",
                        "source_labels": [f"{_META}container_port_name"],
                        "regex": METRICS_PORT_NAME,
                    },
                    {  # prometheus-operator drops finished pods the same way
                        "action": "drop",
                        "source_labels": [f"{_META}phase"],
                        "regex": "(Failed|Succeeded)",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": [f"{_META}name"], "target_label": "pod"},
                    {"source_labels": [f"{_META}container_name"], "target_label": "container"},
                    {"target_label": "endpoint", "replacement": METRICS_PORT_NAME},
                ],
            }
        ],
    }


def _grant(real: RealCluster) -> None:
    """A client cert for USER, who may only list and watch pods."""
    rbac = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": USER},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": USER},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": USER,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}
                ],
            },
        ],
    }
    real.control_plane.kubectl("apply", "-f", "-", input=json.dumps(rbac))
    pki.issue_client(real.control_plane.pki, USER, USER, None)


# --- life cycle --------------------------------------------------------------------------------
def _ready(real: RealCluster, base_url: str) -> bool:
    check = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"]
    done = clients.run_inside(real.netns, [*check, f"{base_url}/-/ready"], timeout=10)
    return done.stdout == "200"


def mode() -> str:
    chosen = os.environ.get(MODE_ENV) or DEFAULT_MODE
    if chosen not in MODES:
        raise PrometheusError(f"{MODE_ENV}={chosen!r}: expected one of {', '.join(MODES)}")
    return chosen


def start(real: RealCluster, timeout: float = 180.0) -> str:
    """Start the tier's Prometheus (see `mode()`); return its URL inside the namespace once it
    is ready. `url`, `targets` and `query` use that URL afterwards."""
    started = start_operated(real, timeout) if mode() == "operator" else _start_file_sd(real)
    _url_file(real).write_text(started)
    return started


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


# --- prometheus-operator --------------------------------------------------------------------
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


def start_operated(real: RealCluster, timeout: float = 180.0) -> str:
    """prometheus-operator and the `Prometheus` object (monitoring/), on the real node; return
    the Service's URL once Prometheus answers ready through it."""
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
    return base_url


def _describe(real: RealCluster) -> str:
    """What a failed start leaves to read: the Prometheus pods' phases and waiting reasons."""
    listed = real.control_plane.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json", check=False)
    if listed.returncode != 0:
        return listed.stderr.strip()
    states = []
    for pod in json.loads(listed.stdout)["items"]:
        reasons = [
            f"{container['name']}: {_waiting_reason(container)}"
            for container in pod.get("status", {}).get("containerStatuses", [])
        ]
        phase = pod.get("status", {}).get("phase")
        states.append(f"{pod['metadata']['name']} {phase} ({', '.join(reasons)})")
    return "; ".join(states) or f"no pods in {NAMESPACE}"


def _waiting_reason(container: dict[str, Any]) -> str:
    """The reason of a container status's one state (waiting, running or terminated), or '?'."""
    state: dict[str, Any] = next(iter(container.get("state", {}).values()), {})
    return str(state.get("reason", "?"))


# --- file-SD (MODELFLEET_REAL_PROMETHEUS=file-sd) ---------------------------------------------
def _start_file_sd(real: RealCluster, timeout: float = 60.0) -> str:
    """Start the pod discovery and Debian's Prometheus in the run's namespace; return
    Prometheus' URL there once it is ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError("prometheus is not installed; run `make setup` (hack/setup.sh)")
    directory = real.state_dir / "prometheus"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    targets_file = directory / "pods.json"
    _write_if_changed(targets_file, "[]")
    _grant(real)
    hack = str(HACK_DIR)
    discovery = [
        sys.executable, "-m", "modelfleet_dev.realnode.prometheus", "discover",
        "--api-url", real.control_plane.api_url, "--pki-dir", str(real.control_plane.pki.dir),
        "--out", str(targets_file),
    ]  # fmt: skip
    real.processes.start("prometheus-discovery", discovery, env={**os.environ, "PYTHONPATH": hack})
    config_file = directory / "prometheus.yml"
    config_file.write_text(json.dumps(scrape_config(targets_file), indent=2))
    cmd = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={address()}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    managed = real.processes.start("prometheus", netns.in_netns(real.netns, cmd))
    base_url = f"http://{address()}"
    try:
        wait_for(
            f"Prometheus ready at {base_url}", lambda: _ready(real, base_url), managed, timeout
        )
    except RuntimeError as error:
        raise PrometheusError(str(error)) from error
    return base_url


# --- asking it ---------------------------------------------------------------------------------


def targets(real: RealCluster, base_url: str | None = None) -> list[dict[str, Any]]:
    """Prometheus' active targets (asked from inside the namespace); `base_url`: another
    Prometheus than the one `start` returned."""
    base_url = base_url or url(real)
    cmd = ["curl", "-s", "--max-time", "5", f"{base_url}/api/v1/targets?state=active"]
    done = clients.run_inside(real.netns, cmd, timeout=10)
    if done.returncode != 0:
        raise PrometheusError(f"cannot read {base_url}/api/v1/targets: {done.stderr.strip()}")
    active: list[dict[str, Any]] = json.loads(done.stdout)["data"]["activeTargets"]
    return active


def scrape_pools(real: RealCluster, base_url: str | None = None) -> list[str]:
    """The scrape pools (jobs) of Prometheus' loaded configuration: one per PodMonitor endpoint
    with prometheus-operator, so a new PodMonitor shows here once its config reached Prometheus."""
    cmd = ["curl", "-s", "--max-time", "5", f"{base_url or url(real)}/api/v1/scrape_pools"]
    done = clients.run_inside(real.netns, cmd, timeout=10)
    body = json.loads(done.stdout or "{}")
    if body.get("status") != "success":
        raise PrometheusError(f"cannot read the scrape pools: {done.stdout or done.stderr}")
    pools: list[str] = body["data"]["scrapePools"]
    return pools


def query(real: RealCluster, promql: str, base_url: str | None = None) -> list[dict[str, Any]]:
    """An instant query's result vector (asked from inside the namespace)."""
    cmd = ["curl", "-s", "--max-time", "5", "-G", f"{base_url or url(real)}/api/v1/query"]
    done = clients.run_inside(real.netns, [*cmd, "--data-urlencode", f"query={promql}"])
    body = json.loads(done.stdout or "{}")
    if body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {done.stdout or done.stderr}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelfleet_dev.realnode.prometheus")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("discover", help="keep a file-SD file of the cluster's pods")
    run.add_argument("--api-url", required=True)
    run.add_argument("--pki-dir", required=True, type=Path)
    run.add_argument("--out", required=True, type=Path)
    run.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args(argv)
    discover(KubeApi(args.api_url, pki.Pki(args.pki_dir), user=USER), args.out, args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
