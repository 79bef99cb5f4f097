"""The local control plane and the operator for the demo.

The cluster is started through `python -m modelfleet_dev.localcluster up` (exactly what `make cluster-up` runs), so
a cluster the demo leaves running with `--keep` is the one `make cluster-env` / `make cluster-down`
know. A cluster that was already running is reused and left running. The operator runs as a
process whose pidfile sits in the cluster's own `pids/` folder: `make cluster-down` stops it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from modelfleet_dev import HACK_DIR
from modelfleet_dev.harness.rollout import model_uri
from modelfleet_dev.localcluster.cluster import kube_api_client, run_kubectl
from modelfleet_dev.localcluster.ports import free_port
from modelfleet_dev.localcluster.procs import Managed, ProcessGroup, alive, terminate

BIN = Path(sys.executable).parent
OPERATOR = "demo-operator"


def _localcluster(*args: str, capture: bool) -> subprocess.CompletedProcess[str]:
    """`python -m modelfleet_dev.localcluster …`; its stderr (progress) goes to ours."""
    return subprocess.run(
        [sys.executable, "-m", "modelfleet_dev.localcluster", *args],
        env={**os.environ, "PYTHONPATH": str(HACK_DIR)},
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        check=False,
    )


class DemoCluster:
    """A running local control plane, known by the env `localcluster up` prints."""

    kind = "kwok"
    replicas = 2

    def __init__(self, env: dict[str, str], started_here: bool) -> None:
        self.environment = env
        self.started_here = started_here
        self.state_dir = Path(env["MODELFLEET_CLUSTER_DIR"])
        self.kubeconfig = Path(env["KUBECONFIG"])
        self.prometheus_url = env["PROMETHEUS_URL"]
        self.processes = ProcessGroup(self.state_dir)

    @classmethod
    def up(cls) -> DemoCluster:
        running = _localcluster("status", capture=True).returncode == 0
        done = _localcluster("up", capture=True)
        if done.returncode != 0:
            raise RuntimeError("the local control plane did not start (see the lines above)")
        env = {}
        for line in done.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line.removeprefix("export ").partition("=")
                env[key] = value
        return cls(env, started_here=not running)

    def down(self) -> None:
        _localcluster("down", capture=False)

    def env(self) -> dict[str, str]:
        return dict(self.environment)

    # --- what harness.rollout and harness.operator call ----------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, input=input, check=check)

    def api_client(self) -> Any:
        return kube_api_client(self.kubeconfig)

    # --- what the ModelDeployment says on this tier (demo/spec.py) ------------------------
    def model_uri(self, file_name: str) -> str:
        return model_uri(file_name)  # the pods are local processes: a file:// URI

    def traffic(self) -> dict[str, Any]:
        """HTTPRoute weights, which the traffic driver follows exactly (no Gateway controller is
        needed for that: the driver plays the proxy)."""
        return {"gateway": {"parentRefs": [{"name": "demo-gateway"}]}}

    def placement(self) -> dict[str, Any]:
        return {}

    def monitoring(self) -> None:
        return None  # the kwok story ends with the undo: no monitoring chapter there

    # --- the operator --------------------------------------------------------------------------
    def start_operator(self, namespace: str, timeout: float = 60.0) -> Managed:
        """`modelfleet operator --standalone -n NAMESPACE`, live (its /healthz answers)."""
        self._stop_leftover_operator()
        health_port = free_port()
        env = {
            **os.environ,
            **self.environment,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MODELFLEET_OPERATOR_PROMETHEUS_URL": self.prometheus_url,
            "MODELFLEET_OPERATOR_METRICS_PORT": str(free_port()),
            "MODELFLEET_OPERATOR_HEALTH_PORT": str(health_port),
            "MODELFLEET_OPERATOR_BIND_HOST": "127.0.0.1",
            "MODELFLEET_OPERATOR_LOG_FORMAT": "text",
            # the paired gate replays rows to each slot's metrics port: here the pods are local
            # processes whose real address the process runner writes into this annotation
            "MODELFLEET_OPERATOR_POD_ADDRESS_ANNOTATION": "modelfleet.io/local-metrics-address",
        }
        command = [str(BIN / "modelfleet"), "operator", "--standalone", "--namespace", namespace]
        managed = self.processes.start(OPERATOR, command, env=env)
        deadline = time.monotonic() + timeout
        while not _live(f"http://127.0.0.1:{health_port}/healthz"):
            if managed.popen.poll() is not None or time.monotonic() > deadline:
                tail = managed.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the operator did not start; {managed.log}:\n{tail}")
            time.sleep(0.2)
        return managed

    def stop_operator(self) -> None:
        self.processes.stop(OPERATOR)

    def operator_log(self) -> Path:
        return self.processes.log_dir / f"{OPERATOR}.log"

    def _stop_leftover_operator(self) -> None:
        """The operator a previous `make demo --keep` left running (ours, by its pidfile)."""
        pidfile = self.processes.pid_dir / f"{OPERATOR}.pid"
        try:
            record = json.loads(pidfile.read_text())
        except (OSError, ValueError):
            return
        if alive(record["pid"], record["started"]):
            terminate(record["pid"], record["started"], grace=10.0)
        pidfile.unlink(missing_ok=True)


def _live(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False
