"""Silent-bug benchmark: how long a wrong-but-healthy model gets traffic, with and without the
model-aware gates.

The canary is examples/models/model-permuted.txt (v1's data with its features permuted: every
answer 200 and fast, its prediction distribution like v1's) rolled out over v1 (model.txt) on the
real harness: local control plane, Prometheus scraping every 2 s, `modelfleet operator` as a process,
process-backed server pods, the traffic driver sending varied rows through the live HTTPRoute
weights (and its mirror in the shadow mode). Each run in a fresh namespace with its own operator.

Modes (each `--runs` times):
- `gated`: error, p99, drift (PSI ≤ 0.2) and paired (agreement ≥ 90 % on examples/models/
  reference.csv) gates; live steps 10 → 25 → 50 → 100 %.
- `gated_shadow`: the same, after a shadow step mirroring 100 % of live traffic to the canary.
- `without_model_gates`: error and p99 gates only, as a generic progressive-delivery tool has them.
Times are from the canary's first traffic (first live weight, or the start of the mirror; seen by
polling the status every 0.2 s) to the end of its rollout (rolled back, or promoted).

Usage: python bench/rollout/model_aware.py [--runs 3] [--modes gated,gated_shadow,without_model_gates]
Writes bench/results/model-aware.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "hack")]

from modelfleet_dev.harness.gateway import install_gateway  # noqa: E402
from modelfleet_dev.harness.kube import kube_snapshot  # noqa: E402
from modelfleet_dev.harness.machine import machine  # noqa: E402
from modelfleet_dev.harness.model_aware import (  # noqa: E402
    POD_ADDRESS_ANNOTATION,
    VariedRowsDriver,
    model_aware_analysis,
    row_payloads,
)
from modelfleet_dev.harness.operator import OperatorProcess, install_crd  # noqa: E402
from modelfleet_dev.harness.rollout import (  # noqa: E402
    apply,
    healthy_at,
    model_deployment,
    read_status,
    wait_for,
)
from modelfleet_dev.localcluster import ClusterConfig, LocalCluster  # noqa: E402

NAME = "bench"
RPS = 60.0
ROWS_PER_REQUEST = 32
SCRAPE = "2s"
INTERVAL, STEP_DURATION, SHADOW = "5s", "20s", "20s"
TRAFFIC = {"gateway": {"parentRefs": [{"name": "bench"}]}}
GENERIC = {"maxErrorRate": 0.01, "maxP99LatencyMs": 5000, "minRequests": 50}
GATES = model_aware_analysis(max_prediction_drift=0.2, min_drift_samples=1000, min_agreement=0.9)
MODES: dict[str, dict[str, Any]] = {
    "gated": {"analysis": {**GENERIC, **GATES}},
    "gated_shadow": {
        "analysis": {**GENERIC, **GATES},
        "shadow": {"duration": SHADOW, "percent": 100},
    },
    "without_model_gates": {"analysis": dict(GENERIC)},
}


def manifest(cluster: LocalCluster, mode: str, model: str, version: str) -> dict[str, Any]:
    body = model_deployment(
        NAME,
        prometheus_url=cluster.prometheus_url,
        model=model,
        version=version,
        replicas=1,
        step_duration=STEP_DURATION,
        interval=INTERVAL,
        progress_deadline="5m",
        analysis=MODES[mode]["analysis"],
        traffic=TRAFFIC,
    )
    if "shadow" in MODES[mode]:
        body["spec"]["rollout"]["shadow"] = MODES[mode]["shadow"]
    return body


def one_run(
    cluster: LocalCluster, mode: str, run: int, work: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    namespace = f"silent-{mode.replace('_', '-')}-{run}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        with OperatorProcess(cluster, [namespace], work / f"operator-{namespace}.log"):
            # a class that lists the mirror features, or the operator refuses the shadow step
            install_gateway(cluster.api_client(), namespace, "bench", "modelfleet-bench")
            apply(cluster, namespace, manifest(cluster, mode, "model.txt", "v1"))
            wait_for(cluster, namespace, NAME, healthy_at("v1"), 180, f"{namespace} v1 Healthy")
            driver = VariedRowsDriver(
                kube_snapshot(cluster.api_client(), namespace, NAME),
                rps=RPS,
                path=f"/v2/models/{NAME}/infer",
                payloads=row_payloads(rows=ROWS_PER_REQUEST, seed=run),
                seed=run,
            )
            with driver.running():
                time.sleep(3)  # both slots' baselines in Prometheus
                apply(cluster, namespace, manifest(cluster, mode, "model-permuted.txt", "bug"))
                result = _follow(cluster, namespace, timeout=300)
            tally = driver.snapshot_tally()
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    result["failed_requests"] = tally.failed()
    result["requests"] = tally.total()
    log(
        f"[{mode}] run {run}: {result['outcome']} {result.get('seconds')} s after first traffic"
        f" ({result['message']})"
    )
    return result


def _follow(cluster: LocalCluster, namespace: str, timeout: float) -> dict[str, Any]:
    """Poll the status: first traffic (live weight or mirror) → the rollout's end."""
    first: float | None = None
    first_kind = None
    max_weight = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(cluster, namespace, NAME)
        now = time.monotonic()
        canary = status.get("canary") or {}
        if canary.get("version") == "bug":
            weight, mirror = int(canary.get("weight") or 0), int(canary.get("mirror") or 0)
            max_weight = max(max_weight, weight)
            if first is None and (weight or mirror):
                first, first_kind = now, "mirror" if mirror else "live"
        last = (status.get("history") or [{}])[0]
        if last.get("version") == "bug" and last.get("outcome"):
            return {
                "outcome": last["outcome"],
                "promoted": last["outcome"] == "Promoted",
                "seconds": round(now - first, 1) if first is not None else None,
                "first_traffic": first_kind,
                "max_live_weight": max_weight if last["outcome"] != "Promoted" else 100,
                "message": last.get("message", ""),
            }
        time.sleep(0.2)
    return {"outcome": "Stuck", "promoted": False, "seconds": None, "message": "timed out"}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(r["seconds"] for r in runs if r.get("seconds") is not None)
    outcomes: dict[str, int] = {}
    for r in runs:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        "runs": len(runs),
        "outcomes": outcomes,
        "promoted": sum(1 for r in runs if r.get("promoted")),
        "seconds": {
            "p50": round(statistics.median(times), 1) if times else None,
            "max": times[-1] if times else None,
            "values": times,
        },
        "failed_requests": sum(r.get("failed_requests", 0) for r in runs),
        "details": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "model-aware.json")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    os.environ.update(POD_ADDRESS_ANNOTATION)  # the operator processes inherit it
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/rollout/model_aware.py " + " ".join(argv or sys.argv[1:]),
        "canary": "examples/models/model-permuted.txt over model.txt (silent bug)",
        "settings": {
            "interval": INTERVAL,
            "stepDuration": STEP_DURATION,
            "steps": [10, 25, 50, 100],
            "shadow": MODES["gated_shadow"]["shadow"],
            "scrape_interval": SCRAPE,
            "rps": RPS,
            "rows_per_request": ROWS_PER_REQUEST,
            # the reference rows' file:// URI is an absolute path of this machine: name the file
            "gates": {**GATES, "replay": {"referenceUri": "examples/models/reference.csv"}},
            "generic": GENERIC,
            "router": "gateway (HTTPRoute weights and RequestMirror)",
        },
        "seconds_mean": "from the canary's first traffic (live weight or mirror) to the end of "
        "its rollout: rolled back (gated modes) or promoted (without_model_gates)",
    }
    with (
        tempfile.TemporaryDirectory(prefix="modelfleet-bench-") as work,
        LocalCluster(ClusterConfig(scrape_interval=SCRAPE)) as cluster,
    ):
        install_crd(cluster)
        for mode in modes:
            log(f"measuring {mode}")
            runs = [one_run(cluster, mode, run, Path(work), log) for run in range(1, args.runs + 1)]
            result[mode] = summarise(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
