"""Where the operator's memory or CPU goes with N ModelDeployments (profiles, not timings).

Starts a local control plane and the operator in a child process that either traces allocations
(`--mode memory`: tracemalloc, 8 frames) or profiles its CPU time (`--mode cpu`: cProfile with
a process-time clock), creates N ModelDeployments at once, waits until they are Ready and settled,
then has the child write its largest allocation sites (by line and by file) or the functions with
the most CPU time of their own, with the RSS. Profiling slows the operator down, so the numbers
here are sizes and shares, never times to compare.

Usage: python bench/operator/profile.py [--mode memory|cpu] [--count 300] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module

from modelfleet_dev.localcluster.cluster import ClusterConfig, LocalCluster  # noqa: E402
from modelfleet_dev.localcluster.ports import free_port  # noqa: E402

from bench.operator.run import _manifest, _nodes, _proc_stats  # noqa: E402
from modelfleet.operator.api import API_VERSION as API  # noqa: E402
from modelfleet.operator.api import KIND  # noqa: E402
from modelfleet.operator.kube import HttpKubeClient, KubeClient  # noqa: E402
from modelfleet.operator.kube_credentials import load_credentials  # noqa: E402

CPU_CHILD = """
import cProfile, io, json, pstats, signal, sys, time
profile = cProfile.Profile(time.process_time)
from modelfleet.operator.process import run
from modelfleet.operator.settings import OperatorSettings

def dump(*_):
    profile.disable()
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: int(sys.argv[2])]
    def where(func):
        path, line, name = func
        return f"{path.split('site-packages/')[-1].split('lib/python3')[-1]}:{line}({name})"

    def callers(row):
        ranked = sorted(row[4].items(), key=lambda item: -item[1][2])[:3]
        return [f"{where(func)} {round(own[2], 3)}s" for func, own in ranked]

    cumulative = sorted(stats.stats.items(), key=lambda item: -item[1][3])[: int(sys.argv[2])]
    report = {
        "cpu_s": round(total, 2),
        "by_function": [
            {"function": where(func), "own_s": round(row[2], 3), "calls": row[1],
             "callers": callers(row)}
            for func, row in rows
        ],
        "by_cumulative": [
            {"function": where(func), "cumulative_s": round(row[3], 3), "calls": row[1]}
            for func, row in cumulative
        ],
    }
    with open(sys.argv[1], "w") as out:
        json.dump(report, out, indent=1)

signal.signal(signal.SIGUSR1, dump)
profile.enable()
run(OperatorSettings(peering=None))
"""

MEMORY_CHILD = """
import json, signal, sys, tracemalloc
tracemalloc.start(8)
from modelfleet.operator.process import run
from modelfleet.operator.settings import OperatorSettings

def dump(*_):
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    top = int(sys.argv[2])
    report = {
        "traced_mb": round(sum(s.size for s in snapshot.statistics("filename")) / 2**20, 1),
        "by_file": [
            {"file": str(s.traceback[0]).split("site-packages/")[-1], "kb": s.size // 1024,
             "count": s.count}
            for s in snapshot.statistics("filename")[:top]
        ],
        "by_line": [
            {"where": str(s.traceback[0]).split("site-packages/")[-1], "kb": s.size // 1024,
             "count": s.count}
            for s in snapshot.statistics("lineno")[:top]
        ],
    }
    with open(sys.argv[1], "w") as out:
        json.dump(report, out, indent=1)

signal.signal(signal.SIGUSR1, dump)
run(OperatorSettings(peering=None))
"""


async def _ready_count(kube: KubeClient, namespace: str) -> int:
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in obj.get("status", {}).get("conditions", [])
        )
        for obj in await kube.list(API, KIND, namespace)
    )


async def _profile(cluster: LocalCluster, mode: str, count: int, top: int) -> dict[str, Any]:
    report_path = Path(tempfile.mkdtemp(prefix="bench-operator-memory-")) / "report.json"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "MODELFLEET_OPERATOR_POD_APP_NAME": "modelfleet-server-simulated",
        "MODELFLEET_OPERATOR_METRICS_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_HEALTH_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_BIND_HOST": "127.0.0.1",
        "MODELFLEET_OPERATOR_LOG_LEVEL": "WARNING",
    }
    script = CPU_CHILD if mode == "cpu" else MEMORY_CHILD
    child = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is measured)
        [sys.executable, "-c", script, str(report_path), str(top)],
        env=env,
    )
    # a loaded shared machine has made single API calls take over 30 s: wait, do not fail
    kube = HttpKubeClient(load_credentials(str(cluster.kubeconfig)), timeout=180)
    try:
        namespace = "memory"
        cluster.kubectl("create", "namespace", namespace)
        await asyncio.sleep(3)
        rss_idle = _proc_stats(child.pid)[0]
        gate = asyncio.Semaphore(32)

        async def create(index: int) -> None:
            async with gate:
                await kube.apply(_manifest(f"md-{index}", namespace), force=False)

        await asyncio.gather(*(create(i) for i in range(count)))
        deadline = time.monotonic() + 900
        ready = 0
        while ready < count and time.monotonic() < deadline:
            await asyncio.sleep(2)
            ready = await _ready_count(kube, namespace)
        await asyncio.sleep(10)  # settle
        child.send_signal(signal.SIGUSR1)
        for _ in range(120):
            await asyncio.sleep(1)
            if report_path.exists():
                break
        await asyncio.sleep(1)
        rss = _proc_stats(child.pid)[0]
        traced = json.loads(report_path.read_text())
        return {
            "count": count,
            "ready": ready,
            "rss_mb_idle": round(rss_idle, 1),
            "rss_mb": round(rss, 1),
            "rss_kb_per_object": round((rss - rss_idle) * 1024 / count, 1),
            **traced,
        }
    finally:
        await kube.close()
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("memory", "cpu"), default="memory")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    config = ClusterConfig(
        with_prometheus=False, with_runner=False, node_specs=_nodes(args.count // 100 + 3)
    )
    with LocalCluster(config) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelfleet.io")
        report = asyncio.run(_profile(cluster, args.mode, args.count, args.top))
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
