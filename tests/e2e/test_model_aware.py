"""Model-aware rollouts end to end: the operator, a real Prometheus, process-backed server pods,
live traffic with varied rows, and the two model-aware gates.

- The paired gate: the operator replays the same reference rows (examples/models/reference.csv) to one
  pod of each slot through their metrics port and compares the answers row by row.
- The drift gate: the PSI of the canary's prediction histogram against the stable slot's, counted
  by Prometheus since the step began.

Each scenario starts from a Healthy v1 in a fresh namespace with its own operator; steps are short
(10 s, analysed every 2 s; Prometheus scrapes every 2 s). The models are the ONNX twins of the
example LightGBM models (the same predictions; no conversion at each pod start on a busy machine).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from modelfleet_dev.harness.driver import Tally
from modelfleet_dev.harness.kube import kube_snapshot
from modelfleet_dev.harness.model_aware import (
    POD_ADDRESS_ANNOTATION,
    REFERENCE,
    AnalysisRecorder,
    VariedRowsDriver,
    model_aware_analysis,
    row_payloads,
)
from modelfleet_dev.harness.rollout import (
    StatusRecorder,
    apply,
    healthy_at,
    model_deployment,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster

NAME = "churn"
RPS = 60.0
MAX_DRIFT = 0.2  # PSI; the same distribution scores ≈ 0.01–0.05 at these sample sizes
MIN_AGREEMENT = (
    0.9  # an honest retrain agrees on ~97 % of the reference rows, the silent bug on ~38 %
)
MAX_SCORE_DELTA = (
    0.8  # an honest retrain's largest probability difference on a reference row: ~0.46
)
DRIFT_MESSAGE = re.compile(
    r"^prediction drift PSI ([0-9.]+) > 0\.20 on output `([^`]+)` over ([0-9,]+) canary rows "
    r"at (\d+)%$"
)
AGREEMENT_MESSAGE = re.compile(
    r"^agreement ([0-9.]+) % < 90(?:\.0)? % over ([0-9,]+) replayed rows at 10%$"
)


@dataclass
class Scenario:
    cluster: LocalCluster
    namespace: str
    analyses: AnalysisRecorder
    statuses: StatusRecorder
    driver: VariedRowsDriver

    def apply(self, *, analysis: dict[str, Any], **changes: Any) -> None:
        manifest = model_deployment(
            NAME,
            prometheus_url=self.cluster.prometheus_url,
            analysis=analysis,
            progress_deadline="90s",
            **changes,
        )
        apply(self.cluster, self.namespace, manifest)

    def wait(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        return dict(wait_for(self.cluster, self.namespace, NAME, predicate, timeout, what))

    def tally(self) -> Tally:
        return self.driver.snapshot_tally()


@pytest.fixture
def scenario(cluster: LocalCluster, namespace: str, start_operator: Any) -> Iterator[Scenario]:
    """A Healthy v1 under steady load of varied rows, every analysis recorded from here on."""
    assert REFERENCE.is_file(), f"{REFERENCE.name} is missing: run `make examples`"
    start_operator(namespace, env=POD_ADDRESS_ANNOTATION)
    apply(
        cluster,
        namespace,
        model_deployment(NAME, prometheus_url=cluster.prometheus_url, model="model.onnx"),
    )
    wait_for(cluster, namespace, NAME, healthy_at("v1"), 120, "v1 Healthy")
    driver = VariedRowsDriver(
        kube_snapshot(cluster.api_client(), namespace, NAME),
        rps=RPS,
        path=f"/v2/models/{NAME}/infer",
        payloads=row_payloads(),
    )
    with (
        AnalysisRecorder(cluster, namespace, NAME) as analyses,
        StatusRecorder(cluster, namespace, NAME) as statuses,
        driver.running(),
    ):
        yield Scenario(cluster, namespace, analyses, statuses, driver)


def _ended(version: str) -> Any:
    def check(status: Any) -> bool:
        last = (status.get("history") or [{}])[0]
        return last.get("version") == version and bool(last.get("outcome"))

    return check


def _degraded_message(status: dict[str, Any]) -> str:
    condition = next(c for c in status.get("conditions", []) if c["type"] == "Degraded")
    return str(condition["message"])


def test_silent_bug_is_caught_by_the_paired_gate_where_the_drift_gate_is_blind(
    scenario: Scenario,
) -> None:
    # 1. Every gate on: the permuted model answers 200, fast, with a familiar distribution, and is
    #    rolled back at the first live step because it disagrees with v1 on most replayed rows.
    every_gate = model_aware_analysis(max_prediction_drift=MAX_DRIFT, min_agreement=MIN_AGREEMENT)
    scenario.apply(model="model-permuted.onnx", version="bug", analysis=every_gate)
    status = scenario.wait(_ended("bug"), 120, "the silent bug's rollout ended")

    assert status["history"][0]["outcome"] == "RolledBack", status["history"][0]
    assert status["activeVersion"] == "v1"
    message = _degraded_message(status)
    found = AGREEMENT_MESSAGE.match(message)
    assert found, message
    assert float(found.group(1)) < 60.0  # measured: 37.7 % of the reference rows agree
    assert int(found.group(2).replace(",", "")) >= 100
    # never more than the first step's weight (the message says "at 10%"; the failing look rolls
    # back in the same status write, so the recorder may not even have seen the 10 %)
    assert max(scenario.statuses.weights(), default=0) <= 10, scenario.statuses.weights()

    # 2. The same model behind the drift gate alone (plus errors and latency): it walks through
    #    and is promoted, every measured PSI under the threshold. This is the blind spot.
    drift_only = model_aware_analysis(max_prediction_drift=MAX_DRIFT, min_agreement=None)
    scenario.apply(
        model="model-permuted.onnx", version="bug-again", analysis=drift_only, steps=(50, 100)
    )
    status = scenario.wait(_ended("bug-again"), 150, "the drift-only rollout ended")
    assert status["history"][0]["outcome"] == "Promoted", _degraded_message(status)
    # drift is judged at every step but the last (at 100 % the stable slot answers nobody)
    judged = [a for a in scenario.analyses.of("bug-again") if a.phase == "Pass" and a.weight < 100]
    assert judged, [a.analysis for a in scenario.analyses.of("bug-again")]
    drifts = [a.analysis.get("predictionDrift") for a in judged]
    assert all(d is not None and d < MAX_DRIFT for d in drifts), drifts
    assert scenario.tally().failed() == 0, scenario.tally().counts


def test_shifted_outputs_are_rolled_back_by_the_drift_gate(scenario: Scenario) -> None:
    drift_only = model_aware_analysis(max_prediction_drift=MAX_DRIFT, min_agreement=None)
    scenario.apply(model="model-relabelled.onnx", version="relabelled", analysis=drift_only)
    status = scenario.wait(_ended("relabelled"), 120, "the relabelled model's rollout ended")

    assert status["history"][0]["outcome"] == "RolledBack", status["history"][0]
    assert status["activeVersion"] == "v1"
    message = _degraded_message(status)
    found = DRIFT_MESSAGE.match(message)
    assert found, message
    assert float(found.group(1)) > MAX_DRIFT
    assert found.group(2).startswith("probabilities")
    assert int(found.group(3).replace(",", "")) >= 1000  # minDriftSamples
    assert int(found.group(4)) in (10, 25)  # on live traffic, early
    assert scenario.tally().failed() == 0, scenario.tally().counts


def test_honest_retrains_pass_every_gate_over_repeated_rollouts(scenario: Scenario) -> None:
    every_gate = model_aware_analysis(
        max_prediction_drift=MAX_DRIFT, min_agreement=MIN_AGREEMENT, max_score_delta=MAX_SCORE_DELTA
    )
    # v1 → v2 → v1's model again → v2's again: each canary is an honest retrain of the stable model
    runs = [("v2", "model-v2.onnx"), ("v3", "model.onnx"), ("v4", "model-v2.onnx")]
    for version, model in runs:
        scenario.apply(model=model, version=version, analysis=every_gate, steps=(25, 100))
        status = scenario.wait(_ended(version), 150, f"{version} finished")
        entry = status["history"][0]
        assert entry["outcome"] == "Promoted", (version, entry)
        measured = scenario.analyses.of(version)
        assert not [a for a in measured if a.phase == "Fail"], [a.analysis for a in measured]
        # a Pass below 100 % judged both model-aware gates, with their numbers (at 100 % the
        # stable slot answers no traffic: no drift to compare)
        passed = [a.analysis for a in measured if a.phase == "Pass" and a.weight < 100]
        assert passed, [a.analysis for a in measured]
        for analysis in passed:
            assert analysis["predictionDrift"] < MAX_DRIFT, analysis
            assert analysis["agreement"] >= MIN_AGREEMENT, analysis
            assert analysis["replayedRows"] >= 100, analysis
            assert analysis["scoreDeltaMax"] <= MAX_SCORE_DELTA, analysis
    assert scenario.tally().failed() == 0, scenario.tally().counts
