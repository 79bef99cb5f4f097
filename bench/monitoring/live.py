"""Model monitoring measured on real servers and a real Prometheus (issue #15, Speed).

The e2e setup of tests/e2e/test_monitoring.py: the local control plane, `modelfleet operator` as a
process, process-backed server pods of the example LightGBM model (16 features) holding the
baseline that test writes (20,000 N(0, 1) rows), and Prometheus scraping every 2 s. Four
ModelDeployments of one replica each get fresh N(0, 1) rows, one row a request, each stream from
a process of its own: `shift-20` and `shift-200` (20 and 200 req/s) see f5, f8 and f11 move by
0.25, 0.5 and 1 sd at once after BASELINE_S (features are independent, so each shift has its own
onset on one stream), `calm-20` and `calm-200` get baseline rows throughout.

The operator's own read and verdict (`monitor_read.PrometheusWindowReader` and
`monitor_loop.judge_window`, window 5m) are then evaluated at every second of that one recording,
at past timestamps (an instant query at t answers what a live look at t read, once the scrape is
ingested):
- false alarms: every window holding only baseline rows (the calm streams, the shift streams before
  the onset); Drifting or DataQuality True is one. Neighbouring windows overlap (one second apart),
  so they are not independent samples: `independent_windows` says how many disjoint ones fit;
- detection delay: the operator looks every INTERVAL_S; its first look after the onset falls
  anywhere in the first interval, so each of the INTERVAL_S phases (1 s apart) is a schedule, and
  the delay is the time from the onset to the first look of that schedule whose Drifting verdict
  is True and names the feature. The simulated peer is bench/monitoring/run.py's step change on
  the same window, interval and rows a second;
- the operator's cost at 100 monitored ModelDeployments: 100 ModelDeployment objects (in a
  namespace no operator watches, their status set to the recorded pods' slot and revision) whose
  series are the real pods' scraped again 100 times through file-SD with a `deployment` target
  label (a target label wins over the server's own, which Prometheus keeps as
  `exported_deployment`) every 15 s. The operator loop's `Monitor.evaluate` (window read,
  verdict, labels' read, status GET + PATCH) runs in this process with the operator's HTTP client
  settings, after the traffic stopped: each look alone first (the CPU of each part), then
  COST_ROUNDS intervals with the 100 looks spread evenly over each, as the per-object daemons run:
  CPU seconds and Prometheus queries per ModelDeployment and interval, and Prometheus' own CPU.
  `--cost-interval` sets that interval (60 s by default, the spec's default); `--cost-only 10`
  measures that part alone at another interval (one 20 req/s stream) and adds it to the results
  file's `operator_cost`.
The server's overhead at 16 and 64 features is bench/server/run.py --baseline-overhead's, copied
from bench/results/server.json with its date.

    PYTHONPATH=hack .venv/bin/python bench/monitoring/live.py [--cost-interval 60] [--cost-only 10]
Writes bench/results/monitoring.json; about 17 minutes on 2 cores (--cost-only: 7).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack")]
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module

from modelfleet_dev.harness.driver import TrafficDriver  # noqa: E402
from modelfleet_dev.harness.kube import kube_snapshot  # noqa: E402
from modelfleet_dev.harness.machine import machine  # noqa: E402
from modelfleet_dev.harness.model_aware import FEATURES  # noqa: E402
from modelfleet_dev.harness.operator import OperatorProcess, install_crd  # noqa: E402
from modelfleet_dev.harness.rollout import (  # noqa: E402
    apply,
    healthy_at,
    model_deployment,
    read_status,
    wait_for,
)
from modelfleet_dev.localcluster import ClusterConfig, LocalCluster  # noqa: E402

from bench.monitoring.run import _first_flag  # noqa: E402
from modelfleet.operator.api import API_VERSION, KIND, MonitoringSpec  # noqa: E402
from modelfleet.operator.feedback_read import PrometheusFeedbackReader  # noqa: E402
from modelfleet.operator.kube import HttpKubeClient  # noqa: E402
from modelfleet.operator.monitor_loop import Monitor, MonitorDeps, judge_window  # noqa: E402
from modelfleet.operator.monitor_read import PrometheusWindowReader, Slot  # noqa: E402
from modelfleet.operator.prometheus import PrometheusError  # noqa: E402
from tests.e2e.test_monitoring import BASELINE_ROWS, _write_baseline  # noqa: E402
from tests.unit.operator.monitoring_sim import FeatureModel, Population  # noqa: E402

RESULT = REPO / "bench/results/monitoring.json"
SERVER_RESULT = REPO / "bench/results/server.json"
NAMESPACE = "monitoring-live"
COST_NAMESPACE = "monitoring-cost"
SCRAPE = "2s"  # 1 s scrapes timed out at times on a loaded machine (stale series)
WINDOW_S = 300
INTERVAL_S = 10
RATES = (20, 200)
SHIFTS = {"f5": 0.25, "f8": 0.5, "f11": 1.0}  # features the example model ignores (it uses f0-f3)
BASELINE_S = 370  # traffic before the onset: the window fills, then ~60 s of baseline windows
SHIFT_S = 300
SETTLE_S = 5  # after the first traffic, before the first window starts (pods scraped)
INGEST_S = 3  # a position is evaluated once Prometheus has its scrape
COST_DEPLOYMENTS = 100
COST_SCRAPE = "15s"
COST_ROUNDS = 3
COST_WARM_S = 60  # --cost-only: the copies scraped this long before the looks
SIMULATED_TRIALS = 20
CONCURRENT_LOOKS = 8
UNREADABLE = "Unreadable"  # Prometheus did not answer that look


@dataclass(frozen=True)
class Look:
    """The operator's verdict on one window ending at `at` (unix seconds)."""

    at: float
    drifting: str  # the Drifting condition's status
    data_quality: str
    flagged: frozenset[str]  # features whose figures say drifting
    rows: float
    reason: str = ""  # the Drifting condition's reason


