"""Rollouts end to end: the operator, a real Prometheus, process-backed server pods, live traffic.

Each scenario starts from a Healthy v1 in a fresh namespace with its own operator, then applies a
new revision while the traffic driver sends steady load through the pods' local addresses,
following the live weights (status history is newest first). Steps are short (10 s, analysed every 2 s; Prometheus scrapes every
2 s) so a scenario takes about a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from modelfleet_dev.harness.driver import Tally, TrafficDriver
from modelfleet_dev.harness.rollout import (
    StatusRecorder,
    apply,
    apply_healthy,
    healthy_at,
    kubectl_modelfleet,
    model_deployment,
    read_status,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster

NAME = "fraud"
RPS = 60.0


@dataclass
class Rollout:
    cluster: LocalCluster
    namespace: str
    recorder: StatusRecorder
    driver: TrafficDriver

    def apply(self, **changes: Any) -> None:
        apply(
            self.cluster,
            self.namespace,
            model_deployment(NAME, prometheus_url=self.cluster.prometheus_url, **changes),
        )

    def wait(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        return dict(wait_for(self.cluster, self.namespace, NAME, predicate, timeout, what))

    def tally(self) -> Tally:
        return self.driver.snapshot_tally()


@pytest.fixture
def rollout(cluster: LocalCluster, namespace: str, operator: Any) -> Iterator[Rollout]:
    """A Healthy v1 under steady load, with the status recorded from here on."""
    apply_healthy(cluster, namespace, model_deployment(NAME, prometheus_url=cluster.prometheus_url))
    driver = traffic_driver(cluster, namespace, NAME, RPS)
    with StatusRecorder(cluster, namespace, NAME) as recorder, driver.running():
        yield Rollout(cluster, namespace, recorder, driver)


def _degraded(status: Any) -> bool:
    return bool(status.get("phase") == "Degraded")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def _active_revision(rollout: Rollout) -> str:
    return str(read_status(rollout.cluster, rollout.namespace, NAME)["activeRevision"])


def test_healthy_revision_walks_every_step_and_is_promoted(rollout: Rollout) -> None:
    v1_revision = _active_revision(rollout)
    rollout.apply(model="model-v2.txt", version="v2")
    status = rollout.wait(healthy_at("v2"), 180, "v2 promoted")

    assert [w for w in rollout.recorder.weights() if w > 0] == [10, 25, 50, 100]
    assert status["history"][0]["outcome"] == "Promoted"
    assert status["activeRevision"] != v1_revision
    tally = rollout.tally()
    assert tally.failed() == 0, tally.counts  # nothing failed, and nothing was injected
    assert tally.total(revision=status["activeRevision"]) > 0
    assert tally.total(revision=v1_revision) > 0


def test_injected_errors_roll_back_at_the_first_step(rollout: Rollout) -> None:
    v1_revision = _active_revision(rollout)
    rollout.apply(model="model-v2.txt", version="v2", env={"MODELFLEET_FAULT_ERROR_RATE": "0.05"})
    status = rollout.wait(_degraded, 120, "rolled back")

    assert max(rollout.recorder.weights()) == 10
    message = _condition(status, "Degraded")["message"]
    assert message.startswith("error rate "), message
    assert "> 1.0 % over " in message
    assert message.endswith("at 10%")
    assert status["activeRevision"] == v1_revision  # the active slot was never touched
    assert status["history"][0]["outcome"] == "RolledBack"
    time.sleep(2)  # the driver re-reads the weights every 0.5 s
    tally = rollout.tally()
    assert tally.failed(revision=v1_revision) == 0, tally.counts  # only injected errors
    assert tally.failed() > 0
    assert tally.shares[-1][1].get(status["activeSlot"]) == 100.0


def test_injected_latency_rolls_back_on_p99(rollout: Rollout) -> None:
    rollout.apply(model="model-v2.txt", version="v2", env={"MODELFLEET_FAULT_LATENCY_MS": "3000"})
    status = rollout.wait(_degraded, 120, "rolled back")

    message = _condition(status, "Degraded")["message"]
    assert message.startswith("p99 "), message
    assert "> 2,000 ms" in message
    assert status["history"][0]["outcome"] == "RolledBack"
    assert rollout.tally().failed() == 0


def test_nothing_is_promoted_while_prometheus_is_down(rollout: Rollout) -> None:
    prometheus = rollout.cluster.prometheus
    assert prometheus is not None
    rollout.apply(model="model-v2.txt", version="v2")
    rollout.wait(lambda s: (s.get("canary") or {}).get("weight") == 25, 120, "canary at 25 %")
    prometheus.stop()
    try:
        held = rollout.wait(
            lambda s: (s.get("canary") or {}).get("analysis", {}).get("phase") == "Error",
            30,
            "analysis Error while Prometheus is down",
        )
        time.sleep(15)  # longer than a step: a blind operator would have moved on by now
        during = read_status(rollout.cluster, rollout.namespace, NAME)
    finally:
        prometheus.start()
    assert held["phase"] == "Progressing"
    assert during["canary"]["weight"] == 25
    assert during["activeVersion"] == "v1"
    assert "metrics unavailable" in during["message"]
    status = rollout.wait(healthy_at("v2"), 180, "v2 promoted after Prometheus came back")
    assert status["history"][0]["outcome"] == "Promoted"
    assert rollout.tally().failed() == 0


def test_too_little_traffic_holds_then_pauses_without_promoting(
    cluster: LocalCluster, namespace: str, operator: Any
) -> None:
    apply(cluster, namespace, model_deployment(NAME, prometheus_url=cluster.prometheus_url))
    wait_for(cluster, namespace, NAME, healthy_at("v1"), 120, "v1 Healthy")
    apply(
        cluster,
        namespace,
        model_deployment(
            NAME,
            prometheus_url=cluster.prometheus_url,
            model="model-v2.txt",
            version="v2",
            progress_deadline="20s",
        ),
    )
    status = wait_for(cluster, namespace, NAME, lambda s: s.get("phase") == "Paused", 90, "paused")
    assert status["canary"]["weight"] == 10
    assert status["canary"]["analysis"]["phase"] == "Inconclusive"
    assert status["activeVersion"] == "v1"
    assert "no canary requests" in status["message"]


def _at_weight(weight: int) -> Any:
    return lambda s: (s.get("canary") or {}).get("weight") == weight


def test_a_killed_operator_resumes_at_the_same_step_and_weight(
    rollout: Rollout, operator: Any, start_operator: Any
) -> None:
    rollout.apply(model="model-v2.txt", version="v2")
    rollout.wait(_at_weight(25), 120, "canary at 25 %")
    operator.kill()
    before = read_status(rollout.cluster, rollout.namespace, NAME)
    time.sleep(5)
    assert read_status(rollout.cluster, rollout.namespace, NAME)["canary"] == before["canary"]
    start_operator(rollout.namespace)
    status = rollout.wait(healthy_at("v2"), 180, "v2 promoted by the new operator")
    assert [w for w in rollout.recorder.weights() if w > 0] == [10, 25, 50, 100]
    assert status["history"][0]["outcome"] == "Promoted"
    assert rollout.tally().failed() == 0


def test_a_newer_revision_supersedes_and_a_revert_cancels(rollout: Rollout) -> None:
    v1_revision = _active_revision(rollout)
    rollout.apply(model="model-v2.txt", version="v2")
    rollout.wait(_at_weight(25), 120, "v2 canary at 25 %")
    rollout.apply(model="model-v2.onnx", version="v3")
    rollout.wait(
        lambda s: (s.get("canary") or {}).get("version") == "v3", 60, "v3 replaced the v2 canary"
    )
    status = read_status(rollout.cluster, rollout.namespace, NAME)
    assert status["history"][0]["outcome"] == "Superseded"
    assert status["history"][0]["version"] == "v2"
    rollout.wait(_at_weight(10), 60, "v3 canary at 10 %")
    rollout.apply()  # back to v1, the active revision
    status = rollout.wait(healthy_at("v1"), 60, "revert cancels the canary")
    assert status["history"][0]["outcome"] == "Cancelled"
    assert status["activeRevision"] == v1_revision
    assert rollout.tally().failed() == 0


def test_a_model_that_fails_to_load_never_gets_traffic(rollout: Rollout) -> None:
    v1_revision = _active_revision(rollout)
    rollout.apply(model="model-v2.txt", version="v2", sha256="0" * 64)
    status = rollout.wait(
        lambda s: "sha256" in (s.get("message") or "").lower(), 90, "status says why"
    )
    time.sleep(3)
    status = dict(read_status(rollout.cluster, rollout.namespace, NAME))
    assert status["canary"]["weight"] == 0
    assert status["activeRevision"] == v1_revision
    tally = rollout.tally()
    assert tally.total() == tally.total(revision=v1_revision)  # not one request to the canary
    assert tally.failed() == 0


def test_background_noise_under_the_limit_never_rolls_back(rollout: Rollout) -> None:
    for run in ("v2", "v3"):
        rollout.apply(
            model="model-v2.txt", version=run, env={"MODELFLEET_FAULT_ERROR_RATE": "0.003"}
        )
        status = rollout.wait(
            lambda s, run=run: healthy_at(run)(s) or s.get("phase") == "Degraded",
            180,
            f"{run} finished",
        )
        assert status["phase"] == "Healthy", status.get("message")
        assert status["history"][0]["outcome"] == "Promoted"


def _plugin(rollout: Rollout, *args: str) -> str:
    done = kubectl_modelfleet(rollout.cluster.kubeconfig, rollout.namespace, NAME, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_manual_control_through_the_kubectl_plugin(rollout: Rollout) -> None:
    v1_revision = _active_revision(rollout)
    rollout.apply(model="model-v2.txt", version="v2", step_duration="10m", progress_deadline="20m")
    rollout.wait(_at_weight(10), 120, "canary at 10 %")

    assert "acknowledged" in _plugin(rollout, "pause")
    rollout.wait(lambda s: s.get("phase") == "Paused", 30, "paused")
    _plugin(rollout, "resume")
    rollout.wait(lambda s: s.get("phase") == "Progressing", 30, "resumed")
    _plugin(rollout, "promote")  # skip the rest of this 10-minute step
    rollout.wait(_at_weight(25), 60, "promoted to the next step")

    _plugin(rollout, "abort")
    status = rollout.wait(_degraded, 60, "aborted")
    assert status["history"][0]["outcome"] == "Aborted"
    assert status["activeRevision"] == v1_revision

    _plugin(rollout, "retry")
    rollout.wait(_at_weight(10), 120, "retried from the first step")
    _plugin(rollout, "promote", "--full")
    status = rollout.wait(healthy_at("v2"), 120, "promoted to 100 % by hand")
    assert status["history"][0]["outcome"] == "Promoted"
    assert "v2" in _plugin(rollout, "status")
    assert rollout.tally().failed() == 0
