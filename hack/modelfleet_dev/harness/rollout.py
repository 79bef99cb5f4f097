"""Driving a ModelDeployment through rollouts on the local cluster, and recording what happened.

- `model_deployment(...)`: a ModelDeployment manifest with short steps, served from the example
  models on this machine (the process runner runs `modelfleet serve` locally, so a file:// URI works).
- `StatusRecorder`: polls `.status` in a thread and keeps every change of (phase, weight, step,
  analysis phase) with its wall-clock time: the step history the scenarios assert on, and the
  "canary weight 0" moment the benchmark times.
- `wait_for(...)`: poll the status until a predicate holds, failing with the last status seen;
  `apply_healthy(...)` applies a manifest and waits for it to be Healthy at a version.
- `traffic_driver(...)`: steady load of the example request on a ModelDeployment's pods.
- `kubectl_modelfleet(...)`: the kubectl plugin, run as a user would.
- `Receiver`: an HTTP receiver on a loopback port for the rollout's webhook gates and notifications.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.operator.api import API_VERSION, GROUP, PLURAL, VERSION
from modelfleet_dev.localcluster.ports import free_port

from .cluster import Cluster
from .driver import TrafficDriver
from .kube import kube_snapshot
from .stack import MODELS

Status = Mapping[str, Any]


def model_uri(file_name: str = "model.txt") -> str:
    return (MODELS / file_name).resolve().as_uri()


def model_deployment(
    name: str,
    *,
    prometheus_url: str,
    model: str = "model.txt",
    version: str = "v1",
    sha256: str | None = None,
    env: Mapping[str, str] | None = None,
    replicas: int = 2,
    steps: Sequence[int] = (10, 25, 50, 100),
    step_duration: str = "10s",
    interval: str = "2s",
    progress_deadline: str = "60s",
    analysis: Mapping[str, Any] | None = None,
    traffic: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest whose rollout fits in a test: 10 s steps analysed every 2 s by default."""
    spec: dict[str, Any] = {
        "model": {"uri": model_uri(model), "version": version},
        "replicas": replicas,
        "server": {"env": [{"name": k, "value": v} for k, v in (env or {}).items()]},
        "rollout": {
            "steps": list(steps),
            "stepDuration": step_duration,
            "progressDeadline": progress_deadline,
            "scaleDownDelay": "2s",
            "keepPrevious": "0",
            "analysis": {
                "prometheusUrl": prometheus_url,
                "interval": interval,
                "maxErrorRate": 0.01,
                "maxP99LatencyMs": 2000,  # generous: a loaded 2-core CI box is not a latency test
                "minRequests": 50,
                **(analysis or {}),
            },
        },
    }
    if sha256:
        spec["model"]["sha256"] = sha256
    if traffic:
        spec["traffic"] = dict(traffic)
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(cluster: Cluster, namespace: str, manifest: Mapping[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


_CLIENTS: dict[int, Any] = {}


def _custom_objects(cluster: Cluster) -> Any:
    """One API client per cluster: polling through kubectl would cost a process per look."""
    from kubernetes import client

    if id(cluster) not in _CLIENTS:
        _CLIENTS[id(cluster)] = client.CustomObjectsApi(cluster.api_client())
    return _CLIENTS[id(cluster)]


def read_status(cluster: Cluster, namespace: str, name: str) -> Status:
    from kubernetes.client.exceptions import ApiException

    try:
        body = _custom_objects(cluster).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=5
        )
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    status: Status = body.get("status") or {}
    return status


def wait_for(
    cluster: Cluster,
    namespace: str,
    name: str,
    predicate: Callable[[Status], bool],
    timeout: float,
    what: str,
) -> Status:
    deadline = time.monotonic() + timeout
    status: Status = {}
    while time.monotonic() < deadline:
        status = read_status(cluster, namespace, name)
        if predicate(status):
            return status
        time.sleep(0.5)
    raise AssertionError(
        f"{what}: not reached in {timeout:.0f} s; last status:\n{json.dumps(status, indent=1)}"
    )


def apply_healthy(
    cluster: Cluster, namespace: str, manifest: Mapping[str, Any], version: str = "v1"
) -> Status:
    """Apply `manifest` and wait (2 minutes at most) until it is Healthy at `version`."""
    apply(cluster, namespace, manifest)
    name = manifest["metadata"]["name"]
    return wait_for(cluster, namespace, name, healthy_at(version), 120, f"{version} Healthy")


def traffic_driver(
    cluster: Cluster, namespace: str, name: str, rps: float, **options: Any
) -> TrafficDriver:
    """The example models' request (built with them) sent to `name`'s pods at `rps`, following
    the live weights."""
    return TrafficDriver(
        kube_snapshot(cluster.api_client(), namespace, name),
        rps=rps,
        path=f"/v2/models/{name}/infer",
        payload=json.loads((MODELS / "request.json").read_text()),
        **options,
    )


def kubectl_modelfleet(
    kubeconfig: Path, namespace: str, name: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl modelfleet <args> <name> -n <namespace>`, found by kubectl on PATH as the
    kubectl-modelfleet plugin installed beside this Python."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(bin_dir / "kubectl"), "modelfleet", *args, name, "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def healthy_at(version: str) -> Callable[[Status], bool]:
    def check(status: Status) -> bool:
        return (
            status.get("phase") == "Healthy"
            and status.get("activeVersion") == version
            and not status.get("canary")
        )

    return check


@dataclass(frozen=True)
class Observed:
    at: float  # wall-clock time
    phase: str | None
    weight: int | None
    step_index: int | None
    analysis: str | None
    message: str | None


@dataclass
class StatusRecorder:
    """Every distinct (phase, weight, step, analysis phase) the status went through, in order."""

    cluster: Cluster
    namespace: str
    name: str
    period_s: float = 0.5
    seen: list[Observed] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusRecorder:
        self._thread = threading.Thread(target=self._loop, name="status-recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            status = read_status(self.cluster, self.namespace, self.name)
            canary = status.get("canary") or {}
            observed = Observed(
                time.time(),
                status.get("phase"),
                canary.get("weight"),
                canary.get("stepIndex"),
                (canary.get("analysis") or {}).get("phase"),
                status.get("message"),
            )
            last = self.seen[-1] if self.seen else None
            key = (observed.phase, observed.weight, observed.step_index, observed.analysis)
            if last is None or key != (last.phase, last.weight, last.step_index, last.analysis):
                self.seen.append(observed)
            self._stop.wait(self.period_s)

    def weights(self) -> list[int]:
        """The canary weights in the order they were first seen (repeats collapsed)."""
        found: list[int] = []
        for observed in self.seen:
            if observed.weight is not None and (not found or found[-1] != observed.weight):
                found.append(observed.weight)
        return found


@dataclass
class Receiver:
    """Answers each POST with `answer(path)`, `refusal` the body of a non-2xx answer, and records
    (path, Content-Type, JSON body, monotonic time); a context manager serving in a thread."""

    answer: Callable[[str], int] = lambda path: 200
    refusal: bytes = b""
    port: int = field(default_factory=free_port)
    got: list[tuple[str, str, dict[str, Any], float]] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for where, _, body, _ in self.got if where == f"/{path}"]

    def times(self, path: str) -> list[float]:
        return [at for where, _, _, at in self.got if where == f"/{path}"]

    def content_types(self, path: str) -> set[str]:
        return {kind for where, kind, _, _ in self.got if where == f"/{path}"}

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                kind = self.headers.get("Content-Type", "")
                receiver.got.append((self.path, kind, body, time.monotonic()))
                code = receiver.answer(self.path)
                said = b"" if code < 300 else receiver.refusal
                self.send_response(code)
                self.send_header("Content-Length", str(len(said)))
                self.end_headers()
                self.wfile.write(said)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