# --- the pure parts (tests/unit/test_bench_monitoring_live.py) --------------------------------


def positions(onset: float, before_s: float, after_s: float) -> list[float]:
    """Window ends one second apart, on a grid through the onset."""
    return [onset + k for k in range(-int(before_s), int(after_s) + 1)]


def detection_delay(
    looks: Sequence[Look], onset: float, feature: str, interval_s: int
) -> dict[str, Any]:
    """Per phase of the operator's schedule (first look 1..interval_s s after the onset), the
    seconds to the first look whose Drifting verdict is True and names `feature`."""
    flagged = {
        round(look.at - onset)
        for look in looks
        if look.at > onset and look.drifting == "True" and feature in look.flagged
    }
    seen = {round(look.at - onset) for look in looks if look.at > onset}
    delays: list[int] = []
    missed = 0
    for phase in range(1, interval_s + 1):
        schedule = [t for t in range(phase, max(seen, default=0) + 1, interval_s) if t in seen]
        first = next((t for t in schedule if t in flagged), None)
        if first is None:
            missed += 1
        else:
            delays.append(first)
    return {
        "median_s": statistics.median(delays) if delays else None,
        "min_s": min(delays) if delays else None,
        "max_s": max(delays) if delays else None,
        "phases": interval_s,
        "missed": missed,
        "first_flagged_second": min(flagged) if flagged else None,
    }


