"""Free loopback ports for the processes we start, chosen below the kernel's ephemeral range.

A port from `bind(0)` comes from the ephemeral range, which outgoing connections also draw from:
under load a client socket can take it between our choice and the server's bind ("address already
in use"). Ports below that range are only ever taken by someone who asks for them by number.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range where possible."""
    high = _ephemeral_low() - 1
    if high > _LOWEST:
        for _ in range(200):
            port = random.randint(_LOWEST, high)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
