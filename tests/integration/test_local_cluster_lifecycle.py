"""The cluster API stops what it started, cleans up after a crashed run, restarts Prometheus, and
starts again (empty) on the persistent state folder that `make cluster-up` uses."""

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
from modelfleet_dev.localcluster import ClusterConfig, LocalCluster
from modelfleet_dev.localcluster.cluster import ClusterError, run_kubectl
from modelfleet_dev.localcluster.procs import RunRecord, alive, clean_crashed_runs

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
        from modelfleet_dev.localcluster import ClusterConfig, LocalCluster
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


def _localcluster(state_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`python -m modelfleet_dev.localcluster <command>` on `state_dir`: what `make cluster-up/down` run."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelfleet_dev.localcluster",
            command,
            "--state-dir",
            str(state_dir),
        ],
        env={**os.environ, "PYTHONPATH": str(HACK)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_up_down_up_on_a_persistent_state_dir_starts_empty_again(tmp_path: Path) -> None:
    state_dir = tmp_path / "persistent"  # kept across runs, like the cache's cluster/
    kubeconfig = state_dir / "kubeconfigs" / "admin.kubeconfig"
    try:
        first = _localcluster(state_dir, "up")
        assert first.returncode == 0, first.stderr[-3000:]
        run_kubectl(kubeconfig, "create", "namespace", "left-by-the-first-run")
        with pytest.raises(ClusterError, match="belongs to a running cluster"):
            LocalCluster(ClusterConfig(state_dir=state_dir)).start()  # never wiped while in use
        first_pids = _pids(state_dir)
        assert _localcluster(state_dir, "down").returncode == 0
        assert (state_dir / "etcd").is_dir()  # the store outlives `down`: the next start meets it
        first_log = (state_dir / "logs" / "etcd.log").read_bytes()

        second = _localcluster(state_dir, "up")

        assert second.returncode == 0, second.stderr[-3000:]
        assert not any(alive(pid, since) for pid, since in first_pids.values())
        nodes = json.loads(run_kubectl(kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
        assert sorted(node["metadata"]["name"] for node in nodes) == [
            "kwok-cpu-a1",
            "kwok-cpu-a2",
            "kwok-cpu-b1",
            "kwok-gpu-a1",
            "kwok-gpu-b1",
        ]
        gpu = next(node for node in nodes if node["metadata"]["name"] == "kwok-gpu-a1")
        assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "4"  # applied with its status
        left = run_kubectl(kubeconfig, "get", "namespace", "left-by-the-first-run", check=False)
        assert left.returncode != 0, "a restart keeps nothing of the earlier run's objects"
        assert "NotFound" in left.stderr
        etcd_log = (state_dir / "logs" / "etcd.log").read_bytes()
        assert etcd_log.startswith(first_log), "logs/ is what a restart keeps"
        assert len(etcd_log) > len(first_log)
    finally:
        _localcluster(state_dir, "down")
