"""The Grafana dashboard's queries return data from a real Prometheus during a real rollout: the model
servers and the operator scraped, traffic flowing, a canary promoted (manifests/monitoring)."""

from __future__ import annotations

import json
import time
from typing import Any

from harness.dashboard import dashboard_queries, render_dashboard_query
from harness.driver import TrafficDriver
from harness.kube import kube_snapshot
from harness.rollout import apply, healthy_at, model_deployment, wait_for
from harness.stack import MODELS
from localcluster import LocalCluster

NAME = "dash"
PAYLOAD = json.loads((MODELS / "request.json").read_text())


def _wait_for_data(cluster: LocalCluster, query: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.prometheus.query(query)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_every_panel_has_data_during_a_rollout(
    cluster: LocalCluster, namespace: str, operator: Any
) -> None:
    cluster.prometheus.add_target(
        f"operator-{namespace}",
        f"127.0.0.1:{operator.metrics_port}",
        {"job": "modelfleet-operator"},
    )
    try:
        apply(cluster, namespace, model_deployment(NAME, prometheus_url=cluster.prometheus_url))
        wait_for(cluster, namespace, NAME, healthy_at("v1"), 120, "v1 Healthy")
        driver = TrafficDriver(
            kube_snapshot(cluster.api_client(), namespace, NAME),
            rps=40,
            path=f"/v2/models/{NAME}/infer",
            payload=PAYLOAD,
        )
        with driver.running():
            manifest = model_deployment(
                NAME, prometheus_url=cluster.prometheus_url, model="model-v2.txt", version="v2"
            )
            apply(cluster, namespace, manifest)
            wait_for(cluster, namespace, NAME, healthy_at("v2"), 180, "v2 promoted")
            empty = [
                query
                for query in (
                    render_dashboard_query(q, namespace, NAME) for q in dashboard_queries()
                )
                if not _wait_for_data(cluster, query, timeout=20)
            ]
        assert not empty, "panels without data:\n" + "\n".join(empty)
    finally:
        cluster.prometheus.remove_target(f"operator-{namespace}")
