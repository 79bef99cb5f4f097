"""Operator benchmark: time from apply to Ready for 1, 100 and 1000 ModelDeployments at once.

A fresh local control plane (no Prometheus, no process runner: kwok simulates the server pods,
which the operator labels with a benchmark-only app name) and one operator process. For each size,
N ModelDeployments are created concurrently; each one's apply→Ready time is from the end of its
own create call to the first poll that shows its Ready condition True, which needs every child
applied and the active slot's pods Ready. The operator's RSS and CPU time are read from /proc.

Usage: python bench/operator/run.py [--sizes 1,100,1000] [--out bench/results/operator.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))

from localcluster.cluster import ClusterConfig, LocalCluster, free_port  # noqa: E402
from localcluster.nodes import NodeSpec  # noqa: E402

from modelfleet.operator.kube import KubeClient  # noqa: E402

API = "modelfleet.io/v1alpha1"
KIND = "ModelDeployment"


def _nodes(count: int) -> tuple[NodeSpec, ...]:
    # kwok nodes hold 110 pods each: enough nodes for one pod per ModelDeployment
    return tuple(NodeSpec(f"kwok-bench-{i}", f"zone-{'ab'[i % 2]}") for i in range(count))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process."""
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def _reconcile_stats(port: int) -> dict[str, float]:
    """Count and mean duration of the operator's reconciles, from its own metrics."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for suffix in ("count", "sum"):
            name = f"modelfleet_operator_reconcile_duration_seconds_{suffix}"
            if line.startswith(name + " "):
                values[suffix] = float(line.split()[1])
    count = values.get("count", 0.0)
    mean_ms = 1000 * values.get("sum", 0.0) / count if count else 0.0
    return {"count": count, "mean_ms": round(mean_ms, 1)}


def _manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "s3://models/bench/v1/model.onnx", "version": "v1"},
            "replicas": 1,
            "rollout": {"steps": [100]},
        },
    }


async def _create(kube: KubeClient, objects: list[dict[str, Any]]) -> dict[str, float]:
    """Create every object concurrently; the time each create returned, by namespace/name."""
    created: dict[str, float] = {}
    gate = asyncio.Semaphore(32)

    async def one(obj: dict[str, Any]) -> None:
        async with gate:
            await kube.apply(obj, force=False)
            created[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = time.monotonic()

    await asyncio.gather(*(one(obj) for obj in objects))
    return created


async def _wait_ready(
    kube: KubeClient, namespaces: set[str], created: dict[str, float], deadline_s: float
) -> dict[str, float]:
    ready: dict[str, float] = {}
    deadline = time.monotonic() + deadline_s
    while len(ready) < len(created) and time.monotonic() < deadline:
        for namespace in namespaces:
            for obj in await kube.list(API, KIND, namespace):
                key = f"{namespace}/{obj['metadata']['name']}"
                conditions = obj.get("status", {}).get("conditions", [])
                if key not in ready and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in conditions
                ):
                    ready[key] = time.monotonic()
        await asyncio.sleep(0.2)
    return ready


async def _run_size(
    kube: KubeClient, cluster: LocalCluster, size: int, deadline_s: float
) -> dict[str, Any]:
    namespaces = [f"bench-{size}-{i}" for i in range(max(1, size // 100))]
    for namespace in namespaces:
        cluster.kubectl("create", "namespace", namespace)
    objects = [_manifest(f"md-{i}", namespaces[i % len(namespaces)]) for i in range(size)]
    started = time.monotonic()
    created = await _create(kube, objects)
    ready = await _wait_ready(kube, set(namespaces), created, deadline_s)
    durations = [ready[key] - created[key] for key in ready]
    result: dict[str, Any] = {
        "count": size,
        "ready": len(ready),
        "p50": round(statistics.median(durations), 3) if durations else None,
        "p99": round(_percentile(durations, 0.99), 3) if durations else None,
        "max": round(max(durations), 3) if durations else None,
        "all_ready_s": round(max(ready.values()) - started, 3) if ready else None,
    }
    print(json.dumps(result), flush=True)
    return result


async def _bench(cluster: LocalCluster, sizes: list[int], deadline_s: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "MODELFLEET_OPERATOR_POD_APP_NAME": "modelfleet-server-simulated",
        "MODELFLEET_OPERATOR_METRICS_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_HEALTH_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_BIND_HOST": "127.0.0.1",
        "MODELFLEET_OPERATOR_LOG_LEVEL": "WARNING",
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-operator-", suffix=".log", delete=False)  # noqa: SIM115
    operator = subprocess.Popen(  # noqa: ASYNC220 (started once, before any measurement)
        [str(Path(sys.executable).parent / "modelfleet"), "operator", "--standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    kube = KubeClient.from_environment(str(cluster.kubeconfig))
    try:
        await asyncio.sleep(3)
        rss_idle, cpu_before = _proc_stats(operator.pid)
        results: dict[str, Any] = {}
        for size in sizes:
            results[str(size)] = await _run_size(kube, cluster, size, deadline_s)
        await asyncio.sleep(5)  # settle: the resync keeps running over everything managed
        rss, cpu_after = _proc_stats(operator.pid)
        reconciles = _reconcile_stats(int(env["MODELFLEET_OPERATOR_METRICS_PORT"]))
        return {
            "reconciles": reconciles,
            "apply_to_ready_s": results,
            "managed": sum(sizes),
            "rss_mb_idle": round(rss_idle, 1),
            f"rss_mb_at_{sum(sizes)}": round(rss, 1),
            "operator_cpu_s": round(cpu_after - cpu_before, 1),
        }
    finally:
        await kube.close()
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "operator.json"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    nodes = max(3, sum(sizes) // 100 + 2)
    config = ClusterConfig(with_prometheus=False, with_runner=False, node_specs=_nodes(nodes))
    with LocalCluster(config) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelfleet.io")
        measured = asyncio.run(_bench(cluster, sizes, args.timeout))
    rss_key = f"rss_mb_at_{sum(sizes)}"
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "command": "make bench-operator  # python bench/operator/run.py --sizes "
        + ",".join(map(str, sizes)),
        **measured,
        "rss_mb_at_1000": measured[rss_key] if sum(sizes) >= 1000 else None,
        "notes": "one operator process; pods simulated by kwok; each size applied at once on top "
        "of the previous sizes (so the last RSS is with every ModelDeployment managed); "
        "the machine is shared with other work",
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
