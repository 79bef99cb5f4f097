"""Ground truth end to end (issue #15, scenario 5): real model-server processes serving the example
models, labels POSTed to their metrics ports by x-request-id, a real Prometheus, and

- the `minAccuracyDelta` gate: labels from the data-generating rule of examples/train_models.py
  fail the permuted model (a silent bug: same output distribution, wrong answers) with its measured
  accuracy in the message, and pass an honest retrain;
- the monitoring loop of a real operator: while the labels follow the training rule, the active
  slot's live accuracy in status.monitoring.feedback (and on the operator's gauge) is high; when
  the world changes (the labels follow a relabelled rule: concept drift, inputs unchanged), it
  falls, window by window.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from modelfleet_dev.harness.model_aware import FEATURES
from modelfleet_dev.harness.rollout import (
    apply,
    healthy_at,
    model_deployment,
    read_status,
    wait_for,
)
from modelfleet_dev.harness.stack import MODELS, LocalStack, Server
from modelfleet_dev.localcluster import LocalCluster

from modelfleet.operator.api import AnalysisSpec
from modelfleet.operator.gates import PrometheusAndPairedGates
from modelfleet.operator.measurement import AnalysisTarget, Measurement

DEPLOYMENT = "churn"
ROWS_PER_REQUEST = 32
REQUESTS = 40  # × 32 rows: 1,280 labelled rows per server
LOCAL_ADDRESS = "modelfleet.io/local-address"
LOCAL_METRICS_ADDRESS = "modelfleet.io/local-metrics-address"
log = logging.getLogger(__name__)
_ids = itertools.count(1)


def _score(rows: np.ndarray) -> np.ndarray:
    """examples/train_models.py's score, without its noise."""
    steps = 0.8 * np.sign(rows[:, 2]) * (rows[:, 3] > 0)
    result: np.ndarray = 1.5 * rows[:, 0] - rows[:, 1] + steps
    return result


# The training rule's class edges (tertiles of the score) and a relabelled rule's (0.6 and 0.9
# quantiles, as model-relabelled was trained on), from a large sample of the training distribution.
_SCORES = _score(np.random.default_rng(0).normal(size=(200_000, FEATURES)))
TRAINING_EDGES = np.quantile(_SCORES, [1 / 3, 2 / 3])
RELABELLED_EDGES = np.quantile(_SCORES, [0.6, 0.9])


def true_classes(rows: np.ndarray, edges: np.ndarray) -> list[int]:
    return [int(c) for c in np.digitize(_score(rows), edges)]


@dataclass
class Answered:
    request_id: str
    rows: np.ndarray


