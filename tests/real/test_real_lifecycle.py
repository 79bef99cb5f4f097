"""`up → down → up` of the real tier through its command line: each `down` leaves no network
namespace, mount, cgroup or process behind, and the second `up` (with two nodes) starts cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.localcluster.cluster import kubectl_binary
from modelfleet_dev.localcluster.procs import alive, start_time
from modelfleet_dev.realnode import cleanup, clients, config, netns
from modelfleet_dev.realnode.images import PAUSE_REF

pytestmark = pytest.mark.slow

_HACK = Path(__file__).resolve().parents[2] / "hack"


def _realnode(state_dir: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(_HACK)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelfleet_dev.realnode",
            command,
            "--state-dir",
            str(state_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _cgroup_members(names: list[str]) -> list[str]:
    """Live processes anywhere on the machine whose cgroup path holds one of the run's cgroups."""
    found = []
    for status in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            text = status.read_text()
        except OSError:
            continue
        # an exited process not yet reaped by its new parent still names its old cgroup
        if any(name in text for name in names) and start_time(int(status.parent.name)):
            found.append(status.parent.name)
    return found


def _leftovers(info: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    run_id = info["netns"].removeprefix("mf-")
    cgroups = [f"modelfleet-{run_id}-n{index}" for index in (1, 2)]
    return {
        "netns": netns.exists(info["netns"]),
        "owner": alive(info["owner_pid"], info["owner_started"]),
        "pidfiles alive": [
            record["pid"]
            for pidfile in state_dir.rglob("pids/*.pid")
            if alive((record := json.loads(pidfile.read_text()))["pid"], record["started"])
        ],
        "mounts": cleanup.mounts_under(state_dir)
        + cleanup.mounts_under(config.run_nodes_dir(run_id)),
        "cgroup dirs": [
            str(h / c)
            for h in cleanup.hierarchies()
            for c in cgroups
            if (h / c).exists() or (h / f"{c}-runtime").exists()
        ],
        "cgroup members": _cgroup_members(cgroups),
        "cni results": [p.name for p in cleanup.CNI_RESULTS.glob(f"modelfleet-{run_id}-*")],
        "node folders": config.run_nodes_dir(run_id).exists(),
    }


def _run_a_pod(kubeconfig: str, node: str) -> None:
    """A pod with a volume: its container, shim, rootfs, shm and token mounts must all go."""
    pod = clients.real_pod("sleeper", PAUSE_REF)
    pod["spec"]["nodeName"] = node
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]
    kubectl = [kubectl_binary(), f"--kubeconfig={kubeconfig}"]
    subprocess.run([*kubectl, "create", "-f", "-"], input=json.dumps(pod), check=True, text=True)
    wait = [*kubectl, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"]
    subprocess.run(wait, check=True, capture_output=True)


def _up_and_check(state_dir: Path, nodes: int) -> dict[str, Any]:
    up = _realnode(state_dir, "up", "--images", PAUSE_REF, "--nodes", str(nodes))
    assert up.returncode == 0, up.stderr[-3000:]
    assert "export KUBECONFIG=" in up.stdout
    env = _realnode(state_dir, "env")
    assert env.returncode == 0
    assert "export GATEWAY_URL=" in env.stdout
    info: dict[str, Any] = json.loads((state_dir / "real.json").read_text())
    assert netns.exists(info["netns"])
    _run_a_pod(info["env"]["KUBECONFIG"], f"real-{nodes}")  # on the last node
    run_id = info["netns"].removeprefix("mf-")
    assert cleanup.mounts_under(config.run_nodes_dir(run_id)), "a pod has mounts (rootfs, shm, …)"
    assert _cgroup_members([f"modelfleet-{run_id}-n{nodes}/kubepods"]), "the pod's processes"
    return info


def test_up_down_up_leaves_nothing_behind(tmp_path: Path) -> None:
    state_dir = tmp_path / "real"
    try:
        for nodes in (1, 2):  # the second `up` with two nodes
            info = _up_and_check(state_dir, nodes)
            down = _realnode(state_dir, "down")
            assert down.returncode == 0, down.stderr[-3000:]
            nothing = {
                "netns": False,
                "owner": False,
                "pidfiles alive": [],
                "mounts": [],
                "cgroup dirs": [],
                "cgroup members": [],
                "cni results": [],
                "node folders": False,
            }
            assert _leftovers(info, state_dir) == nothing
            assert _realnode(state_dir, "env").returncode == 1
    finally:
        _realnode(state_dir, "down")
