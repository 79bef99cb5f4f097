"""The API server's way into the run's network namespace: an HTTP CONNECT proxy on a Unix socket.

The API server runs on host loopback; the kubelets it must call for `kubectl logs`, `exec`,
`port-forward` and the API server's proxy to pods and Services live at addresses inside the
namespace. Kubernetes' own answer for a control plane in another network is the egress selector
(`--egress-selector-config-file`, the mechanism konnectivity plugs into): its `cluster` traffic
goes through an HTTP CONNECT proxy, here one on a Unix socket (a file, so reachable from the host)
whose outgoing sockets are made inside the namespace, as a kind node's are in its container.

    python -m modelfleet_dev.realnode.egress --netns mf-ab12 <state>/egress.sock

It connects only to the namespace's own addresses (`ALLOWED`); anything else is refused with 403.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from .forward import _pump
from .netns import entered

# the nodes' and API server's addresses, the pod networks and the Service range
ALLOWED = tuple(
    ipaddress.ip_network(block) for block in ("10.240.0.0/24", "10.241.0.0/16", "10.96.0.0/16")
)
_HEAD_LIMIT = 16384


def egress_config(socket_path: Path) -> dict[str, object]:
    """The EgressSelectorConfiguration sending the API server's `cluster` traffic to the proxy."""
    return {
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": {"uds": {"udsName": str(socket_path)}},
                },
            }
        ],
    }


def write_config(directory: Path, socket_path: Path) -> Path:
    """The config file for `--egress-selector-config-file` (JSON is YAML)."""
    path = directory / "egress-selector.yaml"
    path.write_text(json.dumps(egress_config(socket_path), indent=2) + "\n")
    return path


def parse_connect(head: bytes) -> tuple[str, int]:
    """(host, port) of a `CONNECT host:port HTTP/1.1` request head; ValueError if not one."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target, _ = line.split(" ", 2)
    if method != "CONNECT":
        raise ValueError(f"not a CONNECT request: {line!r}")
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def allowed(host: str) -> bool:
    """Only addresses inside the run's namespace (never a name to resolve, never elsewhere)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in block for block in ALLOWED)


def _read_head(client: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk or len(head) > _HEAD_LIMIT:
            raise ValueError("no complete request head")
        head += chunk
    return head


def _serve(client: socket.socket, netns: str) -> None:
    with client:
        try:
            host, port = parse_connect(_read_head(client))
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return
        if not allowed(host):
            with contextlib.suppress(OSError):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            return
        with entered(netns):
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with upstream:
            try:
                upstream.settimeout(10)
                upstream.connect((host, port))
                upstream.settimeout(None)
            except OSError:
                with contextlib.suppress(OSError):
                    client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


def serve(socket_path: Path, netns: str) -> None:
    """Accept on the Unix socket forever, one thread per tunnel."""
    socket_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    server.listen(128)
    print(f"egress proxy on {socket_path} into {netns}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, netns), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.realnode.egress", description=__doc__
    )
    parser.add_argument("--netns", required=True)
    parser.add_argument("socket", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.socket, args.netns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
