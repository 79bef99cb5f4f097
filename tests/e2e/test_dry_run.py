"""An advisory (dryRun) gate end to end (issue #17): measured and reported, never acted on.

A real operator process, the local control plane, a real Prometheus and process-backed server pods
under load. v2 answers 5 % of its requests with a 5xx, five times its error-rate limit, and its
error-rate gate is listed in `analysis.dryRun`: the rollout walks every step and is promoted, while
the Progressing condition names the measured rate against the limit as a would-be failure, the
history entry counts how often the gate would have failed, and the Promoted notification (to a
CloudEvents receiver on a loopback port of the test's own) carries the same counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from modelfleet_dev.harness.rollout import (
    Receiver,
    StatusRecorder,
    apply,
    apply_healthy,
    healthy_at,
    model_deployment,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster

NAME = "fraud"
RPS = 60.0
LIMIT = "> 1.0 % over "  # how a message puts a measured error rate against maxErrorRate (1 %)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _manifest(cluster: LocalCluster, receiver: Receiver, **changes: Any) -> dict[str, Any]:
    manifest = model_deployment(
        NAME, prometheus_url=cluster.prometheus_url, analysis={"dryRun": ["errorRate"]}, **changes
    )
    manifest["spec"]["rollout"]["notify"] = [{"type": "cloudevents", "url": receiver.url("events")}]
    return manifest


def _progressing(status: Mapping[str, Any]) -> str:
    conditions = status.get("conditions") or []
    return next((c["message"] for c in conditions if c["type"] == "Progressing"), "")


def test_a_dry_run_error_gate_reports_its_would_be_failures_and_the_canary_is_promoted(
    cluster: LocalCluster, namespace: str, operator: Any, receiver: Receiver
) -> None:
    apply_healthy(cluster, namespace, _manifest(cluster, receiver))
    driver = traffic_driver(cluster, namespace, NAME, RPS)
    said: list[str] = []  # the Progressing condition's messages while the canary runs

    def promoted(status: Mapping[str, Any]) -> bool:
        said.append(_progressing(status))
        return healthy_at("v2")(status)

    faulty = {"MODELFLEET_FAULT_ERROR_RATE": "0.05"}
    with StatusRecorder(cluster, namespace, NAME) as recorder, driver.running():
        apply(
            cluster,
            namespace,
            _manifest(cluster, receiver, model="model-v2.txt", version="v2", env=faulty),
        )
        status = dict(wait_for(cluster, namespace, NAME, promoted, 180, "v2 promoted"))

    assert recorder.weights() == [0, 10, 25, 50, 100]  # never back to 0 before the promotion
    assert "Degraded" not in {observed.phase for observed in recorder.seen}
    advised = [m for m in said if "(advisory, not acted on: error rate " in m]
    assert advised, said
    assert any(LIMIT in m.split("advisory, not acted on: ")[1] for m in advised), advised
    assert all(": passing (advisory" in m or m.startswith("holding ") for m in advised), advised

    entry = status["history"][0]
    assert (entry["outcome"], entry["version"]) == ("Promoted", "v2")
    (tally,) = entry["advisory"]
    assert tally["gate"] == "errorRate"
    assert 0 < tally["wouldFail"] <= tally["looks"]
    assert tally["lastFailure"].startswith("error rate ")
    assert LIMIT in tally["lastFailure"]
    summary = f"advisory errorRate would have failed {tally['wouldFail']} of {tally['looks']} looks"
    assert summary in entry["message"]
    assert "canary" not in status

    def told_promoted() -> list[dict[str, Any]]:
        return [e["data"] for e in receiver.bodies("events") if e["data"]["event"] == "Promoted"]

    wait_for(cluster, namespace, NAME, lambda _: bool(told_promoted()), 20, "Promoted told")
    (notice,) = told_promoted()
    assert notice["advisory"] == entry["advisory"]
    assert notice["analysis"]["advisory"][0]["gate"] == "errorRate"
