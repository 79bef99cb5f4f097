"""Undo benchmark: time from `kubectl modelfleet undo` to the router write, vs a revert as a rollout.

Measured on the local control plane with the real operator (`modelfleet operator` as a process),
process-backed server pods, a Prometheus, an HTTPRoute router and the traffic driver under steady
load, written to bench/results/undo.json:

- undo_s: a revision is promoted (a blue/green switch, `steps: [100]`) with `keepPrevious: 10m`,
  then `kubectl modelfleet undo` runs; the clock starts just before the command is launched (its
  own start-up included) and stops when a 20 ms poll of the HTTPRoute sees its backendRefs flipped
  to the previous slot (100 %). The top-level runs/p50/max are these.
- undo_operator_s: the operator's share of it: from the moment the command annotation is on the
  object (polled every 20 ms alongside the route) to the router write; the rest is the plugin's
  own start-up (Python imports) and its read of the object before it acts. plugin_cpu_s is the
  CPU time the plugin process used: on a loaded machine its wall time is a multiple of that.
- spec_revert_undo_s: the GitOps way: `kubectl apply` of the previous spec inside the window
  (no plugin) → the same router write.
- normal_revert_s: the same revert with nothing kept warm (`keepPrevious: 0`): the spec goes back
  to the previous revision and runs as a normal rollout (10 → 25 → 50 → 100 %, 10 s steps analysed
  every 2 s, as the e2e tests use; the default 60 s steps take six times longer); the clock runs
  from the apply to the HTTPRoute at 100 % on the reverted revision.
- failed_requests: answers the driver counted as failed over the whole benchmark (must be 0).

Usage: python bench/rollout/undo.py [--runs 5] [--revert-runs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack")]

from modelfleet_dev.harness.driver import TrafficDriver  # noqa: E402
from modelfleet_dev.harness.kube import kube_snapshot  # noqa: E402
from modelfleet_dev.harness.machine import machine as harness_machine  # noqa: E402
from modelfleet_dev.harness.operator import OperatorProcess, install_crd  # noqa: E402
from modelfleet_dev.harness.rollout import apply, healthy_at, model_deployment, wait_for  # noqa: E402
from modelfleet_dev.harness.stack import MODELS  # noqa: E402
from modelfleet_dev.localcluster import ClusterConfig, LocalCluster  # noqa: E402

NAME = "undo"
NAMESPACE = "undo-bench"
RPS = 40.0
TRAFFIC = {"gateway": {"parentRefs": [{"name": "bench"}]}}
REVERT_STEPS = (10, 25, 50, 100)
BIN = Path(sys.executable).parent


def manifest(
    cluster: LocalCluster, run: str, keep_previous: str, steps: tuple[int, ...]
) -> dict[str, Any]:
    """A revision per `run` (an env value shapes the pod), on an HTTPRoute."""
    body = model_deployment(
        NAME,
        prometheus_url=cluster.prometheus_url,
        version=run,
        env={"MODELFLEET_BENCH_RUN": run},
        replicas=1,
        steps=steps,
        step_duration="10s",
        interval="2s",
        progress_deadline="2m",
        analysis={"maxP99LatencyMs": 5000},
        traffic=TRAFFIC,
    )
    body["spec"]["rollout"]["keepPrevious"] = keep_previous
    return body


class RouteWatch:
    """Polls the HTTPRoute every 20 ms until `done(backends)` holds; keeps that moment, and the
    moment the ModelDeployment's command annotation first changed (the command delivered)."""

    def __init__(self, cluster: LocalCluster, done: Callable[[list[tuple[str, int]]], bool]):
        from kubernetes import client

        self._api = client.CustomObjectsApi(cluster.api_client())
        self._done = done
        self.at: float | None = None
        self.command_at: float | None = None
        self._command = self._command_annotation()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _command_annotation(self) -> str | None:
        md = self._read("modelfleet.io", "v1alpha1", "modeldeployments")
        notes: dict[str, str] = md["metadata"].get("annotations") or {}
        return notes.get("modelfleet.io/command")

    def _backends(self) -> list[tuple[str, int]]:
        route = self._read("gateway.networking.k8s.io", "v1", "httproutes")
        return [(r["name"], r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]]

    def _read(self, group: str, version: str, plural: str) -> dict[str, Any]:
        body = self._api.get_namespaced_custom_object(group, version, NAMESPACE, plural, NAME)
        # the client types it `object`; the API answers a JSON object
        if not isinstance(body, dict):
            raise TypeError(f"{plural}/{NAME}: expected a JSON object, got {type(body).__name__}")
        return body

    def _loop(self) -> None:
        while not self._stop.is_set():
            looked = time.time()
            if self.command_at is None and self._command_annotation() != self._command:
                self.command_at = looked
            if self._done(self._backends()):
                self.at = time.time()
                if self.command_at is None:  # command and write both landed in this one poll
                    self.command_at = looked
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait(self, timeout: float) -> float:
        self._thread.join(timeout=timeout)
        if self.at is None:
            raise RuntimeError(f"the HTTPRoute did not change within {timeout:.0f} s")
        return self.at


