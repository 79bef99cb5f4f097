"""bench/monitoring/run.py runs end to end on a few windows and writes the keys docs/monitoring.md
quotes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_monitoring_run", REPO / "bench/monitoring/run.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_bench_writes_false_alarms_power_and_detection_delay(tmp_path: Path) -> None:
    out = tmp_path / "monitoring-stats.json"
    _bench().main(["--windows", "20", "--trials", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["windows"] == 20
    assert result["false_alarms"]["1200"]["drifting"] == 0
    assert result["false_alarms"]["300"]["no_verdict"] == 20
    assert result["power"]["normal"]["1.0sd@6000"]["flagged"] == 1.0
    delay = result["detect_s"]["15m"]["0.5sd@20rps"]
    assert delay["missed"] == 0
    assert 60 <= delay["median_s"] <= 600
    assert result["detect_s"]["5m"]["100%missing@200rps"]["median_s"] == 60
