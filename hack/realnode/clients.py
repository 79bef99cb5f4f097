"""Reaching what lives in the run's network namespace, from host-side tests.

- `forward(netns, host, port)`: a loopback forwarder (host 127.0.0.1:<free port> → an address
  inside the namespace: a pod IP, a ClusterIP, later the gateway's listener), by pid.
- `run_inside(netns, cmd)`: a client run inside the namespace (its network only).
- `real_pod(...)`: a Pod manifest placed on a real node (label selector and toleration).
Traffic only ever goes to loopback or to addresses inside the namespace.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from localcluster.ports import free_port
from localcluster.procs import terminate

from . import config, netns


@contextlib.contextmanager
def forward(namespace: str, host: str, port: int, timeout: float = 15.0) -> Iterator[str]:
    """Yield `127.0.0.1:<port>` forwarding to `host:port` inside `namespace`."""
    local = free_port()
    cmd = [sys.executable, "-m", "realnode.forward", "--netns", namespace, "--outward"]
    hack = str(Path(__file__).resolve().parent.parent)
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