def _all_on(slot_service: str) -> Callable[[list[tuple[str, int]]], bool]:
    return lambda backends: backends == [(slot_service, 100)]


def _status(cluster: LocalCluster) -> dict[str, Any]:
    from modelfleet_dev.harness.rollout import read_status

    return dict(read_status(cluster, NAMESPACE, NAME))


def _promote(cluster: LocalCluster, run: str, keep_previous: str) -> dict[str, Any]:
    apply(cluster, NAMESPACE, manifest(cluster, run, keep_previous, (100,)))
    return dict(wait_for(cluster, NAMESPACE, NAME, healthy_at(run), 180, f"{run} promoted"))


def one_undo(cluster: LocalCluster, run: str, log: Callable[[str], None]) -> dict[str, float]:
    promoted = _promote(cluster, run, "10m")
    previous = promoted["previous"]
    with RouteWatch(cluster, _all_on(f"{NAME}-{previous['slot']}")) as watch:
        started = time.time()
        code, output, cpu = _run_plugin(cluster, "undo", NAME, "-n", NAMESPACE)
        if code != 0:
            raise RuntimeError(f"undo failed: {output}")
        written = watch.wait(30)
        seconds = written - started
        operator = written - (watch.command_at or started)
    wait_for(cluster, NAMESPACE, NAME, healthy_at(previous["version"]), 30, "undone")
    log(
        f"undo {run}: command → router write {seconds:.2f} s "
        f"(operator {operator:.2f} s, plugin CPU {cpu:.2f} s)"
    )
    return {"total": seconds, "operator": operator, "cpu": cpu}


def _run_plugin(cluster: LocalCluster, *args: str) -> tuple[int, str, float]:
    """Run kubectl-modelfleet; (exit code, its output, the CPU seconds that process used)."""
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [str(BIN / "kubectl-modelfleet"), *args],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _, wait_status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        output.seek(0)
        return process.returncode, output.read(), usage.ru_utime + usage.ru_stime


def one_spec_revert_undo(cluster: LocalCluster, run: str, log: Callable[[str], None]) -> float:
    """Promote `run`, then apply the previous spec again inside the window: an undo."""
    promoted = _promote(cluster, run, "10m")
    previous = promoted["previous"]
    with RouteWatch(cluster, _all_on(f"{NAME}-{previous['slot']}")) as watch:
        started = time.time()
        apply(cluster, NAMESPACE, manifest(cluster, previous["version"], "10m", (100,)))
        seconds = watch.wait(30) - started
    wait_for(cluster, NAMESPACE, NAME, healthy_at(previous["version"]), 30, "undone")
    log(f"spec revert {run} → {previous['version']} inside the window: {seconds:.2f} s")
    return seconds


