"""The API server's egress proxy into the run's namespace (hack/modelfleet_dev/realnode/egress.py): its config,
what it accepts and what it refuses. The tunnel itself is used by tests/real/test_kubectl_logs.py."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from modelfleet_dev.localcluster import components
from modelfleet_dev.localcluster.components import Layout
from modelfleet_dev.localcluster.paths import Artifacts
from modelfleet_dev.realnode import egress, netns


def test_the_config_sends_the_cluster_traffic_to_the_socket_by_http_connect(tmp_path: Path) -> None:
    written = egress.write_config(tmp_path, tmp_path / "egress.sock")
    config = egress.egress_config(tmp_path / "egress.sock")
    assert written.read_text().startswith("{")  # JSON is YAML for the API server
    assert config["kind"] == "EgressSelectorConfiguration"
    assert config["egressSelections"] == [
        {
            "name": "cluster",
            "connection": {
                "proxyProtocol": "HTTPConnect",
                "transport": {"uds": {"udsName": str(tmp_path / "egress.sock")}},
            },
        }
    ]


@pytest.mark.parametrize(
    ("head", "target"),
    [
        (
            b"CONNECT 10.240.0.11:10250 HTTP/1.1\r\nHost: 10.240.0.11:10250\r\n\r\n",
            ("10.240.0.11", 10250),
        ),
        (b"CONNECT [10.241.1.5]:8080 HTTP/1.1\r\n\r\n", ("10.241.1.5", 8080)),
    ],
)
def test_parse_connect(head: bytes, target: tuple[str, int]) -> None:
    assert egress.parse_connect(head) == target


def test_a_request_that_is_not_connect_is_refused() -> None:
    with pytest.raises(ValueError, match="not a CONNECT"):
        egress.parse_connect(b"GET / HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        (netns.node_address(1), True),  # a kubelet
        (netns.API_ADDRESS, True),
        ("10.241.2.7", True),  # a pod
        ("10.96.0.10", True),  # a Service
        ("127.0.0.1", False),  # host loopback is not what this proxy is for
        ("192.168.1.10", False),
        ("8.8.8.8", False),
        ("node-1", False),  # never a name to resolve
    ],
)
def test_only_the_namespaces_own_addresses_are_reached(host: str, ok: bool) -> None:
    assert egress.allowed(host) is ok


@pytest.mark.parametrize(
    ("head", "answer"),
    [
        (b"CONNECT 8.8.8.8:443 HTTP/1.1\r\n\r\n", b"HTTP/1.1 403 Forbidden\r\n\r\n"),
        (b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n"),
    ],
)
def test_refusals_are_answered_before_any_connection(head: bytes, answer: bytes) -> None:
    ours, theirs = socket.socketpair()
    served = threading.Thread(target=egress._serve, args=(theirs, "no-such-netns"))
    served.start()
    with ours:
        ours.sendall(head)
        assert ours.recv(1024) == answer
    served.join(5)
    assert not served.is_alive()


@pytest.mark.parametrize("with_egress", [True, False], ids=["real tier", "kwok tier"])
def test_the_api_server_reaches_kubelets_through_the_proxy_only_on_the_real_tier(
    tmp_path: Path, with_egress: bool
) -> None:
    config = egress.write_config(tmp_path, tmp_path / "egress.sock") if with_egress else None
    ports = dict.fromkeys(components.PORT_NAMES, 1)
    layout = Layout(Artifacts(tmp_path / "build"), tmp_path / "state", ports, None, config)
    flags = [f for f in components.apiserver_command(layout) if f.startswith("--")]
    kubelet = {f.split("=", 1)[0] for f in flags if "kubelet" in f or "egress" in f}
    if with_egress:
        admin = layout.keys.client("admin")
        assert f"--egress-selector-config-file={config}" in flags
        assert f"--kubelet-client-certificate={admin.cert}" in flags
        assert f"--kubelet-client-key={admin.key}" in flags
        assert "--kubelet-preferred-address-types=InternalIP" in flags
    else:
        assert kubelet == set()
