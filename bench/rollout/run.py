"""Rollback benchmark: detection time and false rollbacks, modelfleet vs the anchors' defaults.

Two parts, both written to bench/results/rollout.json:

1. simulated (`simulate.py`): the error-rate rules alone under Poisson noise, thousands of runs.
2. measured: the real harness — local control plane, Prometheus scraping every 5 s, `modelfleet
   operator` as a process, process-backed server pods, and the traffic driver following the live
   weights of an HTTPRoute (so a 10 % step is 10 % of the requests):
   - detection, one run after the other at 200 rps: a healthy v0, then canaries with 5 % injected
     5xx; detect_s = from the first moment the canary gets live traffic (its errors begin) to its
     weight back at 0, both as the driver saw the router objects.
   - false rollbacks, in parallel namespaces at 20 rps: canaries with 0.3 % injected 5xx against a
     1 % limit, each run to its end (promoted or rolled back).
   Each with modelfleet's settings (10 s interval, Wilson rule) and with the anchors' defaults
   (60 s interval, Argo-style raw ratio of the last minute as a PromQL check, failureLimit 0).

Usage: python bench/rollout/run.py [--detect-runs 5] [--healthy-runs 20] [--parallel 10]
                                   [--sim-runs 2000] [--simulate-only] [--skip-anchor]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack")]
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module

from modelfleet_dev.harness.driver import TrafficDriver  # noqa: E402
from modelfleet_dev.harness.kube import kube_snapshot  # noqa: E402
from modelfleet_dev.harness.machine import machine  # noqa: E402
from modelfleet_dev.harness.operator import OperatorProcess, install_crd  # noqa: E402
from modelfleet_dev.harness.rollout import (  # noqa: E402
    apply,
    healthy_at,
    model_deployment,
    read_status,
    wait_for,
)
from modelfleet_dev.harness.stack import MODELS  # noqa: E402
from modelfleet_dev.localcluster import ClusterConfig, LocalCluster  # noqa: E402

from bench.rollout.simulate import simulate  # noqa: E402

NAME = "bench"
RPS_DETECT = 200.0  # the canary gets 20 rps at 10 %: the design's detection setting
RPS_HEALTHY = 20.0  # the canary gets 2 rps at 10 %: where raw ratios roll back good releases
# An HTTPRoute, so that 10 % is 10 % (one stable pod makes a replica ratio 50 %).
TRAFFIC = {"gateway": {"parentRefs": [{"name": "bench"}]}}
SCRAPE = "5s"
RAW_RATIO = (
    '(sum(increase(modelfleet_requests_total{{{sel},code=~"5.."}}[1m])) or vector(0))'
    " / sum(increase(modelfleet_requests_total{{{sel}}}[1m]))"
)
SELECTOR = 'namespace="{{namespace}}",deployment="{{name}}",slot="{{slot}}",revision="{{revision}}"'


@dataclass(frozen=True)
class Settings:
    label: str
    interval: str
    step_duration: str
    analysis: dict[str, Any]
    run_timeout_s: float


# p99 is held out of this benchmark (a loaded 2-core machine is not a latency test): 5 s limit.
LATENCY = {"maxP99LatencyMs": 5000}
OURS = Settings("modelfleet", "10s", "30s", dict(LATENCY), 300)
ANCHOR = Settings(
    "anchor_defaults",
    "60s",
    "60s",
    {
        # The raw ratio decides alone: the Wilson rule and minRequests are switched off.
        **LATENCY,
        "maxErrorRate": 0.99,
        "minRequests": 1,
        "metrics": [{"name": "error-ratio", "query": RAW_RATIO.format(sel=SELECTOR), "max": 0.01}],
    },
    600,
)


@dataclass
class Results:
    detect_s: list[float] = field(default_factory=list)
    detect_messages: list[str] = field(default_factory=list)
    undetected: int = 0
    healthy_runs: int = 0
    rollbacks: int = 0
    stuck: int = 0
    rollback_messages: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self, settings: Settings) -> dict[str, Any]:
        values = sorted(self.detect_s)
        return {
            "detect_s": {
                "runs": len(values) + self.undetected,
                "p50": round(statistics.median(values), 1) if values else None,
                "max": round(max(values), 1) if values else None,
                "values": [round(v, 1) for v in values],
                "undetected": self.undetected,
                "example_message": self.detect_messages[0] if self.detect_messages else None,
            },
            "false_rollbacks": {
                "runs": self.healthy_runs,
                "rollbacks": self.rollbacks,
                "stuck": self.stuck,
                "messages": self.rollback_messages,
            },
            "settings": {
                "interval": settings.interval,
                "stepDuration": settings.step_duration,
                "steps": [10, 25, 50, 100],
                "scrape_interval": SCRAPE,
                "router": "gateway (HTTPRoute weights)",
                "rps_detect": RPS_DETECT,
                "rps_healthy": RPS_HEALTHY,
                **settings.analysis,
            },
            "source": "measured on the local control plane with the real operator",
        }


def manifest(
    cluster: LocalCluster, settings: Settings, run: str, error_rate: float
) -> dict[str, Any]:
    env = {"MODELFLEET_BENCH_RUN": run}  # a new value is a new revision: a new rollout
    if error_rate:
        env["MODELFLEET_FAULT_ERROR_RATE"] = str(error_rate)
    return model_deployment(
        NAME,
        prometheus_url=cluster.prometheus_url,
        version=run,
        env=env,
        replicas=1,
        step_duration=settings.step_duration,
        interval=settings.interval,
        progress_deadline="5m",
        analysis=settings.analysis,
        traffic=TRAFFIC,
    )


def one_namespace(
    cluster: LocalCluster,
    namespace: str,
    settings: Settings,
    jobs: list[float],
    results: Results,
    log: Callable[[str], None],
    rps: float,
) -> None:
    """Run the jobs (error rates) one after the other in one namespace, under `rps` of load."""
    apply(cluster, namespace, manifest(cluster, settings, "v0", 0.0))
    wait_for(cluster, namespace, NAME, healthy_at("v0"), 180, "first version Healthy")
    payload = json.loads((MODELS / "request.json").read_text())
    driver = TrafficDriver(
        kube_snapshot(cluster.api_client(), namespace, NAME),
        rps=rps,
        path=f"/v2/models/{NAME}/infer",
        payload=payload,
        seed=hash(namespace) % 1000,
    )
    with driver.running():
        for index, error_rate in enumerate(jobs):
            run = f"r{index + 1}"
            before = read_status(cluster, namespace, NAME)
            canary_slot = "green" if before.get("activeSlot") == "blue" else "blue"
            started = time.time()
            apply(cluster, namespace, manifest(cluster, settings, run, error_rate))
            try:
                status = wait_for(
                    cluster,
                    namespace,
                    NAME,
                    _ended(run),
                    settings.run_timeout_s,
                    f"{namespace} {run}",
                )
            except AssertionError:
                status = {}
            time.sleep(1.5)  # let the driver see the final weights
            shares = [(at, s) for at, s in driver.snapshot_tally().shares if at >= started]
            _record(results, settings, namespace, run, error_rate, status, shares, canary_slot, log)
            time.sleep(3)  # let a rolled-back canary drain before the next run


def _ended(run: str) -> Callable[[Any], bool]:
    """`wait_for`'s predicate: this run has its history entry."""
    return lambda status: _outcome(status, run) is not None