def false_alarms(looks: Iterable[Look], expected: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Windows where either condition is True for a reason other than the `expected` features."""
    counted = list(looks)
    return {
        "windows": len(counted),
        "drifting": sum(
            look.drifting == "True" and bool(look.flagged - expected) for look in counted
        ),
        "data_quality": sum(look.data_quality == "True" for look in counted),
        "no_verdict": sum(look.drifting == "Unknown" for look in counted),
        "unreadable": sum(look.drifting == UNREADABLE for look in counted),
        "no_verdict_reasons": dict(
            Counter(look.reason for look in counted if look.drifting == "Unknown")
        ),
        "rows_median": statistics.median(look.rows for look in counted) if counted else None,
    }


def alarms(tallies: Sequence[dict[str, Any]]) -> int:
    return sum(t["drifting"] + t["data_quality"] for t in tallies)


def simulated_delay(shift: float, rate: int, trials: int) -> dict[str, Any]:
    """bench/monitoring/run.py's step change on the same window, interval and rows a second."""
    population = Population([FeatureModel("f", "normal")], BASELINE_ROWS, seed=3)
    rng = np.random.default_rng(WINDOW_S + rate + int(shift * 100))
    spec = MonitoringSpec.model_validate({"interval": f"{INTERVAL_S}s", "window": f"{WINDOW_S}s"})
    seen = [
        _first_flag(population, rng, spec, WINDOW_S, rate, shift, interval_s=INTERVAL_S)
        for _ in range(trials)
    ]
    found = [s for s in seen if s is not None]
    return {
        "median_s": float(np.median(found)) if found else None,
        "max_s": max(found) if found else None,
        "missed": len(seen) - len(found),
        "trials": trials,
    }


def key(shift: float, rate: int) -> str:
    return f"{shift}sd@{rate}rps"


def server_overhead(server: dict[str, Any]) -> dict[str, Any]:
    """The server's baseline-histogram overhead from bench/results/server.json."""
    measured = server["baseline_overhead"]
    return {
        "source": "bench/results/server.json baseline_overhead",
        "date": measured["date"],
        "command": measured["command"],
        **{
            f"{features}_features": {
                "overhead_per_request": figures["overhead_per_request"],
                "overhead_per_row_256": figures["overhead_per_row_256"],
                "extra_us_per_request": figures["in_process"]["extra_us_per_request"],
            }
            for features, figures in measured["features"].items()
        },
    }


# --- traffic ----------------------------------------------------------------------------------


class FreshRowsDriver(TrafficDriver):
    """The harness driver sending one fresh N(0, 1) row a request, `shifts` (feature index → sd)
    added; drawn in the driver's own loop, so never from a finite pool."""

    def __init__(self, *args: Any, seed: int, **kw: Any) -> None:
        self._rows = random.Random(seed)
        self.shifts: dict[int, float] = {}
        super().__init__(*args, payload=None, seed=seed, **kw)

    @property
    def _payload(self) -> Any:  # read once per request by TrafficDriver._send
        shifts = self.shifts
        row = [round(self._rows.gauss(0.0, 1.0) + shifts.get(i, 0.0), 6) for i in range(FEATURES)]
        return {
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, FEATURES], "data": row}]
        }

    @_payload.setter
    def _payload(self, value: Any) -> None:
        pass


def monitoring(baseline: Path) -> dict[str, Any]:
    return {"baselineUri": baseline.as_uri(), "interval": f"{INTERVAL_S}s", "window": "5m"}


def deploy(cluster: LocalCluster, name: str, baseline: Path) -> dict[str, Any]:
    manifest = model_deployment(name, prometheus_url=cluster.prometheus_url, replicas=1)
    manifest["spec"]["monitoring"] = monitoring(baseline)
    apply(cluster, NAMESPACE, manifest)
    return manifest


# --- evaluation -------------------------------------------------------------------------------


async def look(
    reader: PrometheusWindowReader, spec: MonitoringSpec, target: Slot, at: float
) -> Look:
    counts = await reader.read(target, WINDOW_S, at)
    verdict = judge_window(counts, spec, target, dt.datetime.fromtimestamp(at, dt.UTC))
    features = verdict.figures.features if verdict.figures is not None else []
    return Look(
        at,
        verdict.drifting.status,
        verdict.data_quality.status,
        frozenset(f.name for f in features if f.drifting),
        counts.rows,
        verdict.drifting.reason,
    )


