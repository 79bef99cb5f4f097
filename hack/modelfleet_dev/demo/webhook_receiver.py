"""The demo's webhook receiver: a small HTTP server that keeps every CloudEvent POSTed to it.

Run as a process of the real tier inside its network namespace (demo/real.py starts it like the
model-files server), it answers 202 to a POST carrying `Authorization: Bearer <token>` and appends
the event, with the time it arrived, as one JSON line to a file; anything else is a 401 and is
not kept. The story reads the file (`received`). Standard library only: it starts in a blink.

    python webhook_receiver.py --bind 10.240.0.1 --port 8091 --out events.jsonl
    (the token in MODELFLEET_DEMO_WEBHOOK_TOKEN)
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_ENV = "MODELFLEET_DEMO_WEBHOOK_TOKEN"
PATH = "/hooks/modelfleet"
# a DataQuality message names each feature first: 'f9 missing 25.0 % vs 0.0 % in baseline …; f2 …'
_DEGRADED = re.compile(r"(?:^|; )(\S+) (?:missing|out of range) ")


@dataclass(frozen=True)
class Received:
    """One CloudEvent as the receiver kept it."""

    at: float  # time.time() when it arrived
    event: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type", ""))

    @property
    def condition(self) -> Mapping[str, Any]:
        return (self.event.get("data") or {}).get("condition") or {}

    def flagged(self) -> list[str]:
        """The features (and outputs) the event's figures mark as drifting or degraded."""
        data = self.event.get("data") or {}
        if self.condition.get("status") != "True":
            return []
        if self.condition.get("type") == "Drifting":
            named = [*(data.get("features") or []), *(data.get("outputs") or [])]
            return [str(item["name"]) for item in named if item.get("drifting")]
        return _DEGRADED.findall(str(self.condition.get("message", "")))

    def text(self) -> str:
        """'io.modelfleet.monitoring.drifting: Drifting True (DriftDetected), f1 and 3 more'."""
        condition = self.condition
        named = self.flagged()
        shown = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
        return (
            f"{self.type}: {condition.get('type')} {condition.get('status')} "
            f"({condition.get('reason')})" + (f", {shown}" if shown else "")
        )


def received(path: Path) -> list[Received]:
    """What the receiver kept so far, in arrival order (a line being written is skipped)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kept.append(Received(float(record["at"]), record["event"]))
    return kept


def handler(token: str, out: Path) -> type[http.server.BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != f"Bearer {token}":
                self._answer(401, b'{"error": "bearer token expected"}')
                return
            try:
                event = json.loads(body)
            except ValueError:
                self._answer(400, b'{"error": "a CloudEvent in JSON expected"}')
                return
            with lock, out.open("a") as file:
                file.write(json.dumps({"at": time.time(), "event": event}) + "\n")
            self._answer(202, b"{}")

        def do_GET(self) -> None:
            self._answer(200, b'{"receiver": "modelfleet demo"}')

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    token = os.environ[TOKEN_ENV]
    server = http.server.ThreadingHTTPServer((args.bind, args.port), handler(token, args.out))
    server.serve_forever()


if __name__ == "__main__":
    main()