def infer(
    client: httpx.Client, address: str, rng: np.random.Generator, model: str = DEPLOYMENT
) -> Answered:
    """One request of fresh rows with our own x-request-id; the server echoes it."""
    rows = np.round(rng.normal(size=(ROWS_PER_REQUEST, FEATURES)), 6)
    request_id = f"req-{next(_ids)}"
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP64",
                "shape": [ROWS_PER_REQUEST, FEATURES],
                "data": rows.ravel().tolist(),
            }
        ]
    }
    response = client.post(
        f"http://{address}/v2/models/{model}/infer",
        json=body,
        headers={"x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    return Answered(request_id, rows)


def send_labels(
    client: httpx.Client, metrics_address: str, answered: list[Answered], edges: np.ndarray
) -> dict[str, Any]:
    labels = [{"id": a.request_id, "label": true_classes(a.rows, edges)} for a in answered]
    response = client.post(
        f"http://{metrics_address}/modelfleet/v1/feedback", json={"labels": labels}, timeout=30
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --- the minAccuracyDelta gate against a real Prometheus ---------------------------------------


@dataclass
class Labelled:
    stack: LocalStack
    servers: dict[str, Server]
    since: datetime


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Labelled]:
    stack = LocalStack(tmp_path_factory.mktemp("stack"), scrape_interval="1s").start()
    try:
        models = {"stable": "model.txt", "v2": "model-v2.txt", "permuted": "model-permuted.txt"}
        servers = {
            name: stack.start_server(
                name,
                deployment=DEPLOYMENT,
                slot="blue" if name == "stable" else "green",
                revision="r1" if name == "stable" else f"r2-{name}",
                model=MODELS / model,
            )
            for name, model in models.items()
        }
        for server in servers.values():
            stack.wait_scraped(server)
        since = datetime.now(UTC)
        rng = np.random.default_rng(15)
        with httpx.Client() as client:
            for server in servers.values():
                answered = [infer(client, server.address, rng) for _ in range(REQUESTS)]
                counted = send_labels(client, server.metrics_address, answered, TRAINING_EDGES)
                assert counted["rows"] == REQUESTS * ROWS_PER_REQUEST, counted
                assert counted["unknown"] == 0, counted
        time.sleep(3.0)  # two scrapes after the last label
        yield Labelled(stack, servers, since)
    finally:
        stack.close()


def measure(labelled: Labelled, canary: str, spec: AnalysisSpec) -> Measurement:
    server, stable = labelled.servers[canary], labelled.servers["stable"]
    target = AnalysisTarget(
        namespace=labelled.stack.namespace,
        name=DEPLOYMENT,
        canary_slot=server.slot,
        canary_revision=server.revision,
        stable_slot=stable.slot,
        stable_revision=stable.revision,
        weight=10,
        since=labelled.since,
    )

    async def run() -> Measurement:
        async with httpx.AsyncClient() as client:
            analyzer = PrometheusAndPairedGates(client, labelled.stack.prometheus.url)
            return await analyzer.measure(target, spec, datetime.now(UTC))

    return asyncio.run(run())


GATE = AnalysisSpec(
    max_p99_latency_ms=5000, min_requests=20, min_accuracy_delta=-0.05, min_labelled_rows=500
)


def test_the_accuracy_gate_fails_a_silent_bug_with_its_figures(labelled: Labelled) -> None:
    measurement = measure(labelled, "permuted", GATE)
    assert measurement.phase == "Fail", measurement.message
    assert measurement.labelled_rows == REQUESTS * ROWS_PER_REQUEST  # every label, exactly
    assert measurement.accuracy is not None
    assert measurement.stable_accuracy is not None
    assert measurement.stable_accuracy > 0.8
    assert measurement.accuracy < 0.6
    assert f"live accuracy {measurement.accuracy * 100:.1f} %" in measurement.message
    assert "over 1,280 labelled canary rows" in measurement.message
    log.info("permuted: %s", measurement.message)


def test_the_accuracy_gate_passes_an_honest_retrain(labelled: Labelled) -> None:
    measurement = measure(labelled, "v2", GATE)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.accuracy is not None
    assert measurement.accuracy > 0.8
    log.info("v2: %s", measurement.message)


def test_too_few_labels_never_pass(labelled: Labelled) -> None:
    strict = GATE.model_copy(update={"min_labelled_rows": 5000})
    measurement = measure(labelled, "v2", strict)
    assert measurement.phase == "Inconclusive", measurement.message
    assert "fewer than 5,000 labelled canary rows" in measurement.message


# --- live accuracy in status, through the operator's monitoring loop ---------------------------

NAME = "labelled"
INTERVAL_S = 5
WINDOW = "20s"


def _active_pod(cluster: LocalCluster, namespace: str) -> tuple[str, str, str]:
    """(slot, inference address, metrics address) of the active slot's one pod."""
    from kubernetes import client as k8s

    status = read_status(cluster, namespace, NAME)
    pods = k8s.CoreV1Api(cluster.api_client()).list_namespaced_pod(
        namespace,
        label_selector=f"modelfleet.io/deployment={NAME},modelfleet.io/slot={status['activeSlot']}",
    )
    for pod in pods.items:
        notes = (pod.metadata.annotations if pod.metadata else None) or {}
        if LOCAL_ADDRESS in notes and LOCAL_METRICS_ADDRESS in notes:
            return status["activeSlot"], notes[LOCAL_ADDRESS], notes[LOCAL_METRICS_ADDRESS]
    raise AssertionError(f"no running pod of slot {status['activeSlot']}")


def _feedback(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    monitoring = read_status(cluster, namespace, NAME).get("monitoring") or {}
    figures: list[dict[str, Any]] = monitoring.get("feedback") or []
    return figures


def _labelled_batch(
    client: httpx.Client, pod: tuple[str, str, str], rng: np.random.Generator, edges: np.ndarray
) -> None:
    answered = [infer(client, pod[1], rng, NAME) for _ in range(10)]
    counted = send_labels(client, pod[2], answered, edges)
    assert counted["unknown"] == 0, counted


def _wait_accuracy(
    cluster: LocalCluster,
    namespace: str,
    check: Any,
    what: str,
    feed: Any,
    timeout: float = 90,
) -> dict[str, Any]:
    """Keep labelling (`feed`) until the active slot's figures pass `check`."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        feed()
        last = _feedback(cluster, namespace)
        if last and last[0].get("accuracy") is not None and check(last[0]):
            return last[0]
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last figures {last}")


def test_live_accuracy_falls_in_status_when_the_labels_change(
    cluster: LocalCluster, namespace: str, start_operator: Any
) -> None:
    operator = start_operator(namespace)
    manifest = model_deployment(NAME, prometheus_url=cluster.prometheus_url, replicas=1)
    manifest["spec"]["monitoring"] = {"interval": f"{INTERVAL_S}s", "window": WINDOW}
    apply(cluster, namespace, manifest)
    wait_for(cluster, namespace, NAME, healthy_at("v1"), 120, "v1 Healthy")
    pod = _active_pod(cluster, namespace)
    rng = np.random.default_rng(21)
    with httpx.Client() as client:
        good = _wait_accuracy(
            cluster,
            namespace,
            lambda figures: figures["accuracy"] > 0.85 and figures["rows"] >= 1000,
            "a high live accuracy under the training rule",
            lambda: _labelled_batch(client, pod, rng, TRAINING_EDGES),
        )
        log.info("training rule: %s", good)
        assert good["slot"] == pod[0]
        assert good["revision"] == read_status(cluster, namespace, NAME)["activeRevision"]
        assert 0 < good["logLoss"] < 0.5
        assert "mae" not in good
        gauge = _operator_gauge(operator.metrics_port, "modelfleet_monitoring_accuracy")
        assert gauge is not None
        assert gauge > 0.85

        changed_at = time.monotonic()
        fallen = _wait_accuracy(
            cluster,
            namespace,
            lambda figures: figures["accuracy"] < 0.7,
            "the live accuracy falling under the relabelled rule",
            lambda: _labelled_batch(client, pod, rng, RELABELLED_EDGES),
        )
        log.info("relabelled rule after %.0f s: %s", time.monotonic() - changed_at, fallen)
        assert fallen["logLoss"] > good["logLoss"]
        gauge = _operator_gauge(operator.metrics_port, "modelfleet_monitoring_accuracy")
        assert gauge is not None
        assert gauge < 0.85


def _operator_gauge(port: int, name: str) -> float | None:
    """The operator's gauge for the deployment (the latest look; polled a few seconds)."""
    deadline = time.monotonic() + 3 * INTERVAL_S
    value: float | None = None
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and f'deployment="{NAME}"' in line:
                value = float(line.rsplit(" ", 1)[1])
        if value is not None:
            return value
        time.sleep(0.5)
    return value
