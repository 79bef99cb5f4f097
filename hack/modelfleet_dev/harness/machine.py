"""What a benchmark result records about the machine it ran on (every bench/results/*.json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Cores and memory of this machine."""
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {"cores": os.cpu_count(), "memory_mb": memory_kb // 1024}
