"""`kubectl logs`, `exec` and `port-forward` on the real tier, as on a kind cluster.

The API server runs on host loopback and the kubelets inside the run's network namespace; its
`cluster` egress goes through realnode's egress proxy (hack/modelfleet_dev/realnode/egress.py), a Unix socket
whose connections are made inside the namespace. So the API server reaches the kubelets at their
InternalIP, and a user's `kubectl logs` works unchanged.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from modelfleet_dev.realnode import install
from modelfleet_dev.realnode.cluster import RealCluster

from tests.real.conftest import RealStack
from tests.real.test_scenarios import _pods, _ready, _start_v1
from tests.real.waiting import wait_for

pytestmark = pytest.mark.slow


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _kubectl_binary() -> str:
    """The venv's kubectl, as LocalCluster.kubectl runs it."""
    beside_python = Path(sys.executable).parent / "kubectl"
    return str(beside_python) if beside_python.is_file() else shutil.which("kubectl") or "kubectl"


def _kubectl(real: RealCluster, *args: str) -> str:
    return real.control_plane.kubectl(*args).stdout


def test_kubectl_logs_of_the_operator_pod_show_its_startup(real_stack: RealStack) -> None:
    real = real_stack.real
    selector = f"app.kubernetes.io/name={install.OPERATOR_DEPLOYMENT}"
    pods = _pods(real_stack, install.OPERATOR_NAMESPACE, selector)
    assert pods
    for pod in pods:
        name = pod["metadata"]["name"]
        logs = _kubectl(real, "-n", install.OPERATOR_NAMESPACE, "logs", name)
        # the same lines the node wrote for this container
        on_node = real.pod_log(install.OPERATOR_NAMESPACE, name)
        print(f"{name}: {_first_line(logs)}")
        assert logs
        assert _first_line(logs) == _first_line(on_node)
        assert "peering 'modelfleet': this replica is" in logs
    dumped = install.operator_logs(real)  # what a failed scenario's report carries
    assert all(f"[pod/{pod['metadata']['name']}/" in dumped for pod in pods), dumped[:500]


def test_kubectl_logs_exec_and_port_forward_reach_a_model_pod(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    real = real_stack.real
    name, _ = _start_v1(real_stack, real_namespace, gateway)

    def ready_pod() -> str | None:
        found = _pods(real_stack, real_namespace, f"modelfleet.io/deployment={name}")
        return next((p["metadata"]["name"] for p in found if _ready(p)), None)

    pod: str = wait_for("a Ready model pod", ready_pod, 60)
    logs = _kubectl(real, "-n", real_namespace, "logs", pod)
    print(f"{pod}: {logs[:300]}")
    assert '"msg":"model loaded"' in logs  # the server's start-up, as it logged it
    assert _first_line(logs) == _first_line(real.pod_log(real_namespace, pod))

    ran = _kubectl(real, "-n", real_namespace, "exec", pod, "--", "python", "-c", "print(6 * 7)")
    assert ran == "42\n"

    with socket.socket() as probe:  # a free loopback port for the forward
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubectl = [_kubectl_binary(), f"--kubeconfig={real.kubeconfig}", "-n", real_namespace]
    forward_to = ["port-forward", f"pod/{pod}", f"{port}:8080", "--address=127.0.0.1"]
    with subprocess.Popen(
        [*kubectl, *forward_to], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as forward:

        def ready() -> int | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code
            except httpx.HTTPError:
                return None

        try:
            answered = wait_for("the model pod through kubectl port-forward", ready, 30)
        finally:
            forward.terminate()
            _, said = forward.communicate(timeout=10)
    assert answered == 200, said
