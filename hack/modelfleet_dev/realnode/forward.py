"""A TCP forwarder between host loopback and the run's network namespace.

    python -m modelfleet_dev.realnode.forward --netns mf-ab12 --inward 10.240.0.1:6443 127.0.0.1:6443
        listens inside the namespace, connects to host loopback (nodes and pods → API server)
    python -m modelfleet_dev.realnode.forward --netns mf-ab12 --outward 127.0.0.1:18080 10.241.1.5:8080
        listens on host loopback, connects inside the namespace (host-side tests → pods)

A socket keeps the network namespace it was created in: the listener (or each outgoing socket)
is made while this thread is inside the namespace, everything else on the host side. Traffic
only ever goes to loopback or to addresses inside the namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable

from .netns import entered

_BUFFER = 65536


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until EOF, then pass the half-close on."""
    with contextlib.suppress(OSError):
        while data := source.recv(_BUFFER):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _serve_pair(client: socket.socket, upstream: socket.socket, target: tuple[str, int]) -> None:
    with client, upstream:
        try:
            upstream.connect(target)
        except OSError:
            return
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()


def listen(address: tuple[str, int]) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen(128)
    return server


def serve(
    server: socket.socket, target: tuple[str, int], new_upstream: Callable[[], socket.socket]
) -> None:
    """Accept forever; each connection gets an upstream socket from `new_upstream`."""
    while True:
        client, _ = server.accept()
        upstream = new_upstream()
        threading.Thread(target=_serve_pair, args=(client, upstream, target), daemon=True).start()


def _host_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.realnode.forward", description=__doc__
    )
    parser.add_argument("--netns", required=True)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--inward", action="store_true", help="listen in the namespace")
    direction.add_argument("--outward", action="store_true", help="listen on host loopback")
    parser.add_argument("listen")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listen_at, target = _address(args.listen), _address(args.target)

    def namespaced_socket() -> socket.socket:
        with entered(args.netns):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    if args.inward:
        with entered(args.netns):
            server = listen(listen_at)
        new_upstream = _host_socket
    else:
        if not listen_at[0].startswith("127."):
            parser.error("--outward listens on loopback only")
        server = listen(listen_at)
        new_upstream = namespaced_socket
    print(f"forwarding {args.listen} -> {args.target} ({args.netns})", flush=True)
    serve(server, target, new_upstream)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
