"""The operator as a real process (`modelfleet operator`) against the local cluster.

For the rollout benchmark and for scenarios that kill the operator mid-rollout: it runs exactly as
in production (kopf, the Prometheus analyzer), watching only the namespaces it is given, and is
stopped by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from modelfleet_dev.localcluster import LocalCluster

from .cluster import Cluster

BIN = Path(sys.executable).parent


def install_crd(cluster: Cluster) -> None:
    crd = subprocess.run(
        [str(BIN / "modelfleet"), "crd"], capture_output=True, text=True, check=True
    ).stdout
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd)
    deadline = time.monotonic() + 30
    while True:  # `kubectl wait` fails outright while the new CRD has no conditions yet
        done = cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/modeldeployments.modelfleet.io",
            "--timeout=10s",
            check=False,
        )
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ModelDeployment CRD never became Established: {done.stderr}")
        time.sleep(0.5)


class OperatorProcess:
    """`modelfleet operator --standalone -n …` with its log in `log_path`."""

    def __init__(self, cluster: LocalCluster, namespaces: Sequence[str], log_path: Path) -> None:
        self.cluster = cluster
        self.namespaces = list(namespaces)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            **self.cluster.env(),
            "MODELFLEET_OPERATOR_PROMETHEUS_URL": self.cluster.prometheus_url,
            "MODELFLEET_OPERATOR_METRICS_PORT": "0",
            "MODELFLEET_OPERATOR_HEALTH_PORT": "0",
            "MODELFLEET_OPERATOR_LOG_FORMAT": "text",
        }
        args = [str(BIN / "modelfleet"), "operator", "--standalone"]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to tidy up, as when a node dies."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self.popen = None

    def stop(self, grace: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