def one_revert(cluster: LocalCluster, run: str, back_to: str, log: Callable[[str], None]) -> float:
    """Promote `run` keeping nothing warm, then revert the spec to `back_to`: a rollout."""
    _promote(cluster, run, "0")
    time.sleep(3)  # past scaleDownDelay: the old slot is at 0 pods, as outside the window
    idle = "green" if _status(cluster)["activeSlot"] == "blue" else "blue"
    with RouteWatch(cluster, _all_on(f"{NAME}-{idle}")) as watch:
        started = time.time()
        apply(cluster, NAMESPACE, manifest(cluster, back_to, "0", REVERT_STEPS))
        seconds = watch.wait(300) - started
    wait_for(cluster, NAMESPACE, NAME, healthy_at(back_to), 60, "reverted by a rollout")
    log(f"revert {run} → {back_to} as a rollout: {seconds:.1f} s")
    return seconds


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "runs": len(values),
        "p50": round(statistics.median(values), 3) if values else None,
        "max": round(max(values), 3) if values else None,
        "values": [round(value, 3) for value in values],
    }


def machine() -> dict[str, Any]:
    return {**harness_machine(), "load": os.getloadavg()}


def measure(cluster: LocalCluster, runs: int, revert_runs: int, work: Path, log: Any) -> Any:
    """Undo by command, undo by spec revert, then reverts as rollouts, all under steady load."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    with OperatorProcess(cluster, [NAMESPACE], work / "operator.log"):
        apply(cluster, NAMESPACE, manifest(cluster, "base", "10m", (100,)))
        wait_for(cluster, NAMESPACE, NAME, healthy_at("base"), 180, "base Healthy")
        driver = TrafficDriver(
            kube_snapshot(cluster.api_client(), NAMESPACE, NAME),
            rps=RPS,
            path=f"/v2/models/{NAME}/infer",
            payload=json.loads((MODELS / "request.json").read_text()),
        )
        with driver.running():
            undo = [one_undo(cluster, f"u{index}", log) for index in range(runs)]
            spec_undo = [one_spec_revert_undo(cluster, f"s{index}", log) for index in range(runs)]
            revert = [one_revert(cluster, f"n{index}", "base", log) for index in range(revert_runs)]
            time.sleep(1.5)
        tally = driver.snapshot_tally()
    return undo, spec_undo, revert, tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--revert-runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "undo.json")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/rollout/undo.py " + " ".join(argv or sys.argv[1:]),
    }
    with (
        tempfile.TemporaryDirectory(prefix="modelfleet-undo-") as work,
        LocalCluster(ClusterConfig(scrape_interval="2s")) as cluster,
    ):
        install_crd(cluster)
        timed, spec_undo, revert, tally = measure(
            cluster, args.runs, args.revert_runs, Path(work), log
        )
    undo = [run["total"] for run in timed]
    result.update(summary(undo))
    result["undo_s"] = {
        **summary(undo),
        "what": "kubectl modelfleet undo launched → HTTPRoute backendRefs all on the previous slot",
    }
    result["undo_operator_s"] = {
        **summary([run["operator"] for run in timed]),
        "what": "command annotation on the object → HTTPRoute written (the operator's part; "
        "polled every 20 ms, so ± one poll)",
    }
    result["plugin_cpu_s"] = summary([run["cpu"] for run in timed])
    result["spec_revert_undo_s"] = {
        **summary(spec_undo),
        "what": "kubectl apply of the previous spec inside keepPrevious → HTTPRoute written",
    }
    result["normal_revert_s"] = {
        **summary(revert),
        "what": "spec reverted with nothing warm (keepPrevious 0) → HTTPRoute 100 % on it",
        "steps": list(REVERT_STEPS),
        "stepDuration": "10s",
        "interval": "2s",
    }
    result["requests"] = tally.total()
    result["failed_requests"] = tally.failed()
    result["goal_s"] = 2.0
    result["load_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out.name}: undo p50 {result['p50']} s, max {result['max']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
