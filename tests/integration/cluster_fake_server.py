"""A stand-in model server for the process-runner tests (run as a pod's command).

Reads MODELFLEET_HOST / MODELFLEET_PORT / MODELFLEET_METRICS_PORT like `modelfleet serve`.
/v2/health/ready answers 503 until the file named by FAKE_READY_FILE exists (always 200 when
unset); /v2/health/live answers 200; the metrics port serves one counter labelled with
MODELFLEET_DEPLOYMENT. With FAKE_EXIT_CODE set it prints FAKE_STDERR to stderr and exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ready_file = os.environ.get("FAKE_READY_FILE")
        if self.path == "/v2/health/live":
            code = 200
        elif self.path == "/v2/health/ready":
            code = 200 if not ready_file or Path(ready_file).exists() else 503
        else:
            code = 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        deployment = os.environ.get("MODELFLEET_DEPLOYMENT", "")
        body = (
            f'# TYPE fake_server_up gauge\nfake_server_up{{deployment="{deployment}"}} 1\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    if "FAKE_EXIT_CODE" in os.environ:
        print(os.environ.get("FAKE_STDERR", "failing on purpose"), file=sys.stderr, flush=True)
        raise SystemExit(int(os.environ["FAKE_EXIT_CODE"]))
    host = os.environ["MODELFLEET_HOST"]
    servers = [
        ThreadingHTTPServer((host, int(os.environ["MODELFLEET_PORT"])), Health),
        ThreadingHTTPServer((host, int(os.environ["MODELFLEET_METRICS_PORT"])), Metrics),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"fake server on {host}:{os.environ['MODELFLEET_PORT']}", flush=True)
    stop.wait()
    for server in servers:
        server.shutdown()


if __name__ == "__main__":
    main()
