"""What a server benchmark's result file records around its figures (when, on what machine,
by which command, under what load, in how long), and the writing of it."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from modelfleet_dev.harness.machine import machine


@dataclass(frozen=True)
class RunStart:
    """When a benchmark began: the monotonic clock and the machine's load average then."""

    clock: float = field(default_factory=time.monotonic)
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def write_result(out: Path, command: str, start: RunStart, figures: dict[str, Any]) -> float:
    """`out` as JSON: date, machine, command, load average at start and end, seconds taken,
    then `figures`. Returns the seconds taken."""
    seconds = round(time.monotonic() - start.clock, 1)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "cpu_model": cpu_model()},
        "command": command,
        "load_average": {
            "start": round(start.load_average, 2),
            "end": round(os.getloadavg()[0], 2),
        },
        "seconds_total": seconds,
        **figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return seconds
