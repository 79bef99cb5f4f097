"""Measures the local control plane: cold build, warm start, memory, 100 Deployments Ready.

    PYTHONPATH=hack .venv/bin/python -m modelfleet_dev.localcluster.bench [--cold] [--starts 3]

Writes bench/results/local-cluster.json (format in DESIGN.md). `--cold` builds everything once
more with empty Go module and build caches (about 8 minutes on 2 cores, network included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelfleet_dev import HACK_DIR, REPO_DIR

from .cluster import ClusterConfig, LocalCluster

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
RESULTS = REPO_DIR / "bench" / "results" / "local-cluster.json"


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total_kb += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        pending.extend(int(child) for child in children)
    return round(total_kb / 1024, 1)


def cold_build() -> dict[str, Any]:
    """Build into empty caches (Go modules, Go build cache, our binary cache) and time it."""
    scratch = Path(tempfile.mkdtemp(prefix="modelfleet-cold-build-"))
    env = {
        **os.environ,
        "GOMODCACHE": str(scratch / "gomod"),
        "GOCACHE": str(scratch / "gocache"),
        "MODELFLEET_LOCALCLUSTER_CACHE": str(scratch / "cache"),
        "PYTHONPATH": str(HACK_DIR),
    }
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    subprocess.run(
        [sys.executable, "-m", "modelfleet_dev.localcluster", "build"], env=env, check=True
    )
    elapsed = round(time.monotonic() - started, 1)
    load_after = os.getloadavg()[0]
    subprocess.run(["go", "clean", "-modcache"], env=env, check=False)
    shutil.rmtree(scratch, ignore_errors=True)
    # The machine is shared: the load average says how much else was running meanwhile.
    return {"cold_build_s": elapsed, "cold_build_loadavg_1m": [load_before, load_after]}


def _deployments(count: int) -> str:
    items = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"d{index:03d}", "namespace": "bench"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": f"d{index:03d}"}},
                "template": {
                    "metadata": {"labels": {"app": f"d{index:03d}"}},
                    "spec": {"containers": [{"name": "main", "image": "example.invalid/app:1"}]},
                },
            },
        }
        for index in range(count)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def deployments_ready(cluster: LocalCluster, count: int = 100, timeout: float = 300) -> float:
    """Seconds from applying `count` one-replica Deployments until all report readyReplicas=1."""
    cluster.kubectl("create", "namespace", "bench")
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=_deployments(count))
    while time.monotonic() - started < timeout:
        listed = json.loads(
            cluster.kubectl("get", "deployments", "-n", "bench", "-o", "json").stdout
        )
        ready = sum(1 for d in listed["items"] if d.get("status", {}).get("readyReplicas") == 1)
        if ready == count:
            return round(time.monotonic() - started, 2)
        time.sleep(0.25)
    raise RuntimeError(f"{count} Deployments not Ready after {timeout:.0f}s")


def warm_runs(starts: int) -> dict[str, Any]:
    times = []
    result: dict[str, Any] = {}
    for run in range(starts):
        started = time.monotonic()
        with LocalCluster(ClusterConfig()) as cluster:
            times.append(round(time.monotonic() - started, 2))
            if run == starts - 1:
                procs = cluster.processes.processes
                idle = {name: rss_mb(procs[name].pid) for name in COMPONENTS}
                result["deployments_100_ready_s"] = deployments_ready(cluster)
                loaded = {name: rss_mb(procs[name].pid) for name in COMPONENTS}
                result["control_plane_rss_mb"] = round(sum(loaded.values()), 1)
                result["control_plane_rss_mb_idle"] = round(sum(idle.values()), 1)
                result["rss_mb_by_component"] = loaded
                result["prometheus_rss_mb"] = rss_mb(procs["prometheus"].pid)
    result["warm_start_s"] = statistics.median(times)
    result["warm_start_runs_s"] = times
    result["warm_loadavg_1m"] = os.getloadavg()[0]  # the machine is shared with other work
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.localcluster.bench", description=__doc__
    )
    parser.add_argument("--cold", action="store_true", help="also time a build from empty caches")
    parser.add_argument("--starts", type=int, default=3, help="warm starts to time (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(),
        },
        "command": "PYTHONPATH=hack .venv/bin/python -m modelfleet_dev.localcluster.bench"
        + (" --cold" if args.cold else ""),
    }
    if args.cold:
        result.update(cold_build())
    elif "cold_build_s" in previous:
        for key in ("cold_build_s", "cold_build_loadavg_1m", "cold_build_note"):
            if key in previous:
                result[key] = previous[key]
        result.setdefault("cold_build_note", f"from the run of {previous['date']}")
    result.update(warm_runs(args.starts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
