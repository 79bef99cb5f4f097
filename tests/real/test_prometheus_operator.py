"""The real tier's Prometheus is prometheus-operator's: it finds the slot pods through the
PodMonitor the modelfleet operator writes (realnode.prometheus, hack/modelfleet_dev/realnode/monitoring/).

- The `Prometheus` object's pod runs on the real node from localhost/prometheus:v3.5.0, created
  by the prometheus-operator Pod (a StatefulSet the object owns), answering through the Service
  in front of it. It is the tier's own (realnode.prometheus.DEFAULT_MODE); when the tier runs
  the file-SD Prometheus instead (MODELFLEET_REAL_PROMETHEUS=file-sd), this module installs
  prometheus-operator's beside it.
- A new PodMonitor reaches Prometheus' configuration within seconds, the second and third as the
  first: the config reloader re-reads the config Secret's file every 5 s (monitoring/prometheus.yaml
  says why its file watch sees only the first change).
- A ModelDeployment's slot pod becomes an active target of the scrape pool prometheus-operator
  names after the PodMonitor (`podMonitor/<namespace>/<name>/0`), and its samples carry what
  the operator's PromQL selects on: `namespace` (a target label) with the server's own
  `deployment`, `slot` and `revision`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from modelfleet_dev.realnode import prometheus
from modelfleet_dev.realnode.images import PROMETHEUS_REF

from tests.real.conftest import RealStack
from tests.real.test_scenarios import _apply, _pods, _wait, _wait_md_ready, model_deployment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def operated(real_stack: RealStack) -> str:
    """The URL of prometheus-operator's Prometheus (the stack's own in `operator` mode)."""
    if prometheus.mode() == "operator":
        return real_stack.prometheus_url
    return prometheus.start_operated(real_stack.real)


def _kubectl_json(stack: RealStack, *args: str) -> dict[str, Any]:
    done = stack.real.control_plane.kubectl(*args, "-o", "json")
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def test_prometheus_runs_from_the_prometheus_object(real_stack: RealStack, operated: str) -> None:
    ns = prometheus.NAMESPACE
    owner = _kubectl_json(real_stack, "-n", ns, "get", "prometheus", prometheus.PROMETHEUS_NAME)
    statefulset = _kubectl_json(
        real_stack, "-n", ns, "get", "statefulset", f"prometheus-{prometheus.PROMETHEUS_NAME}"
    )
    assert [ref["uid"] for ref in statefulset["metadata"]["ownerReferences"]] == [
        owner["metadata"]["uid"]
    ]
    selector = f"operator.prometheus.io/name={prometheus.PROMETHEUS_NAME}"
    pods = _pods(real_stack, ns, selector)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    assert pods[0]["spec"]["nodeName"] in real_stack.real.node_names
    images = {c["name"]: c["image"] for c in pods[0]["spec"]["containers"]}
    assert images["prometheus"] == PROMETHEUS_REF
    operator = _pods(real_stack, ns, "app.kubernetes.io/name=prometheus-operator")
    assert [p["spec"]["nodeName"] in real_stack.real.node_names for p in operator] == [True]
    assert operated == prometheus.service_url(real_stack.real)


def _prometheus_pod(stack: RealStack) -> dict[str, Any]:
    (pod,) = _pods(
        stack, prometheus.NAMESPACE, f"operator.prometheus.io/name={prometheus.PROMETHEUS_NAME}"
    )
    return pod


def test_the_config_reloader_rereads_the_config_every_5_s(
    real_stack: RealStack, operated: str
) -> None:
    spec = _prometheus_pod(real_stack)["spec"]
    reloader = next(c for c in spec["containers"] if c["name"] == "config-reloader")
    init = next(c for c in spec["initContainers"] if c["name"] == "init-config-reloader")
    assert "--watch-interval=5s" in reloader["args"], reloader["args"]

    def files(container: dict[str, Any]) -> list[str]:
        kinds = ("--config-file=", "--config-envsubst-file=", "--watched-dir=")
        return sorted(arg for arg in container["args"] if arg.startswith(kinds))

    # the patched arguments still name what prometheus-operator generates for this object
    assert files(init), init["args"]
    assert files(reloader) == files(init), (reloader["args"], init["args"])


def _pod_monitor(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"modelfleet.test/monitor": name}},
            "podMetricsEndpoints": [{"port": "metrics"}],
        },
    }


def test_each_new_podmonitor_reaches_prometheus_within_40_s(
    real_stack: RealStack, real_namespace: str, operated: str
) -> None:
    """Three PodMonitors one after another: each one's scrape pool is in Prometheus' loaded
    configuration within 40 s (prometheus-operator's Secret, the kubelet's next sync of the
    Prometheus pod, every 10-15 s, then the reloader's next re-read, every 5 s). With the
    reloader's default 3-minute re-read only the first change after a start came that fast."""
    took = []
    for name in ("first", "second", "third"):
        pool = f"podMonitor/{real_namespace}/{name}/0"

        def loaded(pool: str = pool) -> bool:
            return pool in prometheus.scrape_pools(real_stack.real, operated)

        _apply(real_stack, real_namespace, _pod_monitor(name))
        applied = time.monotonic()
        _wait(f"{pool} in Prometheus' configuration", loaded, 40, every=1)
        took.append(round(time.monotonic() - applied, 1))
    print(f"each PodMonitor in Prometheus' configuration after {took} s")


def test_podmonitor_targets_carry_the_labels_the_operator_queries(
    real_stack: RealStack, real_namespace: str, operated: str
) -> None:
    name = "fraud"
    _apply(real_stack, real_namespace, model_deployment(real_stack, name, "model.txt", "v1"))
    _wait_md_ready(real_stack, real_namespace, name)
    monitor = _kubectl_json(real_stack, "-n", real_namespace, "get", "podmonitor", name)
    slot_pods = {
        p["metadata"]["name"]: p
        for p in _pods(real_stack, real_namespace, f"modelfleet.io/deployment={name}")
    }
    assert slot_pods
    pool = f"podMonitor/{real_namespace}/{monitor['metadata']['name']}/0"

    def scraped_targets() -> list[dict[str, Any]] | None:
        active = [
            t for t in prometheus.targets(real_stack.real, operated) if t["scrapePool"] == pool
        ]
        up = [t for t in active if t["health"] == "up"]
        return up if {t["labels"]["pod"] for t in up} == set(slot_pods) else None

    targets = _wait(f"Prometheus scraping the slot pods in {pool}", scraped_targets, 60)
    for target in targets:
        pod = slot_pods[target["labels"]["pod"]]
        assert target["labels"]["namespace"] == real_namespace
        assert target["labels"]["container"] == "server"
        assert target["labels"]["instance"].startswith(f"{pod['status']['podIP']}:"), target
    # the series the analysis reads: namespace from the target, the rest from the server
    query = f'modelfleet_ready{{namespace="{real_namespace}",deployment="{name}"}} == 1'
    series = _wait(
        f"{query} in Prometheus", lambda: prometheus.query(real_stack.real, query, operated), 30
    )
    assert {s["metric"]["pod"] for s in series} == set(slot_pods)
    for sample in series:
        labels = sample["metric"]
        pod_labels = slot_pods[labels["pod"]]["metadata"]["labels"]
        assert labels["slot"] == pod_labels["modelfleet.io/slot"], labels
        assert labels["revision"] == pod_labels["modelfleet.io/revision"], labels