async def evaluate_all(
    url: str, spec: MonitoringSpec, targets: dict[str, Slot], grid: list[float]
) -> dict[str, list[Look]]:
    """Every stream's window at every grid position, each once Prometheus has it."""
    found: dict[str, list[Look]] = {name: [] for name in targets}
    gate = asyncio.Semaphore(CONCURRENT_LOOKS)
    async with httpx.AsyncClient() as client:
        reader = PrometheusWindowReader(client, url, timeout_s=30.0)

        async def one(name: str, at: float) -> None:
            async with gate:
                try:
                    found[name].append(await look(reader, spec, targets[name], at))
                except PrometheusError:  # as the loop says it: Unknown, counted apart
                    found[name].append(Look(at, UNREADABLE, UNREADABLE, frozenset(), 0.0))

        for at in grid:
            await asyncio.sleep(max(0.0, at + INGEST_S - time.time()))
            await asyncio.gather(*(one(name, at) for name in targets))
    for looks in found.values():
        looks.sort(key=lambda x: x.at)
    return found


# --- the operator's cost at 100 ModelDeployments ----------------------------------------------


def add_copies(cluster: LocalCluster, pods: list[dict[str, Any]]) -> list[str]:
    """COST_DEPLOYMENTS scrape targets, each a real pod's metrics under another deployment name."""
    assert cluster.prometheus is not None
    names = [f"cost-{i:03d}" for i in range(COST_DEPLOYMENTS)]
    for i, name in enumerate(names):
        pod = pods[i % len(pods)]
        labels = {
            "namespace": COST_NAMESPACE,
            "deployment": name,
            "pod": f"{name}-pod",
            "__scrape_interval__": COST_SCRAPE,
            "__scrape_timeout__": "10s",
        }
        cluster.prometheus.add_target(f"{COST_NAMESPACE}_{name}", pod["address"], labels)
    return names