def _outcome(status: Any, run: str) -> dict[str, Any] | None:
    """This run's history entry once it ended (the status before the apply still shows the last)."""
    history = status.get("history") or []
    if history and history[0].get("version") == run:
        return dict(history[0])
    return None


def _record(
    results: Results,
    settings: Settings,
    namespace: str,
    run: str,
    error_rate: float,
    status: Any,
    shares: list[tuple[float, dict[str, float]]],
    canary_slot: str,
    log: Callable[[str], None],
) -> None:
    ended = _outcome(status, run) if status else None
    phase = {"Promoted": "Healthy", "RolledBack": "Degraded"}.get(
        ended["outcome"] if ended else "", "Stuck"
    )
    message = ended.get("message", "") if ended else ""
    with results.lock:
        if error_rate >= 0.05:
            onset = next((at for at, s in shares if s.get(canary_slot, 0) > 0), None)
            back = next(
                (at for at, s in shares if onset and at > onset and not s.get(canary_slot)),
                None,
            )
            if phase == "Degraded" and onset and back:
                results.detect_s.append(back - onset)
                results.detect_messages.append(message)
                log(
                    f"[{settings.label}] {namespace} {run}: rolled back {back - onset:.1f} s after onset"
                )
            else:
                results.undetected += 1
                log(f"[{settings.label}] {namespace} {run}: NOT detected ({phase}: {message})")
        else:
            results.healthy_runs += 1
            if phase == "Degraded":
                results.rollbacks += 1
                results.rollback_messages.append(message)
            elif phase == "Stuck":
                results.stuck += 1
            log(f"[{settings.label}] {namespace} {run}: healthy canary → {phase} {message}")


def measure(
    cluster: LocalCluster,
    settings: Settings,
    detect_runs: int,
    healthy_runs: int,
    parallel: int,
    work_dir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Detection runs one after the other at RPS_DETECT; healthy runs in `parallel` lanes."""
    prefix = settings.label.replace("_", "-")
    healthy = [[0.003] * len(range(i, healthy_runs, parallel)) for i in range(parallel)]
    phases = [([f"{prefix}-detect"], [[0.05] * detect_runs], RPS_DETECT)]
    lanes = [lane for lane in healthy if lane]
    phases.append(([f"{prefix}-{i}" for i in range(len(lanes))], lanes, RPS_HEALTHY))
    results = Results()
    for namespaces, jobs, rps in phases:
        for namespace in namespaces:
            cluster.kubectl("create", "namespace", namespace)
        log_path = work_dir / f"operator-{namespaces[0]}.log"
        with OperatorProcess(cluster, namespaces, log_path):
            threads = [
                threading.Thread(
                    target=one_namespace,
                    args=(cluster, namespace, settings, lane, results, log, rps),
                    daemon=True,
                )
                for namespace, lane in zip(namespaces, jobs, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for namespace in namespaces:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return results.summary(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detect-runs", type=int, default=5)
    parser.add_argument("--healthy-runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--sim-runs", type=int, default=2000)
    parser.add_argument("--simulate-only", action="store_true")
    parser.add_argument("--skip-anchor", action="store_true", help="only modelfleet's settings")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rollout.json")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/rollout/run.py " + " ".join(argv or sys.argv[1:]),
    }
    log("simulating the rules")
    result["simulated"] = simulate(args.sim_runs, seed=1, progress=log)
    if not args.simulate_only:
        with (
            tempfile.TemporaryDirectory(prefix="modelfleet-bench-") as work,
            LocalCluster(ClusterConfig(scrape_interval=SCRAPE)) as cluster,
        ):
            install_crd(cluster)
            for settings in (OURS,) if args.skip_anchor else (OURS, ANCHOR):
                log(f"measuring {settings.label}")
                summary = measure(
                    cluster,
                    settings,
                    args.detect_runs,
                    args.healthy_runs,
                    args.parallel,
                    Path(work),
                    log,
                )
                if settings is OURS:
                    result.update(summary)
                else:
                    result["anchor_defaults"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
