"""The monitoring and GitOps kits on a real rollout: the Grafana dashboard's queries return data from a
real Prometheus (the model servers and the operator scraped, traffic of varied rows flowing, a canary
promoted through every gate, the model-aware ones included, so the prediction, input-quality, drift and
agreement panels have data too), and the Argo CD health check maps the real ModelDeployment objects as
it should."""

from __future__ import annotations

import json
import time
from typing import Any

from harness.argocd import argocd_health
from harness.dashboard import dashboard_queries, render_dashboard_query
from harness.kube import kube_snapshot
from harness.model_aware import (
    POD_ADDRESS_ANNOTATION,
    VariedRowsDriver,
    model_aware_analysis,
    row_payloads,
)
from harness.rollout import apply, healthy_at, model_deployment, wait_for
from localcluster import LocalCluster

NAME = "dash"
GATES = model_aware_analysis(max_prediction_drift=0.2, min_agreement=0.9, max_score_delta=0.8)


def _wait_for_data(cluster: LocalCluster, query: str, timeout: float) -> list[dict[str, Any]]:
    """The panel's query over the last 15 minutes, as Grafana plots it: the operator's drift and
    agreement gauges exist only while a canary is analysed (they are dropped when the rollout
    ends), so an instant query after the promotion would miss them."""
    deadline = time.monotonic() + timeout
    while True:
        result = cluster.prometheus.query(f"last_over_time(({query})[15m:2s])")
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def _read_object(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    done = cluster.kubectl("get", "modeldeployment", NAME, "-n", namespace, "-o", "json")
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def test_every_panel_has_data_during_a_rollout(
    cluster: LocalCluster, namespace: str, start_operator: Any
) -> None:
    operator = start_operator(namespace, env=POD_ADDRESS_ANNOTATION)
    cluster.prometheus.add_target(
        f"operator-{namespace}",
        f"127.0.0.1:{operator.metrics_port}",
        {"job": "modelfleet-operator"},
    )
    try:
        apply(cluster, namespace, model_deployment(NAME, prometheus_url=cluster.prometheus_url))
        wait_for(cluster, namespace, NAME, healthy_at("v1"), 120, "v1 Healthy")
        driver = VariedRowsDriver(
            kube_snapshot(cluster.api_client(), namespace, NAME),
            rps=40,
            path=f"/v2/models/{NAME}/infer",
            payloads=row_payloads(),
        )
        with driver.running():
            manifest = model_deployment(
                NAME,
                prometheus_url=cluster.prometheus_url,
                model="model-v2.txt",
                version="v2",
                analysis=GATES,
            )
            apply(cluster, namespace, manifest)
            wait_for(
                cluster, namespace, NAME, lambda st: st.get("canary") is not None, 60, "canary"
            )
            progressing = argocd_health(_read_object(cluster, namespace))
            wait_for(cluster, namespace, NAME, healthy_at("v2"), 180, "v2 promoted")
            healthy = argocd_health(_read_object(cluster, namespace))
            empty = [
                query
                for query in (
                    render_dashboard_query(q, namespace, NAME) for q in dashboard_queries()
                )
                if not _wait_for_data(cluster, query, timeout=20)
            ]
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert progressing[0] == "Progressing", progressing
        assert "canary v2" in progressing[1], progressing
        assert healthy[0] == "Healthy", healthy
    finally:
        cluster.prometheus.remove_target(f"operator-{namespace}")
