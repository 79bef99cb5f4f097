"""The cluster API stops what it started, cleans up after a crashed run, and restarts Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from localcluster import ClusterConfig, LocalCluster
from localcluster.procs import RunRecord, alive, clean_crashed_runs

HACK = Path(__file__).resolve().parents[2] / "hack"


def _pids(state_dir: Path) -> dict[str, tuple[int, int | None]]:
    records = {}
    for pidfile in (state_dir / "pids").glob("*.pid"):
        record = json.loads(pidfile.read_text())
        records[pidfile.stem] = (record["pid"], record["started"])
    return records


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    cluster = LocalCluster(
        ClusterConfig(state_dir=state_dir, with_prometheus=False, with_runner=False)
    )
    cluster.start()
    started = _pids(state_dir)
    assert set(started) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    assert all(alive(pid, since) for pid, since in started.values())
    cluster.stop()
    assert not any(alive(pid, since) for pid, since in started.values())
    assert not list((state_dir / "pids").glob("*.pid"))


def test_a_crashed_run_is_cleaned_up_by_the_next_one(tmp_path: Path) -> None:
    state_dir = tmp_path / "crashed"
    crash = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from localcluster import ClusterConfig, LocalCluster
        config = ClusterConfig(state_dir=Path({str(state_dir)!r}), with_prometheus=False, with_runner=False)
        LocalCluster(config).start()
        os._exit(0)  # die without stopping anything, as a killed test run would
        """
    )
    subprocess.run(
        [sys.executable, "-c", crash],
        env={**os.environ, "PYTHONPATH": str(HACK)},
        check=True,
        timeout=120,
    )
    left = _pids(state_dir)
    assert left
    assert all(alive(pid, since) for pid, since in left.values())
    assert any(record.state_dir == state_dir for record in RunRecord.all())

    cleaned = clean_crashed_runs()

    assert any(str(state_dir) in line for line in cleaned)
    deadline = time.monotonic() + 60
    while any(alive(pid, since) for pid, since in left.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid, since) for pid, since in left.values())
    assert not any(record.state_dir == state_dir for record in RunRecord.all())


def test_prometheus_can_be_stopped_and_restarted_at_the_same_url(cluster: LocalCluster) -> None:
    prometheus = cluster.prometheus
    assert prometheus is not None
    url = prometheus.url
    prometheus.add_target("lifecycle_probe", "127.0.0.1:1", {"namespace": "none", "pod": "none"})
    try:
        prometheus.stop()
        assert not prometheus.running
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/-/ready", timeout=1.0)
        prometheus.start()
        assert prometheus.url == url
        assert httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
        deadline = time.monotonic() + 20
        while not any(t["labels"].get("pod") == "none" for t in prometheus.targets()):
            assert time.monotonic() < deadline, "file SD target not picked up after restart"
            time.sleep(0.2)
    finally:
        prometheus.remove_target("lifecycle_probe")
