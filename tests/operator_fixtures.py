"""pytest plugin: the operator as a real subprocess against the local control plane.

- `operator_crds` (session): crds/ applied server-side and Established.
- `start_operator`: a factory `start_operator(namespace, env=..., kubeconfig=..., peering=...)` that
  runs `modelfleet operator` with the cluster's kubeconfig (or another one, e.g. a ServiceAccount's)
  and waits for its liveness endpoint; every process it started is stopped by pid afterwards.
  `.probe("/readyz")` answers its readiness (acting) and `.probe("/healthz")` its liveness.
- `operator`: one standalone operator watching the test's `namespace`.
- `apply_yaml(text)`: `kubectl apply -f -` of a manifest (dicts are dumped to JSON).
- `example_model(name)`: the file:// URI of a trained example model (examples/models/).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from modelfleet_dev.localcluster.ports import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    return free_port()


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET /healthz or /readyz: the status code and the replica's peering state."""
        response = httpx.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=5)
        return response.status_code, response.json()

    def kill(self) -> None:
        """Die hard (SIGKILL), as a crashed or evicted replica would."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    completed = subprocess.run(
        [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {completed.stderr}")
    return completed.stdout


@pytest.fixture(scope="session")
def operator_crds(cluster: Any) -> None:
    kubeconfig = Path(cluster.kubeconfig)
    _kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    # A CRD created a moment ago may have no status yet, and `kubectl wait` then fails at once
    # ("<nil> accessor error") instead of waiting: ask again until it has one.
    deadline = time.monotonic() + 60
    while True:
        try:
            _kubectl(
                kubeconfig,
                "wait",
                "--for=condition=Established",
                "crd/modeldeployments.modelfleet.io",
                "crd/clusterkopfpeerings.kopf.dev",
                "--timeout=60s",
            )
            return
        except AssertionError as error:
            if "accessor error" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def start_operator(
    cluster: Any, operator_crds: None, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(
        namespace: str | None = None,
        *,
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        peering: str | None = None,
        wait: bool = True,
    ) -> OperatorProcess:
        metrics_port, health_port = _free_port(), _free_port()
        values = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "MODELFLEET_OPERATOR_PROMETHEUS_URL": cluster.prometheus_url,
            "MODELFLEET_OPERATOR_METRICS_PORT": str(metrics_port),
            "MODELFLEET_OPERATOR_HEALTH_PORT": str(health_port),
            "MODELFLEET_OPERATOR_LOG_FORMAT": "text",
            "MODELFLEET_OPERATOR_BIND_HOST": "127.0.0.1",
            "MODELFLEET_OPERATOR_RESYNC_SECONDS": "5",
            **(env or {}),
        }
        args = [str(BIN / "modelfleet"), "operator"]
        if namespace:
            args += ["--namespace", namespace]
        if peering is None:
            args.append("--standalone")
        else:
            values["MODELFLEET_OPERATOR_PEERING"] = peering
            values.setdefault("MODELFLEET_OPERATOR_PEERING_LIFETIME_SECONDS", "6")
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, env=values, stdout=out, stderr=subprocess.STDOUT)
        handle = OperatorProcess(process, log, metrics_port, health_port)
        started.append(handle)
        if wait:
            _wait_live(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def _wait_live(handle: OperatorProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.alive():
            pytest.fail(f"the operator exited:\n{handle.logs()[-3000:]}", pytrace=False)
        try:
            if httpx.get(f"http://127.0.0.1:{handle.health_port}/healthz", timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the operator never became live:\n{handle.logs()[-3000:]}", pytrace=False)


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess], namespace: str) -> OperatorProcess:
    return start_operator(namespace)


@pytest.fixture
def apply_yaml(cluster: Any) -> Callable[[str | dict[str, Any]], str]:
    def apply(manifest: str | dict[str, Any]) -> str:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return _kubectl(Path(cluster.kubeconfig), "apply", "-f", "-", input=text)

    return apply


@pytest.fixture
def example_model() -> Callable[[str], str]:
    def uri(name: str = "model.onnx") -> str:
        path = REPO / "examples" / "models" / name
        if not path.is_file():
            pytest.fail(f"{path.name} is missing: run `make examples`", pytrace=False)
        return path.as_uri()

    return uri