def cost_objects(
    cluster: LocalCluster, names: list[str], pods: list[dict[str, Any]], baseline: Path
) -> None:
    """The 100 ModelDeployments (no operator watches their namespace) and their active slot."""
    cluster.kubectl("create", "namespace", COST_NAMESPACE)
    items = []
    for name in names:
        manifest = model_deployment(name, prometheus_url=cluster.prometheus_url, replicas=1)
        manifest["spec"]["monitoring"] = monitoring(baseline)
        items.append(manifest)
    cluster.kubectl(
        "apply",
        "-n",
        COST_NAMESPACE,
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": items}),
    )

    async def activate() -> None:
        kube = HttpKubeClient.from_environment(str(cluster.kubeconfig))
        try:
            for i, name in enumerate(names):
                pod = pods[i % len(pods)]
                status = {"activeSlot": pod["slot"], "activeRevision": pod["revision"]}
                await kube.patch_status(API_VERSION, KIND, COST_NAMESPACE, name, status)
        finally:
            await kube.close()

    asyncio.run(activate())


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counted(logging.Handler):
    """Counts the loop's warnings that the labels could not be read (a timed-out query)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.unread = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.unread += "labels not read" in record.getMessage()


async def operator_cost(
    cluster: LocalCluster, names: list[str], interval_s: int = INTERVAL_S
) -> dict[str, Any]:
    """The loop's looks for 100 ModelDeployments: once one after another, each part's CPU apart;
    then COST_ROUNDS intervals with the looks spread over each, as the per-object daemons run."""
    queries = {"prometheus": 0}

    async def count(request: httpx.Request) -> None:
        if str(request.url).startswith(cluster.prometheus_url):
            queries["prometheus"] += 1

    counted = Counted()
    logging.getLogger("modelfleet.operator.monitor_loop").addHandler(counted)
    kube = HttpKubeClient.from_environment(str(cluster.kubeconfig))
    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        deps = MonitorDeps(
            kube=kube,
            http=http,
            reader_for=lambda url: PrometheusWindowReader(http, url),
            default_prometheus_url=cluster.prometheus_url,
            judge=judge_window,
            feedback_reader_for=lambda url: PrometheusFeedbackReader(http, url),
        )
        monitors = [Monitor(deps, COST_NAMESPACE, name, lock=asyncio.Lock()) for name in names]
        bodies = [await kube.get(API_VERSION, KIND, COST_NAMESPACE, n) or {} for n in names]
        parts = await _parts(deps, monitors, bodies, queries)
        prometheus_pid = cluster.processes.processes["prometheus"].popen.pid
        queries["prometheus"], counted.unread = 0, 0
        cpu_before, prom_before = time.process_time(), process_cpu_s(prometheus_pid)
        latencies: list[float] = []

        async def staggered(i: int, monitor: Monitor, body: dict[str, Any], at: float) -> None:
            await asyncio.sleep(max(0.0, at + i * interval_s / len(names) - time.perf_counter()))
            started = time.perf_counter()
            await monitor.evaluate(body, dt.datetime.now(dt.UTC))
            latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        for round_ in range(COST_ROUNDS):
            at = began + round_ * interval_s
            await asyncio.gather(
                *(
                    staggered(i, m, b, at)
                    for i, (m, b) in enumerate(zip(monitors, bodies, strict=True))
                )
            )
        cpu = time.process_time() - cpu_before
        prometheus_cpu = process_cpu_s(prometheus_pid) - prom_before
        for monitor in monitors:
            await monitor.stop(clear=False)
    statuses = [await kube.get(API_VERSION, KIND, COST_NAMESPACE, n) for n in names]
    await kube.close()
    logging.getLogger("modelfleet.operator.monitor_loop").removeHandler(counted)
    verdicts: dict[str, int] = {}
    for body in statuses:
        for condition in (body or {}).get("status", {}).get("conditions", []):
            if condition["type"] == "Drifting":
                said = f"{condition['status']} {condition['reason']}"
                verdicts[said] = verdicts.get(said, 0) + 1
    looks = COST_ROUNDS * len(names)
    return {
        "deployments": len(names),
        "interval": f"{interval_s}s",
        "window": "5m",
        "one_after_another": parts,
        "rounds": COST_ROUNDS,
        "cpu_s_per_deployment_per_interval": round(cpu / looks, 4),
        "prometheus_queries_per_deployment_per_interval": round(queries["prometheus"] / looks, 2),
        # monitor_loop._write: a GET and a merge PATCH of the status (lastEvaluated changes)
        "kube_requests_per_deployment_per_interval": 2,
        "cpu_share_of_one_core_at_100": round(cpu / COST_ROUNDS / interval_s, 3),
        "look_seconds": {
            "p50": round(statistics.median(latencies), 3),
            "max": round(max(latencies), 3),
        },
        "labels_unread": counted.unread,
        "prometheus_cpu_s_per_deployment_per_interval": round(prometheus_cpu / looks, 4),
        "drifting_verdicts_after": verdicts,
    }


async def _parts(
    deps: MonitorDeps,
    monitors: list[Monitor],
    bodies: list[dict[str, Any]],
    queries: dict[str, int],
) -> dict[str, Any]:
    """Each look alone: the CPU of the window's read, the verdict, the labels' read, and of the
    whole `Monitor.evaluate` (those three and the status write), medians over the deployments."""
    cpu: dict[str, list[float]] = {"read": [], "verdict": [], "labels": [], "evaluate": []}
    evaluate_queries = 0
    for monitor, body in zip(monitors, bodies, strict=True):
        status = body.get("status") or {}
        target = Slot(COST_NAMESPACE, monitor.name, status["activeSlot"], status["activeRevision"])
        spec = MonitoringSpec.model_validate(body["spec"]["monitoring"])
        now = dt.datetime.now(dt.UTC)
        mark = time.process_time()
        counts = await deps.reader_for(deps.default_prometheus_url).read(
            target, WINDOW_S, now.timestamp()
        )
        cpu["read"].append(time.process_time() - mark)
        mark = time.process_time()
        judge_window(counts, spec, target, now)
        cpu["verdict"].append(time.process_time() - mark)
        mark = time.process_time()
        assert deps.feedback_reader_for is not None
        await deps.feedback_reader_for(deps.default_prometheus_url).read(
            COST_NAMESPACE, monitor.name, WINDOW_S, now.timestamp()
        )
        cpu["labels"].append(time.process_time() - mark)
        mark, before = time.process_time(), queries["prometheus"]
        await monitor.evaluate(body, now)
        cpu["evaluate"].append(time.process_time() - mark)
        evaluate_queries += queries["prometheus"] - before
    return {
        "cpu_s_median": {part: round(statistics.median(v), 4) for part, v in cpu.items()},
        "prometheus_queries_per_look": round(evaluate_queries / len(monitors), 2),
    }


# --- the run ----------------------------------------------------------------------------------


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def pods_of(cluster: LocalCluster, names: Sequence[str]) -> list[dict[str, Any]]:
    """Each stream's pod: its metrics address as Prometheus scrapes it, its slot and revision."""
    assert cluster.prometheus is not None
    pods = []
    for name in names:
        status = read_status(cluster, NAMESPACE, name)
        deadline = time.monotonic() + 60
        while not (address := _scraped(cluster, name)) and time.monotonic() < deadline:
            time.sleep(1)  # file-SD is read every second, the targets listed once scraped
        if address is None:
            raise RuntimeError(f"{name}'s pod is not a Prometheus target after 60 s")
        slot, revision = status["activeSlot"], status["activeRevision"]
        pods.append({"name": name, "address": address, "slot": slot, "revision": revision})
    return pods


