"""A throwaway Redis on loopback (Debian's redis-server): no persistence, no config file, a
free port; for the tests and benchmarks that need a Redis shared by several server processes
(the prediction cache, shared rate limits). `with RedisServer(workdir) as redis: redis.url`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from localcluster.ports import free_port


class RedisServer:
    """One redis-server process on 127.0.0.1; its log in `workdir`."""

    def __init__(self, workdir: Path, maxmemory_mb: int = 256) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = workdir / f"redis-{self.port}.log"
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
            "no", "--dir", str(workdir), "--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy",
            "allkeys-lru", "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._stderr()}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server not answering on port {self.port} after {timeout_s} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> RedisServer:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
