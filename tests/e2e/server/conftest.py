"""Real `modelfleet serve` processes on loopback (free ports), over the example models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from modelfleet_dev.localcluster.ports import free_port

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


class ServerProcess:
    """One `modelfleet serve` process; its JSON log goes to a file in the test's temp dir."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        full_env = {
            **os.environ,
            "MODELFLEET_HOST": "127.0.0.1",
            "MODELFLEET_PORT": str(self.port),
            "MODELFLEET_METRICS_PORT": str(self.metrics_port),
            "MODELFLEET_CACHE_DIR": str(workdir / "cache"),
            "MODELFLEET_TERMINATION_LOG": str(workdir / f"termination-{self.port}.log"),
            "MODELFLEET_SHUTDOWN_DRAIN_SECONDS": "0.3",
            **env,
        }
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "modelfleet"), "serve"], env=full_env, stdout=log, stderr=log
            )
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Seconds from start to ready; fails the test with the log if it never gets there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not ready after {timeout_s} s:\n{self.log()}")

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def termination_message(self) -> str:
        path = self.log_path.parent / f"termination-{self.port}.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/train_models.py's output (trained once per session, a few seconds)."""
    out = tmp_path_factory.mktemp("example-models")
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_models.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """start_server(**env) -> ServerProcess (not yet ready); every one is stopped afterwards."""
    servers: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        servers.append(ServerProcess(tmp_path, env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, example_models: Path
) -> Iterator[ServerProcess]:
    """One ready server per test module: the example model, with rollout identity labels."""
    server = ServerProcess(
        tmp_path_factory.mktemp("shared-server"),
        {
            "MODELFLEET_MODEL_URI": str(example_models / "model.txt"),
            "MODELFLEET_MODEL_NAME": "fraud",
            "MODELFLEET_MODEL_VERSION": "v1",
            "MODELFLEET_DEPLOYMENT": "fraud",
            "MODELFLEET_SLOT": "blue",
            "MODELFLEET_REVISION": "r1",
        },
    )
    server.wait_ready()
    yield server
    server.stop()