def _scraped(cluster: LocalCluster, name: str) -> str | None:
    assert cluster.prometheus is not None
    return next(
        (
            t["discoveredLabels"]["__address__"]
            for t in cluster.prometheus.targets()
            if t["labels"].get("namespace") == NAMESPACE
            and t["labels"].get("pod", "").startswith(f"{name}-")
        ),
        None,
    )


def failed_scrapes_since(cluster: LocalCluster, since: float) -> dict[str, int]:
    """Scrapes of the streams' pods that failed (their series went stale for a scrape interval)."""
    assert cluster.prometheus is not None
    seconds, up = int(time.time() - since) + 1, f'up{{namespace="{NAMESPACE}"}}'
    answer = cluster.prometheus.query(
        f"count_over_time({up}[{seconds}s]) - sum_over_time({up}[{seconds}s])"
    )
    return {item["metric"].get("pod", "?"): round(float(item["value"][1])) for item in answer}


def drive(
    state_dir: str, name: str, rate: int, start_at: float, shift_at: float | None, stop_at: float
) -> dict[str, Any]:
    """One stream's traffic, in a process of its own (a GIL per stream: 200 req/s of one-row
    requests is most of a Python thread): from `start_at` to `stop_at`, shifted from `shift_at`."""
    cluster = LocalCluster(ClusterConfig(state_dir=Path(state_dir)))  # only its kubeconfig
    driver = FreshRowsDriver(
        kube_snapshot(cluster.api_client(), NAMESPACE, name),
        rps=float(rate),
        path=f"/v2/models/{name}/infer",
        seed=rate + len(name),
        max_inflight=256,
    )
    time.sleep(max(0.0, start_at - time.time()))
    switched = None
    with driver.running():
        started = time.time()
        if shift_at is not None:
            time.sleep(max(0.0, shift_at - time.time()))
            driver.shifts = {int(feature[1:]): sd for feature, sd in SHIFTS.items()}
            switched = time.time()
        time.sleep(max(0.0, stop_at - time.time()))
    tally = driver.snapshot_tally()
    return {
        "rps": round(tally.total() / (time.time() - started), 1),
        "failed": tally.failed(),
        "started": started,
        "switched": switched,
    }


