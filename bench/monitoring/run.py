"""The monitoring statistics on simulated windows: false alarms, power, detection delay.

No cluster: the pure verdict (`modelfleet.operator.monitoring.evaluate`) on windows drawn by
tests/unit/operator/monitoring_sim.py (seeded numpy; a window's bucket counts are the multinomial
of the true distribution on the baseline's edges, which is what binning that many fresh rows gives).
Writes bench/results/monitoring-stats.json; docs/monitoring.md quotes it.

- false alarms: baseline traffic, `--windows` independent windows of 16 features at each size;
  Drifting or DataQuality True counts as one; the 99.9th percentile of each figure per size;
- power: the share of windows where one feature shifted by 0.1-1 sd is flagged, per distribution;
- detection delay: a step change of one normal feature at time 0 with the window full of baseline
  traffic before it, evaluated every interval; the shifted share of the window grows as t/window.

    .venv/bin/python bench/monitoring/run.py [--windows 1000] [--trials 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module
sys.path.append(str(REPO / "hack"))

from modelfleet_dev.harness.machine import machine  # noqa: E402

from modelfleet.operator.api import MonitoringSpec  # noqa: E402
from modelfleet.operator.monitoring import evaluate  # noqa: E402
from tests.unit.operator.monitoring_sim import (  # noqa: E402
    FeatureModel,
    Population,
    sixteen_features,
)

RESULT = REPO / "bench/results/monitoring-stats.json"
BASELINE_ROWS = 20_000
SIZES = [300, 1_200, 6_000, 72_000]
SHIFTS = [0.1, 0.25, 0.5, 1.0]
POWER_KINDS = ["normal", "lognormal", "exponential", "uniform"]
INTERVAL_S = 60
WINDOWS_S = {"5m": 300, "15m": 900, "1h": 3_600}
RATES = [20, 200]
DELAY_SHIFTS = [0.25, 0.5, 1.0]
DELAY_MISSING = [0.1, 1.0]  # a feature going 10 % / 100 % missing at time 0 (none in the baseline)


def false_alarms(spec: MonitoringSpec, windows: int) -> dict[str, Any]:
    population = Population(sixteen_features(), BASELINE_ROWS, seed=1)
    out: dict[str, Any] = {}
    for rows in SIZES:
        rng = np.random.default_rng(rows)
        verdicts = [evaluate(window, spec) for window in population.windows(rng, rows, windows)]
        kinds = {m.name: m.kind for m in population.models}
        out[str(rows)] = {
            "windows": windows,
            "features": 16,
            "drifting": sum(v.drifting.status == "True" for v in verdicts),
            "data_quality": sum(v.data_quality.status == "True" for v in verdicts),
            "no_verdict": sum(v.drifting.status == "Unknown" for v in verdicts),
            "p999": {
                kind: {
                    name: round(float(np.quantile(_figures(verdicts, kinds, kind, name), 0.999)), 4)
                    for name in ("psi", "ks", "wasserstein")
                }
                for kind in sorted(set(kinds.values()))
            },
        }
    return out


def _figures(verdicts: list[Any], kinds: Mapping[str, str], kind: str, name: str) -> list[float]:
    return [getattr(f, name) or 0.0 for v in verdicts for f in v.features if kinds[f.name] == kind]


def power(spec: MonitoringSpec, windows: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in POWER_KINDS:
        population = Population([FeatureModel("f", kind)], BASELINE_ROWS, seed=2)  # type: ignore[arg-type]
        rows_out: dict[str, Any] = {}
        for shift in SHIFTS:
            for rows in SIZES[1:]:
                rng = np.random.default_rng(int(shift * 100) + rows)
                drawn = population.windows(rng, rows, windows, shifts={"f": shift})
                features = [evaluate(window, spec).features[0] for window in drawn]
                rows_out[f"{shift}sd@{rows}"] = {
                    "flagged": round(sum(bool(f.drifting) for f in features) / windows, 3),
                    "median": {
                        name: round(
                            float(np.median([getattr(f, name) or 0.0 for f in features])), 3
                        )
                        for name in ("psi", "ks", "wasserstein")
                    },
                }
        out[kind] = rows_out
    return out


def detection_delay(spec: MonitoringSpec, trials: int) -> dict[str, Any]:
    population = Population([FeatureModel("f", "normal")], BASELINE_ROWS, seed=3)
    out: dict[str, Any] = {}
    for window_name, window_s in WINDOWS_S.items():
        delays: dict[str, Any] = {}
        for shift in DELAY_SHIFTS:
            for rate in RATES:
                rng = np.random.default_rng(window_s + rate + int(shift * 100))
                seen = [
                    _first_flag(population, rng, spec, window_s, rate, shift) for _ in range(trials)
                ]
                found = [s for s in seen if s is not None]
                delays[f"{shift}sd@{rate}rps"] = {
                    "median_s": float(np.median(found)) if found else None,
                    "max_s": max(found) if found else None,
                    "missed": len(seen) - len(found),
                }
        for missing in DELAY_MISSING:
            for rate in RATES:
                rng = np.random.default_rng(window_s + rate + int(missing * 1000))
                seen = [
                    _first_flag(population, rng, spec, window_s, rate, missing=missing)
                    for _ in range(trials)
                ]
                found = [s for s in seen if s is not None]
                delays[f"{round(missing * 100)}%missing@{rate}rps"] = {
                    "median_s": float(np.median(found)) if found else None,
                    "max_s": max(found) if found else None,
                    "missed": len(seen) - len(found),
                }
        out[window_name] = delays
    return out


def _first_flag(
    population: Population,
    rng: np.random.Generator,
    spec: MonitoringSpec,
    window_s: int,
    rate: int,
    shift: float = 0.0,
    missing: float = 0.0,
    interval_s: int = INTERVAL_S,
) -> int | None:
    """Seconds from the step change to the first evaluation that flags the feature: drifting
    (`shift` sd) or, with `missing`, named by data quality. Evaluations every `interval_s`, the
    first one interval after the change."""
    for elapsed in range(interval_s, 2 * window_s + 1, interval_s):
        share = min(elapsed / window_s, 1.0)
        window = population.windows(
            rng,
            rate * window_s,
            1,
            shifts={"f": shift},
            missing={"f": share * missing},
            shifted_share=share,
        )[0]
        verdict = evaluate(window, spec)
        flagged = (
            verdict.data_quality.status == "True" if missing else verdict.drifting.status == "True"
        )
        if flagged:
            return elapsed
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    spec = MonitoringSpec()
    started = time.perf_counter()
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/monitoring/run.py " + " ".join(argv or sys.argv[1:]),
        "defaults": spec.model_dump(by_alias=True, mode="json"),
        "baseline_rows": BASELINE_ROWS,
        "features": [
            {"name": m.name, "kind": m.kind, "missing": m.missing, "out_of_range": m.out_of_range}
            for m in sixteen_features()
        ],
        "windows": args.windows,
        "false_alarms": false_alarms(spec, args.windows),
        "power": power(spec, max(args.windows // 5, 50)),
        "detect_s": detection_delay(spec, args.trials),
        "interval_s": INTERVAL_S,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("false_alarms", "detect_s")}, indent=1))


if __name__ == "__main__":
    main()
