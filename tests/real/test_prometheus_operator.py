"""The real tier's Prometheus is prometheus-operator's: it finds the slot pods through the
PodMonitor the modelfleet operator writes (realnode.prometheus, hack/realnode/monitoring/).

- The `Prometheus` object's pod runs on the real node from localhost/prometheus:v3.5.0, created
  by the prometheus-operator Pod (a StatefulSet the object owns), answering through the Service
  in front of it. While the tier's default is still the file-SD Prometheus
  (realnode.prometheus.DEFAULT_MODE), this module installs prometheus-operator's beside it.
- A ModelDeployment's slot pod becomes an active target of the scrape pool prometheus-operator
  names after the PodMonitor (`podMonitor/<namespace>/<name>/0`), and its samples carry what
  the operator's PromQL selects on: `namespace` (a target label) with the server's own
  `deployment`, `slot` and `revision`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from realnode import prometheus
from realnode.images import PROMETHEUS_REF

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