def record(cluster: LocalCluster, work: Path, cost_interval_s: int) -> dict[str, Any]:
    baseline = _write_baseline(work / "baseline.csv")
    streams = {f"shift-{rate}": rate for rate in RATES} | {f"calm-{rate}": rate for rate in RATES}
    cluster.kubectl("create", "namespace", NAMESPACE)
    with OperatorProcess(cluster, [NAMESPACE], work / "operator.log"):
        for name in streams:
            deploy(cluster, name, baseline)
        for name in streams:
            wait_for(cluster, NAMESPACE, name, healthy_at("v1"), 180, f"{name} v1 Healthy")
        pods = pods_of(cluster, list(streams))
        targets = {p["name"]: Slot(NAMESPACE, p["name"], p["slot"], p["revision"]) for p in pods}
        spec = MonitoringSpec.model_validate(monitoring(baseline))
        start_at = time.time() + 20  # the drivers' processes import and connect meanwhile
        onset, stop_at = start_at + BASELINE_S, start_at + BASELINE_S + SHIFT_S
        grid = positions(onset, BASELINE_S - WINDOW_S - SETTLE_S, SHIFT_S)
        copies = add_copies(cluster, pods)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(streams), mp_context=spawn) as pool:
            futures = {
                name: pool.submit(
                    drive,
                    str(cluster.state_dir),
                    name,
                    rate,
                    start_at,
                    onset if name.startswith("shift-") else None,
                    stop_at,
                )
                for name, rate in streams.items()
            }
            log(
                f"traffic to {', '.join(streams)} from {time.strftime('%H:%M:%S', time.localtime(start_at))}"
            )
            looks = asyncio.run(evaluate_all(cluster.prometheus_url, spec, targets, grid))
            driven = {name: future.result() for name, future in futures.items()}
        failed_scrapes = failed_scrapes_since(cluster, start_at)
        log("traffic stopped; measuring the operator's cost at 100 ModelDeployments")
        try:
            cost_objects(cluster, copies, pods, baseline)
            cost = asyncio.run(operator_cost(cluster, copies, cost_interval_s))
        except Exception as error:  # the recording's figures are still written
            log(f"the cost pass failed: {error!r}")
            cost = {"error": repr(error)}
    switched = [d["switched"] for d in driven.values() if d["switched"] is not None]
    return {
        "looks": looks,
        "onset": min(switched),  # the earliest switch: no delay is measured short
        "onset_skew_s": round(max(switched) - min(switched), 3),
        "streams": streams,
        "achieved_rps": {name: d["rps"] for name, d in driven.items()},
        "failed_requests": sum(d["failed"] for d in driven.values()),
        "failed_scrapes": failed_scrapes,
        "cost": cost,
    }


def cost_only(cluster: LocalCluster, work: Path, interval_s: int) -> dict[str, Any]:
    """The cost pass alone, at another interval: one stream at 20 req/s whose pod the 100
    ModelDeployments' series copy, COST_WARM_S of it scraped before the looks begin."""
    baseline = _write_baseline(work / "baseline.csv")
    cluster.kubectl("create", "namespace", NAMESPACE)
    with OperatorProcess(cluster, [NAMESPACE], work / "operator.log"):
        deploy(cluster, "calm-20", baseline)
        wait_for(cluster, NAMESPACE, "calm-20", healthy_at("v1"), 180, "calm-20 v1 Healthy")
        pods = pods_of(cluster, ["calm-20"])
        copies = add_copies(cluster, pods)
        start_at = time.time() + 10
        stop_at = start_at + COST_WARM_S + (COST_ROUNDS + 1) * interval_s + 30
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            traffic = pool.submit(
                drive, str(cluster.state_dir), "calm-20", 20, start_at, None, stop_at
            )
            cost_objects(cluster, copies, pods, baseline)
            time.sleep(max(0.0, start_at + COST_WARM_S - time.time()))
            log(f"the cost pass at {interval_s} s")
            cost = asyncio.run(operator_cost(cluster, copies, interval_s))
            traffic.cancel()
        return cost


