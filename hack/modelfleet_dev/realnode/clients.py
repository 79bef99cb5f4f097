"""Reaching what lives in the run's network namespace, from host-side tests.

- `forward(netns, host, port)`: a loopback forwarder (host 127.0.0.1:<free port> → an address
  inside the namespace: a pod IP, a ClusterIP, later the gateway's listener), by pid.
- `run_inside(netns, cmd)`: a client run inside the namespace (its network only).
- `real_pod(...)`: a Pod manifest placed on a real node (label selector and toleration).
- `pod_log(run_id, namespace, pod)`: a container's log, read from the node's files.
Traffic only ever goes to loopback or to addresses inside the namespace.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from modelfleet_dev import HACK_DIR
from modelfleet_dev.localcluster.ports import free_port
from modelfleet_dev.localcluster.procs import terminate

from . import config, netns


@contextlib.contextmanager
def forward(namespace: str, host: str, port: int, timeout: float = 15.0) -> Iterator[str]:
    """Yield `127.0.0.1:<port>` forwarding to `host:port` inside `namespace`."""
    local = free_port()
    cmd = [
        sys.executable,
        "-m",
        "modelfleet_dev.realnode.forward",
        "--netns",
        namespace,
        "--outward",
    ]
    hack = str(HACK_DIR)
    proc = subprocess.Popen(
        [*cmd, f"127.0.0.1:{local}", f"{host}:{port}"],
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": hack},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(local):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"forwarder to {host}:{port} in {namespace} did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{local}"
    finally:
        terminate(proc.pid, None, 5.0, proc)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run_inside(
    namespace: str, cmd: Sequence[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with the namespace's network (e.g. curl a ClusterIP as a node would)."""
    return subprocess.run(
        netns.in_netns(namespace, cmd), capture_output=True, text=True, timeout=timeout
    )


def real_pod(
    name: str,
    image: str,
    command: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
    port: int | None = None,
    restart: str = "Always",
) -> dict[str, Any]:
    """A Pod for a real node: it selects the real tier's label and tolerates its taint."""
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never"}
    if command:
        container["command"] = list(command)
    if port:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "nodeSelector": dict(config.REAL_NODE_SELECTOR),
            "tolerations": [dict(config.REAL_TOLERATION)],
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 2,
            "containers": [container],
        },
    }


def pod_log(run_id: str, namespace: str, pod: str, container: str | None = None) -> str:
    """A container's log as `kubectl logs` would print it, read from the node's files (the API
    server cannot reach a kubelet inside the namespace). The latest restart's; '' if none yet."""
    files = sorted(
        config.run_nodes_dir(run_id).glob(
            f"n*/pod-logs/{namespace}_{pod}_*/{container or '*'}/*.log"
        ),
        key=lambda path: (path.stat().st_mtime, path.name),
    )
    if not files:
        return ""
    # CRI log lines: "<time> <stream> <F|P> <text>"; P marks a partial line continued next.
    out = []
    for line in files[-1].read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + ("" if parts[2] == "P" else "\n"))
    return "".join(out)
