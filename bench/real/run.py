"""Real-tier benchmark: rollouts and rollbacks through Traefik on a real node, as a client sees them.

Starts the real tier once (the control plane, a real kubelet node with containerd in a network
namespace, Prometheus inside it, the example models, Traefik's Gateway, the operator as a Pod
installed with `kubectl apply -k`), the way tests/real's `real_stack` does, then measures:

- rollouts: v(n) → v(n+1) through steps 10 → 25 → 50 → 100 under steady load (realnode.load)
  through Traefik. Top level: `requests`, `failed_requests` over every rollout (including each
  old slot's scale-down), `share_error_max_points` = the worst |client-measured canary share −
  weight| over the steps (each step measured from 2 s after its weight shows in status until
  0.5 s before the next one, as in S2); per-step shares under `rollouts`.
- weight_to_proxy_s: per weight change, from the moment the HTTPRoute carrying it is seen (its
  backendRefs polled every 0.1 s) to the middle of the first 1 s window of client answers whose
  canary share is within max(5, 2 standard errors) points of the new weight (windows slide by
  0.1 s from 0.5 s before the write, so a change that reaches the proxy at once reads ≈ 0 s).
- detect_s: at 200 requests/s (20 on the 10 % canary, as in the kwok tier's detection runs), a
  canary answering 5 % 5xx (MODELFLEET_FAULT_ERROR_RATE=0.05): from the client's
  first answer from the canary to the HTTPRoute giving it weight 0. Beside it, `detect_s.p50`
  of the kwok tier read from bench/results/rollout.json (another run, on the local control plane
  with process-backed pods and a simulated router).
- start_s: the stack's start with binaries and images already cached (`real_up_s` is what
  `make real-up` starts: the control plane and the node; the rest is the scenario stack).

Usage: python bench/real/run.py [--rollouts 2] [--fault-runs 2] [--rate 60] [--fault-rate 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack"), str(REPO)]

from modelfleet_dev.harness.machine import machine  # noqa: E402
from modelfleet_dev.realnode import clients, install, prometheus  # noqa: E402
from modelfleet_dev.realnode.build import build_node_binaries  # noqa: E402
from modelfleet_dev.realnode.cluster import RealCluster, RealConfig  # noqa: E402
from modelfleet_dev.realnode.images import ensure_images  # noqa: E402
from modelfleet_dev.realnode.load import Answer, Load, Summary  # noqa: E402

from tests.real.conftest import RealStack  # noqa: E402
from tests.real.test_scenarios import (  # noqa: E402
    REQUEST,
    SETTLE_S,
    _apply,
    _follow_rollout,
    _get,
    _md_path,
    _through_gateway,
    _wait,
    _wait_md_ready,
    _windows,
    model_deployment,
)

NAME = "fraud"
MODEL_FILES = ("model.txt", "model-v2.txt")  # alternated, so each version answers differently
FAULT_RATE = "0.05"
WINDOW_S = 1.0  # the client-side window a share is measured over, for weight_to_proxy
SLIDE_S = 0.1
MIN_TOLERANCE = 5.0  # points
POLL_S = 0.1  # the HTTPRoute


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"runs": 0}
    return {
        "runs": len(values),
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "values": [round(v, 2) for v in values],
    }


class RouteWatch:
    """Polls the HTTPRoute `<name>` and keeps (time, resourceVersion, {service: weight}) at each
    change of its backendRefs (monotonic times, like the load's)."""

    def __init__(self, stack: RealStack, namespace: str, name: str) -> None:
        self.path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"
        self.api = stack.real.control_plane.http()
        self.changes: list[tuple[float, str, dict[str, float]]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="route-watch", daemon=True)

    def start(self) -> RouteWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self.api.close()

    def _poll(self) -> None:
        while not self._stopping.wait(POLL_S):
            now = time.monotonic()
            try:
                route = self.api.get(self.path)
            except Exception:  # a transient API error: the next poll reads it again
                continue
            if not route:
                continue
            rules = route.get("spec", {}).get("rules") or [{}]
            backends = {
                ref["name"]: float(ref.get("weight", 1))
                for ref in rules[0].get("backendRefs") or []
            }
            if not self.changes or self.changes[-1][2] != backends:
                self.changes.append((now, route["metadata"]["resourceVersion"], backends))

    def canary_weights(self, old_service: str, since: float) -> list[tuple[float, float]]:
        """(time, canary weight %) at each change of the share not going to `old_service`."""
        out: list[tuple[float, float]] = []
        for at, _, backends in self.changes:
            total = sum(backends.values())
            weight = 100.0 * (total - backends.get(old_service, 0.0)) / total if total else 0.0
            if at >= since and (not out or out[-1][1] != weight):
                out.append((at, weight))
        return out


def _share_close(window: Summary, version: str, weight: float) -> bool:
    counted = sum(window.by_version.values())
    if counted < 10:
        return False
    share = window.share(version)
    p = weight / 100.0
    standard_error = 100.0 * math.sqrt(p * (1 - p) / counted)
    return abs(share - weight) <= max(MIN_TOLERANCE, 2 * standard_error)


def weight_to_proxy(
    answers: list[Answer], version: str, written: float, weight: float, limit: float = 15.0
) -> float | None:
    """Seconds from `written` to the middle of the first client window carrying `weight`."""
    start = written - WINDOW_S / 2
    while start < written + limit:
        window = Summary([a for a in answers if start <= a.sent < start + WINDOW_S])
        if _share_close(window, version, weight):
            return max(0.0, start + WINDOW_S / 2 - written)
        start += SLIDE_S
    return None


def start_stack(timings: dict[str, float]) -> tuple[RealCluster, RealStack]:
    started = time.monotonic()
    build_node_binaries()
    ensure_images()
    timings["cache_check_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    real = RealCluster(RealConfig()).start()
    timings["real_up_s"] = round(time.monotonic() - started, 1)
    # the node's own breakdown; images_s includes waiting for another build's lock
    timings.update({f"real_up.{key}": value for key, value in real.timings.items()})
    try:
        started = time.monotonic()
        prometheus_url = prometheus.start(real)
        timings["prometheus_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        models_url = install.serve_models(real)
        gateway = install.install_gateway(real)
        timings["gateway_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        install.install_operator(real, prometheus_url)
        timings["operator_s"] = round(time.monotonic() - started, 1)
    except BaseException:
        real.stop()
        raise
    timings["total_s"] = round(
        sum(timings[k] for k in ("real_up_s", "prometheus_s", "gateway_s", "operator_s")), 1
    )
    return real, RealStack(real, prometheus_url, models_url, gateway, dict(timings))


def new_namespace(stack: RealStack) -> str:
    name = f"bench-real-{uuid.uuid4().hex[:6]}"
    stack.real.control_plane.kubectl("create", "namespace", name)
    _wait(
        "the namespace's default ServiceAccount",
        lambda: _get(stack, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
    )
    return name


def rollout(
    stack: RealStack, namespace: str, host: str, index: int, load: Load, watch: RouteWatch
) -> dict[str, Any]:
    """One full rollout to version v<index+2>; its steps and weight_to_proxy samples."""
    version = f"v{index + 2}"
    old_slot = _get(stack, _md_path(namespace, NAME))["status"]["activeSlot"]
    began = time.monotonic()
    md = model_deployment(stack, NAME, MODEL_FILES[(index + 1) % 2], version, host)
    _apply(stack, namespace, md)
    changes = _follow_rollout(stack, namespace, NAME, old_slot, load, version=version)
    time.sleep(3)  # traffic goes on after the old slot is gone
    answers = load.answers()
    steps = []
    for weight, since, until in _windows(changes):
        window = load.summary(since + SETTLE_S, until - 0.5)
        share = window.share(version)
        steps.append(
            {
                "weight": weight,
                "share": round(share, 1),
                "error_points": round(abs(share - weight), 1),
                "requests": window.requests,
                "failed": window.failed,
            }
        )
    to_proxy = []
    for written, canary in watch.canary_weights(f"{NAME}-{old_slot}", began):
        if canary == 0:
            continue
        seconds = weight_to_proxy(answers, version, written, canary)
        to_proxy.append({"weight": canary, "s": None if seconds is None else round(seconds, 2)})
    return {"version": version, "steps": steps, "weight_to_proxy": to_proxy}


def fault_run(
    stack: RealStack, namespace: str, host: str, gateway: str, index: int, rate: float
) -> dict[str, Any]:
    """A canary answering 5 % 5xx: the client's first answer from it → its weight 0."""
    version = f"bad{index + 1}"
    old_slot = _get(stack, _md_path(namespace, NAME))["status"]["activeSlot"]
    watch = RouteWatch(stack, namespace, NAME).start()
    url = f"http://{gateway}/v2/models/{NAME}/infer"
    load = Load(url, REQUEST, rate=rate, seconds=240, workers=8, headers={"host": host}).start()
    try:
        bad = model_deployment(
            stack, NAME, "model-v2.txt", version, host, {"MODELFLEET_FAULT_ERROR_RATE": FAULT_RATE}
        )
        _apply(stack, namespace, bad)

        def rolled_back() -> dict[str, Any] | None:
            status = _get(stack, _md_path(namespace, NAME)).get("status", {})
            history = status.get("history") or [{}]
            last = history[0]  # the newest; an earlier fault run's entry is not this one's
            done = last.get("outcome") == "RolledBack" and last.get("version") == version
            return status if done else None

        status = _wait(f"{version} rolled back", rolled_back, 200)
        time.sleep(1)
    finally:
        load.stop()
        watch.stop()
    answers = load.answers()
    first = next((a.sent for a in answers if a.version == version or a.code >= 500), None)
    weights = watch.canary_weights(f"{NAME}-{old_slot}", 0.0)
    zero = next((at for at, w in weights if first is not None and at >= first and w == 0), None)
    seconds = None if first is None or zero is None else round(zero - first, 2)
    degraded: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c["type"] == "Degraded"), {}
    )
    condition = str(degraded.get("message", ""))
    log(f"{version}: detect {seconds} s; {condition}")
    return {"version": version, "detect_s": seconds, "message": condition}


def kwok_detect() -> dict[str, Any]:
    path = REPO / "bench" / "results" / "rollout.json"
    try:
        kwok = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"note": "bench/results/rollout.json is missing"}
    detect = kwok.get("detect_s", {})
    return {
        "p50": detect.get("p50"),
        "max": detect.get("max"),
        "runs": detect.get("runs"),
        "date": kwok.get("date"),
        "source": "bench/results/rollout.json (another run: local control plane, "
        "process-backed pods, the traffic driver following the HTTPRoute's weights)",
    }


def measure(stack: RealStack, args: argparse.Namespace, result: dict[str, Any]) -> None:
    namespace = new_namespace(stack)
    host = f"{namespace}.real.test"
    gw_host, _, gw_port = stack.gateway.rpartition(":")
    with clients.forward(stack.real.netns, gw_host, int(gw_port)) as gateway:
        _apply(stack, namespace, model_deployment(stack, NAME, MODEL_FILES[0], "v1", host))
        _wait_md_ready(stack, namespace, NAME)
        _wait("v1 through the Gateway", lambda: _through_gateway(gateway, host, NAME) == "v1", 60)

        url = f"http://{gateway}/v2/models/{NAME}/infer"
        watch = RouteWatch(stack, namespace, NAME).start()
        load = Load(url, REQUEST, rate=args.rate, seconds=900, headers={"host": host}).start()
        runs = []
        try:
            time.sleep(3)
            for index in range(args.rollouts):
                log(f"rollout {index + 1}/{args.rollouts}")
                runs.append(rollout(stack, namespace, host, index, load, watch))
                log(f"  steps {runs[-1]['steps']}")
                log(f"  weight_to_proxy {runs[-1]['weight_to_proxy']}")
        finally:
            summary = load.stop()
            watch.stop()
        errors = [step["error_points"] for run in runs for step in run["steps"]]
        samples = [s["s"] for run in runs for s in run["weight_to_proxy"]]
        result.update(
            {
                "requests": summary.requests,
                "failed_requests": summary.failed,
                "share_error_max_points": max(errors),
                "rate_rps": args.rate,
                "failures": summary.failures(),
                "rollouts": runs,
                "weight_to_proxy_s": {
                    **stats([s for s in samples if s is not None]),
                    "not_seen": sum(s is None for s in samples),
                },
            }
        )
        log(f"rollouts: {summary.requests} requests, {summary.failed} failed")

        faults = [
            fault_run(stack, namespace, host, gateway, index, args.fault_rate)
            for index in range(args.fault_runs)
        ]
    detected = [f["detect_s"] for f in faults if f["detect_s"] is not None]
    result["detect_s"] = {
        **stats(detected),
        "undetected": len(faults) - len(detected),
        "rate_rps": args.fault_rate,
        "example_message": faults[0]["message"] if faults else "",
        "kwok_tier": kwok_detect(),
    }
    stack.real.control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=2)
    parser.add_argument("--fault-runs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=60.0, help="requests/s in the rollouts")
    parser.add_argument(
        "--fault-rate", type=float, default=200.0, help="requests/s in the fault runs (as kwok's)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "real-rollout.json"
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {**machine(), "load_average_at_start": round(os.getloadavg()[0], 2)},
        "command": "python bench/real/run.py " + " ".join(argv or sys.argv[1:]),
    }
    timings: dict[str, float] = {}
    log("starting the real tier and its stack")
    real, stack = start_stack(timings)
    result["start_s"] = {**timings, "note": "binaries and images cached (warm)"}
    log(f"stack up: {timings}")
    try:
        measure(stack, args, result)
    finally:
        real.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