def summarise(recorded: dict[str, Any], trials: int) -> dict[str, Any]:
    looks: dict[str, list[Look]] = recorded["looks"]
    onset: float = recorded["onset"]
    baseline = {
        name: false_alarms(x for x in stream if x.at <= onset or name.startswith("calm-"))
        for name, stream in looks.items()
    }
    during_shift = {
        name: false_alarms((x for x in stream if x.at > onset), frozenset(SHIFTS))
        for name, stream in looks.items()
        if name.startswith("shift-")
    }
    detect: dict[str, Any] = {}
    for rate in RATES:
        for feature, shift in SHIFTS.items():
            live = detection_delay(looks[f"shift-{rate}"], onset, feature, INTERVAL_S)
            detect[key(shift, rate)] = {
                **live,
                "feature": feature,
                "simulated": simulated_delay(shift, rate, trials),
            }
    windows = sum(t["windows"] for t in baseline.values())
    return {
        "windows": windows,
        "independent_windows": sum(
            int((t["windows"] - 1) // WINDOW_S) + 1 for t in baseline.values() if t["windows"]
        ),
        "false_alarms": alarms(list(baseline.values())),
        "false_alarms_by_stream": baseline,
        "unshifted_features_during_shift": during_shift,
        "detect_s": detect,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--trials", type=int, default=SIMULATED_TRIALS)
    parser.add_argument(
        "--cost-interval",
        type=int,
        default=60,
        metavar="SECONDS",
        help="the operator's interval in the cost pass (default 60: spec.monitoring's default)",
    )
    parser.add_argument(
        "--cost-only",
        type=int,
        metavar="INTERVAL_S",
        help="only the operator's cost at this interval, added to --out's operator_cost",
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    stamp: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/monitoring/live.py " + " ".join(argv or sys.argv[1:]),
        "load_average": round(os.getloadavg()[0], 2),
    }
    with (
        tempfile.TemporaryDirectory(prefix="modelfleet-bench-") as work,
        LocalCluster(ClusterConfig(scrape_interval=SCRAPE)) as cluster,
    ):
        install_crd(cluster)
        if args.cost_only:
            cost = cost_only(cluster, Path(work), args.cost_only)
        else:
            recorded = record(cluster, Path(work), args.cost_interval)
    if args.cost_only:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
        result.setdefault("operator_cost", {})[f"{args.cost_only}s"] = {**stamp, **cost}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(cost, indent=1))
        return 0
    result = {
        **stamp,
        "setup": {
            "window": "5m",
            "interval": f"{INTERVAL_S}s",
            "scrape_interval": SCRAPE,
            "rows_per_request": 1,
            "baseline": f"{BASELINE_ROWS:,} N(0, 1) rows (tests/e2e/test_monitoring.py)",
            "streams_rps": recorded["streams"],
            "achieved_rps": recorded["achieved_rps"],
            "failed_requests": recorded["failed_requests"],
            "onset_skew_s": recorded["onset_skew_s"],
            "failed_scrapes": recorded["failed_scrapes"],
            "shifts": SHIFTS,
            "baseline_s_before_onset": BASELINE_S,
            "shift_s": SHIFT_S,
            "evaluated": "at past timestamps of one recording, one window end a second",
        },
        **summarise(recorded, args.trials),
        "server_overhead": server_overhead(json.loads(SERVER_RESULT.read_text())),
        "operator_cost": {f"{args.cost_interval}s": recorded["cost"]},
    }
    result["seconds"] = round(time.perf_counter() - began, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("windows", "false_alarms", "detect_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
