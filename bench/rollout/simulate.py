"""Simulated error-rate rules under noise: false rollbacks of healthy canaries, detection time of bad.

No cluster: Poisson traffic per second (total `rps`, the canary gets its step's weight of it),
binomial errors, steps 10/25/50/100 %. modelfleet's rule is judged by the production function
(`modelfleet.operator.analysis.judge_error_rate`), the others as their tools define them:

- modelfleet: Wilson bound (z 3.29, exact Poisson bound below 50 errors) on counts since the step
  began, Fail when its lower bound > limit, checked every `interval`.
- wilson-since-step: the same counts and z 3.29 with Wilson's own lower bound, no exact
  small-count bound: what the Poisson cap buys (Wilson overstates one or two early errors).
- wilson95-window: the plain 95 % Wilson lower bound of the trailing 60 s, ≥ 100 requests.
- raw-ratio: errors / requests of the trailing 60 s > limit (Argo Rollouts' usual analysis,
  failureLimit 0), every 10 s, and every 60 s (its default interval: the anchor's defaults).

Usage: python bench/rollout/simulate.py [--runs N] [--seed S] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from modelfleet.operator.analysis import DEFAULT_Z, judge_error_rate, wilson_interval

STEPS = (10, 25, 50, 100)
LIMIT = 0.01
MIN_REQUESTS = 100
WINDOW_S = 60
HEALTHY, BAD = 0.003, 0.05


@dataclass(frozen=True)
class Case:
    rule: str
    rps: float
    step_s: int
    interval_s: int


@dataclass
class Outcome:
    rule: str
    rps: float
    step_s: int
    interval_s: int
    healthy_runs: int
    false_rollbacks: int
    false_rollback_rate: float
    bad_runs: int
    detected: int
    detect_s_p50: float | None
    detect_s_max: float | None


def traffic(
    rng: np.random.Generator, rps: float, step_s: int, error_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Canary requests and errors per second over the four steps."""
    weights = np.repeat(np.array(STEPS, dtype=float) / 100, step_s)
    requests = rng.poisson(rps * weights)
    errors = rng.binomial(requests, error_rate)
    return requests, errors


def check_times(step_s: int, interval_s: int) -> list[tuple[int, int]]:
    """(second of the rollout, index of its step) of every look."""
    return [
        (step * step_s + k, step)
        for step in range(len(STEPS))
        for k in range(interval_s, step_s + 1, interval_s)
    ]


def first_failure(case: Case, requests: np.ndarray, errors: np.ndarray) -> int | None:
    """Second of the rollout at which the rule first says Fail, or None."""
    total_requests = np.concatenate([[0], np.cumsum(requests)])
    total_errors = np.concatenate([[0], np.cumsum(errors)])
    for at, step in check_times(case.step_s, case.interval_s):
        if case.rule in ("modelfleet", "wilson-since-step"):
            start = step * case.step_s
            n = int(total_requests[at] - total_requests[start])
            e = int(total_errors[at] - total_errors[start])
            if case.rule == "modelfleet":
                failed = judge_error_rate(e, n, LIMIT, MIN_REQUESTS).phase == "Fail"
            else:
                failed = n > 0 and wilson_interval(e, n, DEFAULT_Z)[0] > LIMIT
        else:
            start = max(0, at - WINDOW_S)
            n = int(total_requests[at] - total_requests[start])
            e = int(total_errors[at] - total_errors[start])
            failed = _window_rule(case.rule, e, n)
        if failed:
            return at
    return None


def _window_rule(rule: str, errors: int, requests: int) -> bool:
    if requests == 0:
        return False
    if rule == "raw-ratio":
        return errors / requests > LIMIT
    # wilson95-window: the plain two-sided 95 % interval's lower bound
    z = 1.96
    share = errors / requests
    centre = (share + z * z / (2 * requests)) / (1 + z * z / requests)
    half = (z / (1 + z * z / requests)) * math.sqrt(
        share * (1 - share) / requests + z * z / (4 * requests * requests)
    )
    return requests >= MIN_REQUESTS and errors > 0 and centre - half > LIMIT


def run_case(case: Case, runs: int, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    rollbacks = sum(
        first_failure(case, *traffic(rng, case.rps, case.step_s, HEALTHY)) is not None
        for _ in range(runs)
    )
    bad_runs = max(50, runs // 10)
    detections = [
        first_failure(case, *traffic(rng, case.rps, case.step_s, BAD)) for _ in range(bad_runs)
    ]
    found = [float(t) for t in detections if t is not None]
    return Outcome(
        **asdict(case),
        healthy_runs=runs,
        false_rollbacks=rollbacks,
        false_rollback_rate=round(rollbacks / runs, 4),
        bad_runs=bad_runs,
        detected=len(found),
        detect_s_p50=statistics.median(found) if found else None,
        detect_s_max=max(found) if found else None,
    )


CASES: list[Case] = [
    Case(rule, rps, step_s, interval_s)
    for rps in (20.0, 200.0)
    for step_s in (60, 300)
    for rule, interval_s in (
        ("modelfleet", 10),
        ("modelfleet", 5),
        ("wilson-since-step", 10),
        ("wilson95-window", 10),
        ("raw-ratio", 10),
        ("raw-ratio", 60),
    )
]


def simulate(runs: int, seed: int, progress: Callable[[str], None] = print) -> dict[str, object]:
    started = time.monotonic()
    outcomes = []
    for index, case in enumerate(CASES):
        outcome = run_case(case, runs, seed + index)
        progress(
            f"{case.rule:16s} rps={case.rps:5.0f} step={case.step_s:3d}s every {case.interval_s:2d}s: "
            f"false rollbacks {outcome.false_rollbacks}/{runs}, "
            f"detect p50 {outcome.detect_s_p50} s max {outcome.detect_s_max} s"
        )
        outcomes.append(asdict(outcome))
    return {
        "method": "Poisson traffic per second, binomial errors (healthy 0.3 %, bad 5 %), limit 1 %, "
        "steps 10/25/50/100 %, rps = total traffic (canary gets its weight); modelfleet's rule "
        "judged by the production judge_error_rate",
        "runs": runs,
        "seed": seed,
        "elapsed_s": round(time.monotonic() - started, 1),
        "cases": outcomes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    result = simulate(args.runs, args.seed)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
