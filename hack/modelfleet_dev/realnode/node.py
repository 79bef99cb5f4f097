"""One real node: containerd, kubelet (and for the first node kube-proxy) in the run's namespace.

All nodes of a run share one network namespace, so they share one set of iptables rules: one
kube-proxy (started with the first node) programs them for every node, as on hosts that share
a network stack. Each node has its own address, pod /24 and bridge, containerd, kubelet,
cgroupRoot and folders.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev.localcluster import pki
from modelfleet_dev.localcluster.procs import Managed, ProcessGroup, log_tail

from . import cleanup, config, netns
from .build import NodeArtifacts


class NodeError(RuntimeError):
    """A node's component did not start; the message names it and its log."""


@dataclass(frozen=True)
class NodeContext:
    """What every node of a run shares."""

    netns: str
    processes: ProcessGroup
    pki: pki.Pki
    api_port: int  # the API server's port, on host loopback and on the inward forwarder
    binaries: NodeArtifacts
    cgroup_v1: bool


def component(layout: config.NodeLayout, name: str) -> str:
    return f"n{layout.index}-{name}"


def wait_for(what: str, check: Callable[[], bool], managed: Managed, timeout: float = 60.0) -> None:
    """Poll `check`; fail naming the component and its log when it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        if managed.popen.poll() is not None:
            raise NodeError(
                f"{managed.name} exited with {managed.popen.returncode} while waiting for {what}; "
                f"last lines of {managed.log}:\n{log_tail(managed.log, 20)}"
            )
        if time.monotonic() > deadline:
            raise NodeError(
                f"timed out after {timeout:.0f}s waiting for {what} ({managed.name}); "
                f"last lines of {managed.log}:\n{log_tail(managed.log, 20)}"
            )
        time.sleep(0.2)


def ctr(layout: config.NodeLayout, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def write_runtime_files(layout: config.NodeLayout) -> None:
    """containerd's configuration, the CNI network, the pods' (empty) resolv.conf."""
    root = layout.root
    _write(root / "containerd.toml", config.containerd_config(layout))
    _write(root / "cni" / "10-modelfleet.conflist", config.to_json(config.cni_conflist(layout)))
    _write(root / "resolv.conf", "")  # pods get no resolver: nothing outside may be asked


def write_agent_files(ctx: NodeContext, layout: config.NodeLayout) -> None:
    """kubelet's and kube-proxy's configuration and kubeconfigs (client certs of the run's CA)."""
    root = layout.root
    kubelet = config.kubelet_config(layout, ctx.pki.ca_cert, ctx.cgroup_v1)
    _write(root / "kubelet.json", config.to_json(kubelet))
    _write(root / "kube-proxy.json", config.to_json(config.kube_proxy_config(layout)))
    server = config.api_server_url(ctx.api_port)
    users = {
        "kubelet": (f"node-{layout.name}", f"system:node:{layout.name}", "system:nodes"),
        "kube-proxy": ("kube-proxy", "system:kube-proxy", None),
    }
    for file_name, (user, common_name, organization) in users.items():
        pki.issue_client(ctx.pki, user, common_name, organization)
        _write(root / f"{file_name}.kubeconfig", pki.kubeconfig(ctx.pki, server, user), 0o600)


def start_containerd(processes: ProcessGroup, namespace: str, layout: config.NodeLayout) -> None:
    cleanup.create_cgroup(layout.runtime_cgroup)
    cleanup.create_cgroup(layout.cgroup_root)
    cmd = [
        *cleanup.join_cgroup_command(layout.runtime_cgroup),
        *netns.in_netns(namespace, ["containerd", f"--config={layout.root / 'containerd.toml'}"]),
    ]
    managed = processes.start(component(layout, "containerd"), cmd)
    wait_for("containerd's socket", lambda: ctr(layout, "version").returncode == 0, managed, 60)


def import_images(layout: config.NodeLayout, archives: Sequence[Path]) -> None:
    for archive in archives:
        done = ctr(layout, "images", "import", "--no-unpack", str(archive))
        if done.returncode != 0:
            raise NodeError(f"ctr images import {archive} failed: {done.stderr.strip()}")


def start_kubelet(ctx: NodeContext, layout: config.NodeLayout) -> Managed:
    layout.kubelet_dir.mkdir(parents=True, exist_ok=True)
    args = config.kubelet_args(layout, ctx.binaries.binary("kubelet"))
    return ctx.processes.start(component(layout, "kubelet"), netns.in_netns(ctx.netns, args))


def start_kube_proxy(ctx: NodeContext, layout: config.NodeLayout) -> Managed:
    args = [
        str(ctx.binaries.binary("kube-proxy")),
        f"--config={layout.root / 'kube-proxy.json'}",
        "--v=1",
    ]
    return ctx.processes.start("kube-proxy", netns.in_netns(ctx.netns, args))


def start_runtime(
    processes: ProcessGroup, namespace: str, layout: config.NodeLayout, archives: Sequence[Path]
) -> None:
    """containerd with the images imported: needs no API server, so it runs beside its start."""
    write_runtime_files(layout)
    start_containerd(processes, namespace, layout)
    import_images(layout, archives)


def start_agents(ctx: NodeContext, layout: config.NodeLayout) -> None:
    """kubelet, and kube-proxy on the first node (once the API server answers)."""
    write_agent_files(ctx, layout)
    start_kubelet(ctx, layout)
    if layout.index == 1:
        start_kube_proxy(ctx, layout)


def node_info(layout: config.NodeLayout) -> dict[str, object]:
    return {
        "name": layout.name,
        "address": layout.address,
        "pod_subnet": layout.subnet,
        "root": str(layout.root),
    }
