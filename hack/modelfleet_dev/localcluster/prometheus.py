"""A real Prometheus process with file-based service discovery, stoppable and restartable.

Targets are JSON files in `sd_dir` (one per target), the format of Prometheus' file_sd_configs;
their labels become target labels on every scraped series, the way Kubernetes pod discovery
plus a labelmap relabelling would. Stop and start keep the port and the data, so a test can take
Prometheus down mid-rollout and bring it back at the same URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .procs import ProcessGroup

_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """A Kubernetes label key as a Prometheus label name: other characters become `_`."""
    name = _LABEL_CHARS.sub("_", key)
    return name if not name[:1].isdigit() else "_" + name


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    """One Prometheus on 127.0.0.1:`port` with its own config and data under `directory`."""

    def __init__(
        self, processes: ProcessGroup, directory: Path, port: int, scrape_interval: str
    ) -> None:
        self.processes = processes
        self.directory = directory
        self.port = port
        self.scrape_interval = scrape_interval
        self.sd_dir = directory / "sd"
        self.config_file = directory / "prometheus.yml"
        self.data_dir = directory / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "pods",
                    "file_sd_configs": [
                        {"files": [str(self.sd_dir / "*.json")], "refresh_interval": "1s"}
                    ],
                },
            ],
        }
        self.config_file.write_text(json.dumps(config, indent=2))

    def start(self, timeout: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus is not installed; run `make setup` (hack/setup.sh)")
        self._write_config()
        self.processes.start(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
        )
        self.wait_ready(timeout)

    def stop(self) -> None:
        self.processes.stop("prometheus", grace=10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        managed = self.processes.processes.get("prometheus")
        return managed is not None and managed.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            managed = self.processes.processes.get("prometheus")
            if managed is None or managed.popen.poll() is not None:
                log = managed.log.read_text(errors="replace")[-2000:] if managed else ""
                raise PrometheusError(f"prometheus exited during start-up:\n{log}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready on {self.url} after {timeout:.0f}s")

    # --- service discovery -------------------------------------------------------------
    def add_target(self, name: str, address: str, labels: Mapping[str, str]) -> Path:
        """Register (or replace) a scrape target; `name` identifies it for `remove_target`."""
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        path = self.sd_dir / f"{_LABEL_CHARS.sub('_', name)}.json"
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps([{"targets": [address], "labels": dict(labels)}]))
        os.replace(staging, path)  # atomic: Prometheus never reads half a file
        return path

    def remove_target(self, name: str) -> None:
        (self.sd_dir / f"{_LABEL_CHARS.sub('_', name)}.json").unlink(missing_ok=True)

    # --- queries -----------------------------------------------------------------------
    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Run an instant query and return its result vector."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5.0)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active
