"""The monitoring and GitOps kits on a real rollout: the Grafana dashboard's queries return data from a
real Prometheus (the model servers and the operator scraped, traffic of varied rows flowing, a canary
promoted through every gate, the model-aware ones included, and the servers counting their inputs
against a baseline the operator monitors, with labels fed back for some answers, so the prediction,
input-quality, drift, agreement, monitoring and live-accuracy panels have data too), the monitoring
alert rules join the real series as they should, and the Argo CD health check maps the real
ModelDeployment objects as it should."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from modelfleet_dev.harness.argocd import argocd_health
from modelfleet_dev.harness.dashboard import dashboard_queries, render_dashboard_query
from modelfleet_dev.harness.kube import kube_snapshot
from modelfleet_dev.harness.model_aware import (
    POD_ADDRESS_ANNOTATION,
    REFERENCE,
    ROWS_PER_REQUEST,
    VariedRowsDriver,
    model_aware_analysis,
    row_payloads,
)
from modelfleet_dev.harness.rollout import (
    apply,
    healthy_at,
    model_deployment,
    read_status,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster
from modelfleet_dev.localcluster.prometheus import Prometheus
from modelfleet_dev.localcluster.runner import LOCAL_ADDRESS, LOCAL_METRICS_ADDRESS

NAME = "dash"
GATES = model_aware_analysis(max_prediction_drift=0.2, min_agreement=0.9, max_score_delta=0.8)
# the example models' reference set (N(0, 1) rows, like the traffic) as the training baseline
MONITORING = {"baselineUri": REFERENCE.resolve().as_uri(), "interval": "2s", "window": "30s"}
RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheusrule.yaml"


def _prometheus(cluster: LocalCluster) -> Prometheus:
    assert cluster.prometheus is not None, "the e2e cluster runs Prometheus"
    return cluster.prometheus


def _wait_for_data(cluster: LocalCluster, query: str, timeout: float) -> list[dict[str, Any]]:
    """The panel's query over the last 15 minutes, as Grafana plots it: the operator's drift and
    agreement gauges exist only while a canary is analysed (they are dropped when the rollout
    ends), so an instant query after the promotion would miss them."""
    deadline = time.monotonic() + timeout
    while True:
        result = _prometheus(cluster).query(f"last_over_time(({query})[15m:2s])")
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def _read_object(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    done = cluster.kubectl("get", "modeldeployment", NAME, "-n", namespace, "-o", "json")
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def _feed_labels(cluster: LocalCluster, namespace: str) -> None:
    """Labels for answers of the active slot's first pod (class 0 for every row: the accuracy is
    whatever it is, the panels need figures), POSTed to that pod by x-request-id."""
    from kubernetes import client as k8s

    slot = read_status(cluster, namespace, NAME)["activeSlot"]
    pods = k8s.CoreV1Api(cluster.api_client()).list_namespaced_pod(
        namespace, label_selector=f"modelfleet.io/deployment={NAME},modelfleet.io/slot={slot}"
    )
    notes = next(
        annotations
        for annotations in (pod.metadata.annotations or {} for pod in pods.items if pod.metadata)
        if LOCAL_METRICS_ADDRESS in annotations
    )
    labels = []
    with httpx.Client(timeout=30) as client:
        for index, body in enumerate(row_payloads(batches=10, seed=15)):
            request_id = f"dash-{index}"
            response = client.post(
                f"http://{notes[LOCAL_ADDRESS]}/v2/models/{NAME}/infer",
                json=body,
                headers={"x-request-id": request_id},
            )
            assert response.status_code == 200, response.text
            labels.append({"id": request_id, "label": [0] * ROWS_PER_REQUEST})
        answer = client.post(
            f"http://{notes[LOCAL_METRICS_ADDRESS]}/modelfleet/v1/feedback",
            json={"labels": labels},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["unknown"] == 0, answer.json()


def _monitoring_rules() -> tuple[dict[str, str], dict[str, str]]:
    """The monitoring group's recording rules and alerts, each expression with the recording rules
    it uses written out (the test's Prometheus has no rule files)."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    rules = next(group for group in groups if group["name"] == "modelfleet.monitoring")["rules"]
    records: dict[str, str] = {}
    for rule in rules:  # a recording rule uses only those above it
        if "record" in rule:
            records[rule["record"]] = _inline(rule["expr"], records)
    alerts = {rule["alert"]: _inline(rule["expr"], records) for rule in rules if "alert" in rule}
    return records, alerts


def _inline(expr: str, records: dict[str, str]) -> str:
    # a parenthesised rule right after a bare group_left would read as its list of labels
    expr = re.sub(r"group_left(?!\s*\()", "group_left ()", expr)
    for name, body in records.items():
        expr = expr.replace(name, f"({body})")
    return expr


def _ours(cluster: LocalCluster, promql: str, namespace: str) -> list[dict[str, str]]:
    """The label sets of this test's deployment in an instant query's result."""
    result = _prometheus(cluster).query(promql)
    return [
        r["metric"]
        for r in result
        if r["metric"].get("namespace") == namespace and r["metric"].get("deployment") == NAME
    ]


def _check_monitoring_rules(cluster: LocalCluster, namespace: str) -> None:
    """On the real series of a promoted slot with a baseline, on baseline-like traffic: every
    recording rule has data with the labels the alerts join on; each alert, its threshold made
    always true, joins them into one alert per (slot and) feature on the active slot, and with its
    real threshold raises none."""
    records, alerts = _monitoring_rules()
    for record, expr in records.items():
        found = _ours(cluster, expr, namespace)
        assert found, f"no data for {record}: {expr}"
        assert all({"slot", "revision"} <= set(labels) for labels in found), (record, found)
    active = read_status(cluster, namespace, NAME)["activeSlot"]
    always = {
        "ModelfleetFeatureDrifting": ("_drifting) == 1", "_drifting) >= 0"),
        "ModelfleetInputMissingAboveBaseline": ("+ 0.05", "- 1"),
        "ModelfleetInputOutOfRangeAboveBaseline": ("+ 0.05", "- 1"),
        "ModelfleetBaselineNotLoaded": (
            "modelfleet_baseline_loaded == 0",
            "modelfleet_baseline_loaded == 1",
        ),
    }
    assert set(always) == set(alerts)
    for alert, (condition, true) in always.items():
        assert condition in alerts[alert], alert
        fired = _ours(cluster, alerts[alert].replace(condition, true), namespace)
        assert fired, f"{alert} joins nothing: {alerts[alert]}"
        assert {labels["slot"] for labels in fired} == {active}, (alert, fired)
        if alert != "ModelfleetBaselineNotLoaded":  # one per feature
            assert len({labels["feature"] for labels in fired}) == len(fired) > 1, (alert, fired)
        if alert != "ModelfleetFeatureDrifting":  # the operator's verdict is tested on its own
            assert not _ours(cluster, alerts[alert], namespace), alert


def _eventually(check: Callable[[], None], timeout: float) -> None:
    """`check` passing once within `timeout` (the previous slot's pods are still going away just
    after the promotion); its last failure otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(2)


def test_every_panel_has_data_during_a_rollout(
    cluster: LocalCluster, namespace: str, start_operator: Any
) -> None:
    operator = start_operator(namespace, env=POD_ADDRESS_ANNOTATION)
    _prometheus(cluster).add_target(
        f"operator-{namespace}",
        f"127.0.0.1:{operator.metrics_port}",
        {"job": "modelfleet-operator"},
    )
    try:
        v1 = model_deployment(NAME, prometheus_url=cluster.prometheus_url)
        v1["spec"]["monitoring"] = MONITORING
        apply(cluster, namespace, v1)
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
            manifest["spec"]["monitoring"] = MONITORING
            apply(cluster, namespace, manifest)
            wait_for(
                cluster, namespace, NAME, lambda st: st.get("canary") is not None, 60, "canary"
            )
            progressing = argocd_health(_read_object(cluster, namespace))
            wait_for(cluster, namespace, NAME, healthy_at("v2"), 180, "v2 promoted")
            healthy = argocd_health(_read_object(cluster, namespace))
            _feed_labels(cluster, namespace)
            empty = [
                query
                for query in (
                    render_dashboard_query(q, namespace, NAME) for q in dashboard_queries()
                )
                if not _wait_for_data(cluster, query, timeout=20)
            ]
            _eventually(lambda: _check_monitoring_rules(cluster, namespace), timeout=60)
        assert not empty, "panels without data:\n" + "\n".join(empty)
        assert progressing[0] == "Progressing", progressing
        assert "canary v2" in progressing[1], progressing
        assert healthy[0] == "Healthy", healthy
    finally:
        _prometheus(cluster).remove_target(f"operator-{namespace}")
