"""Operator benchmark: time from apply to Ready for 1, 100 and 1000 ModelDeployments at once.

A fresh local control plane (no Prometheus, no process runner: kwok simulates the server pods,
which the operator labels with a benchmark-only app name) and one operator process. For each size,
N ModelDeployments are created concurrently; each one's apply→Ready time is from the end of its
own create call to the first poll that shows its Ready condition True, which needs every child
applied and the active slot's pods Ready. The operator's RSS and CPU time are read from /proc.

The ceiling: after the first size, the children the operator made for one ModelDeployment are
copied (no owner, another managed-by label, so the operator never sees them) and applied directly
for 1 and 100 objects at once; each copy's apply→Ready (from the end of its children's applies to
the first poll that shows its serving Deployment's pods Ready) is what this control plane can do
at all, with no operator. API requests are counted by the API server itself
(`apiserver_request_total`, by verb and resource) before and after each size, so kopf's requests
count as well as ours; the operator's share is the verbs and resources only it uses.

Usage: python bench/operator/run.py [--sizes 1,100,1000] [--ceiling-sizes 1,100]
                                    [--out bench/results/operator.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))

from modelfleet_dev.localcluster.cluster import ClusterConfig, LocalCluster  # noqa: E402
from modelfleet_dev.localcluster.nodes import NodeSpec  # noqa: E402
from modelfleet_dev.localcluster.ports import free_port  # noqa: E402

from modelfleet.operator.api import API_VERSION as API  # noqa: E402
from modelfleet.operator.api import KIND  # noqa: E402
from modelfleet.operator.kube import HttpKubeClient, KubeClient  # noqa: E402
from modelfleet.operator.kube_credentials import load_credentials  # noqa: E402

CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
)
IN_FLIGHT = 32  # concurrent create calls of the benchmark client (operator and ceiling alike)
# requests only the operator (and kopf inside it) makes; everything else is the control plane's own
# work or the benchmark's polling. APPLY is server-side apply (nobody else here uses it).
OPERATOR_REQUESTS = re.compile(
    r"^(APPLY .*|GET deployments|LIST pods|DELETE (?!pods$|namespaces$|events$).*"
    r"|(GET|PATCH|PUT) modeldeployments(/status)?)$"
)


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


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _reconcile_stats(port: int) -> dict[str, float]:
    """Count and mean duration of the operator's reconciles, from its own metrics."""
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


class ApiCounter:
    """The API server's request counters, by "VERB resource[/subresource]"."""

    def __init__(self, kubeconfig: Path) -> None:
        credentials = load_credentials(str(kubeconfig))
        headers = {"Authorization": f"Bearer {credentials.token}"} if credentials.token else {}
        self._http = httpx.AsyncClient(
            base_url=credentials.host, verify=credentials.ssl_context, headers=headers, timeout=30
        )

    async def snapshot(self) -> Counter[str]:
        text = (await self._http.get("/metrics")).text
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, value = line.rsplit(" ", 1)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            # a counter of requests: a whole number, though the text format writes a float
            counts[f"{labels.get('verb', '?')} {resource}"] += int(float(value))
        return counts

    async def close(self) -> None:
        await self._http.aclose()


def _per_object(before: Counter[str], after: Counter[str], objects: int) -> dict[str, float]:
    """Requests per object made during a run, largest first (WATCH and the poll's LIST left out)."""
    delta = {key: after[key] - before.get(key, 0) for key in after}
    rows = {
        key: round(count / objects, 2)
        for key, count in sorted(delta.items(), key=lambda item: -item[1])
        if count > 0 and not key.startswith("WATCH ")
    }
    return rows


def _operator_calls(rows: dict[str, float], events_per_object: float) -> dict[str, Any]:
    """The operator's own requests per ModelDeployment: its verbs and resources, plus its Events
    (POST events beyond what the control plane posts for the same pods in the ceiling run)."""
    mine = {key: value for key, value in rows.items() if OPERATOR_REQUESTS.match(key)}
    # the benchmark's own create of each ModelDeployment is one APPLY: not the operator's
    mine["APPLY modeldeployments"] = round(mine.get("APPLY modeldeployments", 1.0) - 1.0, 2)
    events = max(0.0, rows.get("POST events", 0.0) - events_per_object)
    mine["POST events (operator's)"] = round(events, 2)
    mine = {key: value for key, value in mine.items() if value > 0}
    return {"total": round(sum(mine.values()), 2), "by_request": mine}


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


async def _create_all(
    kube: KubeClient, groups: dict[str, list[dict[str, Any]]]
) -> dict[str, float]:
    """Apply every group's objects concurrently (IN_FLIGHT requests at most); per group key, the
    time its last apply returned."""
    created: dict[str, float] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(obj: dict[str, Any]) -> None:
        async with gate:
            await kube.apply(obj, force=False)

    async def group(key: str, objects: list[dict[str, Any]]) -> None:
        await asyncio.gather(*(one(obj) for obj in objects))
        created[key] = time.monotonic()

    await asyncio.gather(*(group(key, objects) for key, objects in groups.items()))
    return created


