"""Model-server processes and a real Prometheus scraping them, without a control plane.

For tests that exercise the data plane and the metrics path only (the analysis against real
counters and histograms); the full rollout scenarios use the `cluster` fixture instead. Built from
the local control plane's pieces (`localcluster.procs`, `localcluster.prometheus`), so processes
are stopped by pid and Prometheus' file-SD targets carry `namespace` and `pod` like the runner's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelfleet_dev import REPO_DIR
from modelfleet_dev.localcluster.ports import free_port
from modelfleet_dev.localcluster.procs import ProcessGroup
from modelfleet_dev.localcluster.prometheus import Prometheus

REPO = REPO_DIR
MODELS = REPO / "examples" / "models"


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    metrics_address: str
    slot: str
    revision: str


class LocalStack:
    """Prometheus (scraping every `scrape_interval`) plus `modelfleet serve` processes."""

    def __init__(
        self, directory: Path, scrape_interval: str = "1s", namespace: str = "e2e"
    ) -> None:
        self.directory = directory
        self.namespace = namespace
        self.processes = ProcessGroup(directory)
        self.prometheus = Prometheus(
            self.processes, directory / "prometheus", free_port(), scrape_interval
        )
        self.servers: dict[str, Server] = {}

    def start(self) -> LocalStack:
        self.prometheus.start()
        return self

    def start_server(
        self,
        name: str,
        *,
        deployment: str,
        slot: str,
        revision: str,
        model: Path = MODELS / "model.txt",
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Server:
        port, metrics_port = free_port(), free_port()
        environment = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MODELFLEET_MODEL_URI": str(model),
            "MODELFLEET_MODEL_NAME": deployment,
            "MODELFLEET_HOST": "127.0.0.1",
            "MODELFLEET_PORT": str(port),
            "MODELFLEET_METRICS_PORT": str(metrics_port),
            "MODELFLEET_CACHE_DIR": str(self.directory / "cache" / name),
            "MODELFLEET_DEPLOYMENT": deployment,
            "MODELFLEET_SLOT": slot,
            "MODELFLEET_REVISION": revision,
            **(env or {}),
        }
        binary = Path(sys.executable).parent / "modelfleet"
        managed = self.processes.start(name, [str(binary), "serve"], env=environment)
        server = Server(name, f"127.0.0.1:{port}", f"127.0.0.1:{metrics_port}", slot, revision)
        deadline = time.monotonic() + timeout
        while not _ready(server.address):
            if managed.popen.poll() is not None or time.monotonic() > deadline:
                log = managed.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server {name} did not become ready:\n{log}")
            time.sleep(0.1)
        labels = {"namespace": self.namespace, "pod": name}
        self.prometheus.add_target(name, server.metrics_address, labels)
        self.servers[name] = server
        return server

    def wait_scraped(self, server: Server, timeout: float = 30.0) -> None:
        """Until Prometheus has scraped the server at least once (its `up` is 1)."""
        deadline = time.monotonic() + timeout
        query = f'up{{pod="{server.name}"}} == 1'
        while not self.prometheus.query(query):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus never scraped {server.name}")
            time.sleep(0.2)

    def close(self) -> None:
        self.processes.stop_all()


def _ready(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
