"""The run's network namespace: where every non-loopback address of the real tier lives.

Address plan (one namespace per run, named `mf-<run id>`, so two runs never collide):

    10.240.0.1/32        the API server as nodes and pods see it (a forwarder to host loopback)
    10.240.0.1<n>/32     node n's address (n = 1, 2, …), kubelet's and kube-proxy's
    10.241.<n>.0/24      node n's pod network on its CNI bridge `mfbr<n>` (gateway .1)
    10.96.0.0/16         Service ClusterIPs (the control plane's range), kube-proxy's iptables

The addresses sit on `mfhost`, a bridge with no ports: this kernel has no `dummy` module, and a
port-less bridge is just as inert. Processes enter only the network namespace (`nsenter --net`),
not the mount namespace `ip netns exec` would make, so kubelet's volume mounts and containerd's
rootfs mounts are in one place (the host's), under the run's state folder, and `down` finds them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from modelfleet_dev.localcluster.cluster import SERVICE_CIDR

API_ADDRESS = "10.240.0.1"
HOST_INTERFACE = "mfhost"
POD_NETWORK = "10.241.0.0/16"
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """A namespace command failed; the message holds the command and its output."""


def node_address(index: int) -> str:
    return f"10.240.0.{10 + index}"


def pod_subnet(index: int) -> str:
    return f"10.241.{index}.0/24"


def bridge_name(index: int) -> str:
    return f"mfbr{index}"


def _run(cmd: Sequence[str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def in_netns(name: str, cmd: Sequence[str]) -> list[str]:
    """`cmd` prefixed to run inside the namespace's network only (mounts stay the host's)."""
    return ["nsenter", f"--net={NETNS_DIR / name}", "--", *cmd]


def run_in(name: str, cmd: Sequence[str]) -> str:
    return _run(in_netns(name, cmd))


def create(name: str, node_count: int) -> None:
    """The namespace with loopback up, forwarding on and the API and node addresses."""
    _run(["ip", "netns", "add", name])
    run_in(name, ["ip", "link", "set", "lo", "up"])
    run_in(name, ["ip", "link", "add", HOST_INTERFACE, "type", "bridge"])
    run_in(name, ["ip", "link", "set", HOST_INTERFACE, "up"])
    for address in [API_ADDRESS, *(node_address(i) for i in range(1, node_count + 1))]:
        run_in(name, ["ip", "addr", "add", f"{address}/32", "dev", HOST_INTERFACE])
    # Clients in the namespace itself need a route to ClusterIPs for kube-proxy's OUTPUT rules
    # to see their packets (pods have theirs: the default route to their bridge).
    run_in(name, ["ip", "route", "add", SERVICE_CIDR, "dev", HOST_INTERFACE])
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.route_localnet", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
    ):
        with contextlib.suppress(NetnsError):  # bridge-nf: only where br_netfilter is loaded
            run_in(name, ["sysctl", "-qw", f"{key}={value}"])


def delete(name: str) -> None:
    """Remove the namespace (its interfaces, iptables rules and conntrack entries go with it)."""
    if exists(name):
        _run(["ip", "netns", "delete", name])


def pids_inside(name: str) -> list[int]:
    """Processes whose network namespace is this one (`ip netns pids`)."""
    if not exists(name):
        return []
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30)
    return [int(word) for word in out.stdout.split() if word.isdigit()]


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body in the namespace's network (this thread only); sockets made there stay
    there after we switch back, which is how a forwarder spans the two namespaces."""
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(host)
    finally:
        os.close(target)
        os.close(host)
