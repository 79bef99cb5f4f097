"""The real tier: the local control plane on host loopback plus real nodes in a network namespace.

`RealCluster.start()` creates the run's namespace (`mf-<run id>`), starts the control plane with
the API server advertised at the namespace's API address, a forwarder from that address to host
loopback, then each node (netns.py has the address plan, node.py the components), and waits for
the nodes to be Ready. `stop()` undoes all of it (cleanup.py), by pid, cgroup and mount point.
A run is recorded under `<cache>/real-runs/` so a later start cleans up after a crashed one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet_dev import HACK_DIR
from modelfleet_dev.localcluster import ClusterConfig, ClusterError, LocalCluster
from modelfleet_dev.localcluster.paths import cache_root
from modelfleet_dev.localcluster.procs import ProcessGroup, alive, start_time, stop_pidfiles

from . import cleanup, config, egress, netns, node
from .build import NodeArtifacts, build_node_binaries

_FORWARDER = [sys.executable, "-m", "modelfleet_dev.realnode.forward"]
_EGRESS = [sys.executable, "-m", "modelfleet_dev.realnode.egress"]
_GRACE = {"kube-proxy": 5.0}


def _say(message: str) -> None:
    print(f"[real] {message}", file=sys.stderr, flush=True)


@dataclass
class RealConfig:
    state_dir: Path | None = None  # None: a fresh temporary folder, removed by stop()
    nodes: int = 1
    images: Sequence[str] | None = None  # image refs to import (None: all of images.py's)
    with_prometheus: bool = False  # host-loopback Prometheus cannot reach pod IPs in the netns
    ready_timeout: float = 180.0


@dataclass
class RunRecord:
    """What `teardown` needs to remove a run, also after its owner crashed."""

    run_id: str
    state_dir: Path
    remove_state: bool
    cgroups: list[str] = field(default_factory=list)
    owner_pid: int = field(default_factory=os.getpid)
    owner_started: int | None = field(default_factory=lambda: start_time(os.getpid()))

    @property
    def netns(self) -> str:
        return f"mf-{self.run_id}"

    @property
    def path(self) -> Path:
        return runs_dir() / f"{self.run_id}.json"

    def save(self) -> None:
        runs_dir().mkdir(parents=True, exist_ok=True)
        data = {**self.__dict__, "state_dir": str(self.state_dir)}
        self.path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        data = json.loads(path.read_text())
        return cls(**{**data, "state_dir": Path(data["state_dir"])})


def runs_dir() -> Path:
    return cache_root() / "real-runs"


def teardown(record: RunRecord) -> list[str]:
    """Remove everything of a run whose processes are stopped or whose owner died: leftover
    processes (by pidfile, then by cgroup and namespace), mounts, cgroups, the namespace."""
    problems: list[str] = []
    stop_pidfiles(record.state_dir / "pids", grace=5.0)
    stop_pidfiles(record.state_dir / "cluster" / "pids", grace=5.0)
    killed = cleanup.kill_cgroups(record.cgroups)
    for pid in netns.pids_inside(record.netns):  # in our namespace, hence ours
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
            killed += 1
    if killed:
        _say(f"{record.netns}: killed {killed} leftover processes (containers, shims)")
    nodes_dir = config.run_nodes_dir(record.run_id)
    for folder in (nodes_dir, record.state_dir):
        if left := cleanup.unmount_all(folder):
            problems.append(f"still mounted: {', '.join(left)}")
    if left_groups := cleanup.remove_cgroups(record.cgroups):
        problems.append(f"cgroups not removed: {', '.join(map(str, left_groups))}")
    cleanup.remove_log_links(nodes_dir)
    cleanup.remove_cni_results(f"modelfleet-{record.run_id}-")
    try:
        netns.delete(record.netns)
    except netns.NetnsError as error:
        problems.append(str(error))
    if problems:  # the record stays: the next start or `down` tries again
        return problems
    shutil.rmtree(nodes_dir, ignore_errors=True)
    if record.remove_state:
        shutil.rmtree(record.state_dir, ignore_errors=True)
    record.path.unlink(missing_ok=True)
    return problems


def clean_crashed_runs() -> list[str]:
    cleaned = []
    for path in sorted(runs_dir().glob("*.json")) if runs_dir().is_dir() else []:
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            record = RunRecord.load(path)
            if not alive(record.owner_pid, record.owner_started):
                problems = teardown(record)
                cleaned.append(f"{record.netns}: {'; '.join(problems) or 'clean'}")
    return cleaned


class RealCluster:
    """A running real tier. Use `with RealCluster() as real:` or start()/stop()."""

    def __init__(self, real_config: RealConfig | None = None) -> None:
        self.config = real_config or RealConfig()
        temporary = self.config.state_dir is None
        state_dir = self.config.state_dir or Path(tempfile.mkdtemp(prefix="modelfleet-real-"))
        self.record = RunRecord(secrets.token_hex(3), state_dir.resolve(), temporary)
        self.processes = ProcessGroup(self.record.state_dir)
        self.local: LocalCluster | None = None
        self.layouts = [
            config.NodeLayout(self.record.run_id, i) for i in range(1, self.config.nodes + 1)
        ]
        self.timings: dict[str, float] = {}

    # --- addresses ---------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.record.state_dir

    @property
    def netns(self) -> str:
        return self.record.netns

    @property
    def control_plane(self) -> LocalCluster:
        if self.local is None:
            raise ClusterError("the real tier is not started")
        return self.local

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def node_names(self) -> list[str]:
        return [layout.name for layout in self.layouts]

    def env(self) -> dict[str, str]:
        return {
            **self.control_plane.env(),
            "MODELFLEET_REAL_NETNS": self.netns,
            "MODELFLEET_REAL_DIR": str(self.state_dir),
            "GATEWAY_URL": "",  # the gateway (Traefik) is not part of the tier yet
        }

    def info(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "state_dir": str(self.state_dir),
            "owner_pid": self.record.owner_pid,
            "owner_started": self.record.owner_started,
            "api_address": f"{netns.API_ADDRESS}:{self.control_plane.ports['apiserver']}",
            "nodes": [node.node_info(layout) for layout in self.layouts],
            "timings": self.timings,
            "env": self.env(),
        }

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """A container's log read from the node's files: what `kubectl logs` prints, without the
        API server (a pod that is gone from the API still has its files until `stop`)."""
        from .clients import pod_log

        return pod_log(self.record.run_id, namespace, pod, container)

    # --- life cycle --------------------------------------------------------------------
    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> RealCluster:
        for line in clean_crashed_runs():
            _say(f"cleaned a crashed run: {line}")
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.record.cgroups = [
            c for layout in self.layouts for c in (layout.cgroup_root, layout.runtime_cgroup)
        ]
        self.record.save()
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = round(time.monotonic() - started, 1)
        (self.state_dir / "real.json").write_text(json.dumps(self.info(), indent=2))
        _say(f"ready in {self.timings['start_s']}s: nodes {', '.join(self.node_names)}")
        return self

    def _start_all(self) -> None:
        binaries = build_node_binaries()
        archives = self._image_archives()
        _say(f"network namespace {self.netns}")
        netns.create(self.netns, len(self.layouts))
        self._start_egress_proxy()
        self.local = LocalCluster(self._control_plane_config())
        # containerd and the image imports need no API server: they run beside its start
        with ThreadPoolExecutor(max_workers=len(self.layouts)) as pool:
            runtimes = [
                pool.submit(self._start_runtime, node_layout, archives)
                for node_layout in self.layouts
            ]
            self._timed("control_plane_s", self.local.start)
            for runtime in runtimes:
                runtime.result()
        self._start_api_forwarder()
        self.local.kubectl(
            "create", "clusterrolebinding", "modelfleet-real-nodes",
            "--clusterrole=system:node", "--group=system:nodes",
        )  # fmt: skip
        ctx = node.NodeContext(
            self.netns,
            self.processes,
            self.local.pki,
            self.local.ports["apiserver"],
            binaries,
            cleanup.cgroup_v1(),
        )
        for layout in self.layouts:
            _say(f"node {layout.name}: kubelet at {layout.address}")
            node.start_agents(ctx, layout)
        self._timed("nodes_ready_s", self._wait_nodes_ready)

    def _start_runtime(self, layout: config.NodeLayout, archives: list[Path]) -> None:
        _say(f"node {layout.name}: containerd, importing {len(archives)} images")
        start = functools.partial(node.start_runtime, self.processes, self.netns, layout, archives)
        self._timed(f"{layout.name}_runtime_s", start)

    def _control_plane_config(self) -> ClusterConfig:
        return ClusterConfig(
            state_dir=self.state_dir / "cluster",
            with_prometheus=self.config.with_prometheus,
            with_runner=False,  # pods on real nodes are the kubelet's; no process stand-ins
            advertise_address=netns.API_ADDRESS,
            egress_selector_config=egress.write_config(self.state_dir, self._egress_socket),
        )

    def _image_archives(self) -> list[Path]:
        from .images import ensure_images  # built by images.py (buildah, Go)

        started = time.monotonic()
        archives = [image.archive for image in ensure_images(self.config.images)]
        self.timings["images_s"] = round(time.monotonic() - started, 1)
        return archives

    def _timed(self, key: str, step: Any) -> None:
        started = time.monotonic()
        step()
        self.timings[key] = round(time.monotonic() - started, 1)

    @property
    def _egress_socket(self) -> Path:
        return self.state_dir / "egress.sock"

    def _start_egress_proxy(self) -> None:
        """The API server's way to the kubelets inside the namespace (egress.py); it connects on
        demand, so it only has to be listening before the first `kubectl logs`."""
        cmd = [*_EGRESS, "--netns", self.netns, str(self._egress_socket)]
        env = {**os.environ, "PYTHONPATH": str(HACK_DIR)}
        managed = self.processes.start("egress-proxy", cmd, env=env)
        node.wait_for(
            f"the egress proxy at {self._egress_socket}",
            self._egress_socket.exists,
            managed,
            30,
        )

    def _start_api_forwarder(self) -> None:
        port = self.control_plane.ports["apiserver"]
        listen = f"{netns.API_ADDRESS}:{port}"
        cmd = [*_FORWARDER, "--netns", self.netns, "--inward", listen, f"127.0.0.1:{port}"]
        env = {**os.environ, "PYTHONPATH": str(HACK_DIR)}
        managed = self.processes.start("forward-api", cmd, env=env)
        check = ["curl", "-sk", "-o", "/dev/null", "--max-time", "2", f"https://{listen}/"]
        node.wait_for(
            f"the API server at {listen} inside {self.netns}",
            lambda: _succeeds(netns.in_netns(self.netns, check)),
            managed,
            30,
        )

    def _wait_nodes_ready(self) -> None:
        api = self.control_plane.http()
        kubelet = self.processes.processes[node.component(self.layouts[-1], "kubelet")]

        def all_ready() -> bool:
            listed = api.get("/api/v1/nodes?labelSelector=type%3Dreal") or {"items": []}
            ready = {
                item["metadata"]["name"]
                for item in listed["items"]
                for condition in item.get("status", {}).get("conditions", [])
                if condition["type"] == "Ready" and condition["status"] == "True"
            }
            return set(self.node_names) <= ready

        try:
            node.wait_for("the real nodes Ready", all_ready, kubelet, self.config.ready_timeout)
        finally:
            api.close()

    def stop(self) -> None:
        """Stop every process by pid (kube-proxy and kubelets first), then remove the rest."""
        self.processes.stop_all(_GRACE)
        killed = cleanup.kill_cgroups(self.record.cgroups)
        if self.local is not None:
            self.local.stop()
            self.local = None
        problems = teardown(self.record)
        if problems:
            _say(f"stop left something behind: {'; '.join(problems)}")
        elif killed:
            _say(f"stopped {killed} container processes")


def _succeeds(cmd: list[str]) -> bool:
    import subprocess

    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


__all__ = ["NodeArtifacts", "RealCluster", "RealConfig", "clean_crashed_runs", "teardown"]
