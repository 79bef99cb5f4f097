"""A canary rollout under a per-tenant rate limit (issue #18): the operator hands spec.rateLimit to
the pods (per pod: the limit divided by the replicas) and says so in status; the canary's pods
answer part of the live traffic with 429, and the rollout walks every step and is promoted, since
a 429 is counted in modelfleet_rate_limited_total and never as a request the gates judge.

The harness is tests/e2e/test_rollout.py's: the operator, a real Prometheus, process-backed pods,
the traffic driver following the live weights (one tenant: it sends no x-tenant header)."""

from __future__ import annotations

from typing import Any

from modelfleet_dev.harness.rollout import (
    StatusRecorder,
    apply,
    apply_healthy,
    healthy_at,
    model_deployment,
    read_status,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster

NAME = "fraud"
RPS = 60.0
# 450/min a pod over 2 replicas, 7.5 a second: from the 25 % step on, the canary's single pod
# gets more than that (15 a second and up) and answers part of it with 429
RATE_LIMIT = {"requestsPerMinute": 900, "burst": 10, "key": "header:x-tenant"}


def _manifest(cluster: LocalCluster, **changes: Any) -> dict[str, Any]:
    manifest = model_deployment(NAME, prometheus_url=cluster.prometheus_url, **changes)
    manifest["spec"]["rateLimit"] = RATE_LIMIT
    return manifest


def _sum(cluster: LocalCluster, query: str) -> float:
    assert cluster.prometheus is not None
    return sum(float(row["value"][1]) for row in cluster.prometheus.query(query))


def test_a_canary_answering_429s_under_a_rate_limit_is_promoted(
    cluster: LocalCluster, namespace: str, operator: Any
) -> None:
    status = apply_healthy(cluster, namespace, _manifest(cluster))
    assert status["rateLimit"] == (
        "per pod: 450/min (burst 5) each over 2 replicas, per header:x-tenant"
    )
    v1_revision = status["activeRevision"]
    driver = traffic_driver(cluster, namespace, NAME, RPS)
    with StatusRecorder(cluster, namespace, NAME) as recorder, driver.running():
        apply(cluster, namespace, _manifest(cluster, model="model-v2.txt", version="v2"))
        status = wait_for(cluster, namespace, NAME, healthy_at("v2"), 240, "v2 promoted")

    assert [w for w in recorder.weights() if w > 0] == [10, 25, 50, 100]
    assert status["history"][0]["outcome"] == "Promoted"
    v2_revision = status["activeRevision"]
    assert v2_revision != v1_revision
    tally = driver.snapshot_tally()
    limited = {key: n for key, n in tally.counts.items() if key[2] == 429}
    canary_limited = sum(n for (_, revision, _), n in limited.items() if revision == v2_revision)
    assert canary_limited > 50, tally.counts  # the canary refused a good part of its traffic
    assert tally.failed() == 0, tally.counts  # and nothing failed: 429 is no failure
    assert tally.total(revision=v2_revision, slot=None) > canary_limited

    selector = f'namespace="{namespace}",deployment="{NAME}",revision="{v2_revision}"'
    assert _sum(cluster, f"modelfleet_rate_limited_total{{{selector}}}") > 0
    assert _sum(cluster, f'modelfleet_requests_total{{{selector},code="429"}}') == 0
    assert _sum(cluster, f'modelfleet_requests_total{{{selector},code="200"}}') > 0
    assert read_status(cluster, namespace, NAME)["phase"] == "Healthy"