async def _wait(
    poll: Any, namespaces: Iterable[str], created: dict[str, float], deadline_s: float
) -> dict[str, float]:
    """Poll each namespace until every created key is ready (or the deadline passes)."""
    ready: dict[str, float] = {}
    deadline = time.monotonic() + deadline_s
    while len(ready) < len(created) and time.monotonic() < deadline:
        for namespace in namespaces:
            for key in await poll(namespace):
                ready.setdefault(key, time.monotonic())
        await asyncio.sleep(0.2)
    return {key: at for key, at in ready.items() if key in created}


def _summary(
    size: int, started: float, created: dict[str, float], ready: dict[str, float]
) -> dict[str, Any]:
    durations = [ready[key] - created[key] for key in ready]
    return {
        "count": size,
        "ready": len(ready),
        "p50": round(statistics.median(durations), 3) if durations else None,
        "p99": round(_percentile(durations, 0.99), 3) if durations else None,
        "max": round(max(durations), 3) if durations else None,
        "all_ready_s": round(max(ready.values()) - started, 3) if ready else None,
    }


def _namespaces(prefix: str, size: int) -> list[str]:
    return [f"{prefix}-{size}-{i}" for i in range(max(1, size // 100))]


async def _run_size(
    kube: KubeClient, cluster: LocalCluster, counter: ApiCounter, size: int, deadline_s: float
) -> tuple[dict[str, Any], dict[str, float]]:
    namespaces = _namespaces("bench", size)
    for namespace in namespaces:
        cluster.kubectl("create", "namespace", namespace)
    groups = {
        f"{namespaces[i % len(namespaces)]}/md-{i}": [
            _manifest(f"md-{i}", namespaces[i % len(namespaces)])
        ]
        for i in range(size)
    }

    async def poll(namespace: str) -> list[str]:
        return [
            f"{namespace}/{obj['metadata']['name']}"
            for obj in await kube.list(API, KIND, namespace)
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in obj.get("status", {}).get("conditions", [])
            )
        ]

    load_at_start = _load()
    before = await counter.snapshot()
    started = time.monotonic()
    created = await _create_all(kube, groups)
    ready = await _wait(poll, namespaces, created, deadline_s)
    await asyncio.sleep(2)  # the last status writes and events land
    rows = _per_object(before, await counter.snapshot(), size)
    result = {
        **_summary(size, started, created, ready),
        "load_average_1m_at_start": load_at_start,
        "operator_events_by_reason": await _operator_events(kube, namespaces),
    }
    print(json.dumps(result), flush=True)
    return result, rows


async def _operator_events(kube: KubeClient, namespaces: list[str]) -> dict[str, int]:
    """The Events the operator posted on these ModelDeployments, counted by reason."""
    reasons: Counter[str] = Counter()
    for namespace in namespaces:
        for event in await kube.list("v1", "Event", namespace):
            if event.get("source", {}).get("component") == "modelfleet-operator":
                reasons[event.get("reason", "?")] += event.get("count", 1)
    return dict(reasons.most_common())


def _template(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live children of one ModelDeployment as plain objects: no owner, no server-set fields,
    and a managed-by label the operator does not watch."""
    out = []
    for obj in children:
        meta = obj["metadata"]
        labels = {**meta.get("labels", {}), "app.kubernetes.io/managed-by": "bench-ceiling"}
        spec = dict(obj.get("spec", {}))
        for allocated in ("clusterIP", "clusterIPs"):
            spec.pop(allocated, None)
        out.append(
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {"name": meta["name"], "labels": labels},
                "spec": spec,
            }
        )
    return out


async def _read_children(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    children = []
    for api_version, kind in CHILD_KINDS:
        for obj in await kube.list(
            api_version, kind, namespace, {"modelfleet.io/deployment": name}
        ):
            children.append({"apiVersion": api_version, "kind": kind, **obj})
    return children


async def _ceiling(
    kube: KubeClient,
    cluster: LocalCluster,
    counter: ApiCounter,
    template: list[dict[str, Any]],
    size: int,
    deadline_s: float,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The same children applied directly (no operator): apply→Ready of the serving Deployment."""
    namespace = f"ceiling-{size}"
    cluster.kubectl("create", "namespace", namespace)
    text = json.dumps(template)
    groups: dict[str, list[dict[str, Any]]] = {}
    for i in range(size):
        objects = json.loads(text.replace('"md-0', f'"ceil-{i}'))
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
        groups[f"{namespace}/ceil-{i}"] = objects

    async def poll(ns: str) -> list[str]:
        found = []
        for obj in await kube.list("apps/v1", "Deployment", ns):
            spec, status = obj.get("spec", {}), obj.get("status", {})
            if (
                spec.get("replicas", 0) > 0
                and status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
                and status.get("readyReplicas", 0) >= spec["replicas"]
            ):
                instance = obj["metadata"]["labels"]["app.kubernetes.io/instance"]
                found.append(f"{ns}/{instance}")
        return found

    load_at_start = _load()
    before = await counter.snapshot()
    started = time.monotonic()
    created = await _create_all(kube, groups)
    ready = await _wait(poll, [namespace], created, deadline_s)
    await asyncio.sleep(2)
    rows = _per_object(before, await counter.snapshot(), size)
    result = {**_summary(size, started, created, ready), "load_average_1m_at_start": load_at_start}
    print(json.dumps({"ceiling": result}), flush=True)
    # left in place: deleting a namespace of 100 Deployments kept the control plane busy for
    # minutes, while the settled copies cost it nothing (no operator watches them)
    return result, rows


async def _bench(
    cluster: LocalCluster, sizes: list[int], ceiling_sizes: list[int], deadline_s: float
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
        "MODELFLEET_OPERATOR_POD_APP_NAME": "modelfleet-server-simulated",
        "MODELFLEET_OPERATOR_METRICS_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_HEALTH_PORT": str(free_port()),
        "MODELFLEET_OPERATOR_BIND_HOST": "127.0.0.1",
        "MODELFLEET_OPERATOR_LOG_LEVEL": os.environ.get("BENCH_OPERATOR_LOG_LEVEL", "WARNING"),
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-operator-", suffix=".log", delete=False)  # noqa: SIM115
    operator = subprocess.Popen(  # noqa: ASYNC220 (started once, before any measurement)
        [str(Path(sys.executable).parent / "modelfleet"), "operator", "--standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    print(f"operator pid {operator.pid}, log {log.name}", flush=True)
    # a loaded shared machine has made single API calls take over 30 s: wait, do not fail
    kube = HttpKubeClient(load_credentials(str(cluster.kubeconfig)), timeout=180)
    counter = ApiCounter(cluster.kubeconfig)
    try:
        await asyncio.sleep(3)
        rss_idle, cpu_before = _proc_stats(operator.pid)
        results: dict[str, Any] = {}
        requests: dict[str, Any] = {}
        ceilings: dict[str, Any] = {}
        ceiling_requests: dict[str, Any] = {}
        rss_by_managed: dict[str, float] = {}
        managed = 0
        for index, size in enumerate(sizes):
            results[str(size)], requests[str(size)] = await _run_size(
                kube, cluster, counter, size, deadline_s
            )
            managed += size
            rss_by_managed[str(managed)] = round(_proc_stats(operator.pid)[0], 1)
            if index == 0 and ceiling_sizes:
                children = await _read_children(kube, _namespaces("bench", size)[0], "md-0")
                template = _template(children)
                for ceiling_size in ceiling_sizes:
                    (
                        ceilings[str(ceiling_size)],
                        ceiling_requests[str(ceiling_size)],
                    ) = await _ceiling(kube, cluster, counter, template, ceiling_size, deadline_s)
        # settle for longer than the operator's memory-trim period: the RSS of a steady state
        await asyncio.sleep(40)
        rss, cpu_after = _proc_stats(operator.pid)
        reconciles = _reconcile_stats(int(env["MODELFLEET_OPERATOR_METRICS_PORT"]))
        events_per_object = max(
            (rows.get("POST events", 0.0) for rows in ceiling_requests.values()), default=0.0
        )
        return {
            "reconciles": reconciles,
            "apply_to_ready_s": results,
            "ceiling_apply_to_ready_s": ceilings,
            **{f"ceiling_{size}_ready_s": value for size, value in ceilings.items()},
            "operator_api_calls_per_object": {
                size: _operator_calls(rows, events_per_object) for size, rows in requests.items()
            },
            "api_requests_per_object": {"operator": requests, "ceiling": ceiling_requests},
            "managed": managed,
            "rss_mb_idle": round(rss_idle, 1),
            "rss_mb_by_managed": rss_by_managed,
            f"rss_mb_at_{managed}": round(rss, 1),
            "operator_cpu_s": round(cpu_after - cpu_before, 1),
        }
    finally:
        await counter.close()
        await kube.close()
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--ceiling-sizes", default="1,100", help="empty: no ceiling run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per size at most")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "operator.json"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    ceiling_sizes = [int(size) for size in args.ceiling_sizes.split(",") if size]
    nodes = max(3, (sum(sizes) + max(ceiling_sizes, default=0)) // 100 + 2)
    config = ClusterConfig(with_prometheus=False, with_runner=False, node_specs=_nodes(nodes))
    load_at_start = _load()
    with LocalCluster(config) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelfleet.io")
        measured = asyncio.run(_bench(cluster, sizes, ceiling_sizes, args.timeout))
    managed = sum(sizes)
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": _load(),
        },
        "command": "make bench-operator  # python bench/operator/run.py --sizes "
        + ",".join(map(str, sizes)),
        **measured,
        "rss_mb_at_1000": measured[f"rss_mb_at_{managed}"] if managed >= 1000 else None,
        "notes": "one operator process; pods simulated by kwok; each size applied at once on top "
        "of the previous sizes (so the last RSS is with every ModelDeployment managed); the "
        "ceiling applies the same children with no operator, between the first and second size; "
        "the machine is shared with other work (load averages recorded)",
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
