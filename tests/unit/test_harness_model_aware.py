"""The model-aware harness pieces (hack/modelfleet_dev/harness/model_aware.py) and the demo's gate lines, pure."""

from __future__ import annotations

import numpy as np
from modelfleet_dev.demo.watch import describe, gates_text
from modelfleet_dev.harness.model_aware import (
    FEATURES,
    VariedRowsDriver,
    model_aware_analysis,
    row_payloads,
)
from modelfleet_dev.harness.weights import Endpoint


async def _no_endpoints() -> list[Endpoint]:
    return []


def test_payloads_are_oip_batches_of_distinct_standard_normal_rows() -> None:
    payloads = row_payloads(batches=64, rows=8, seed=1)
    tensor = payloads[0]["inputs"][0]
    assert tensor["shape"] == [8, FEATURES]
    assert len(tensor["data"]) == 8 * FEATURES
    values = np.array([p["inputs"][0]["data"] for p in payloads]).ravel()
    assert abs(values.mean()) < 0.05
    assert abs(values.std() - 1) < 0.05
    assert len({tuple(p["inputs"][0]["data"]) for p in payloads}) == 64
    assert row_payloads(batches=2, rows=2, seed=1) == row_payloads(batches=2, rows=2, seed=1)


def test_the_driver_sends_another_batch_with_each_request() -> None:
    payloads = row_payloads(batches=32, rows=2)
    driver = VariedRowsDriver(_no_endpoints, rps=1, path="/", payloads=payloads)
    sent = {id(driver._payload) for _ in range(200)}  # what _send reads once per request
    assert len(sent) > 20
    assert sent <= {id(p) for p in payloads}


def test_gates_spec_turns_on_what_is_asked() -> None:
    both = model_aware_analysis(reference_uri="file:///rows.csv")
    assert both == {
        "maxPredictionDrift": 0.2,
        "minDriftSamples": 1000,
        "minAgreement": 0.9,
        "replay": {"referenceUri": "file:///rows.csv"},
    }
    drift_only = model_aware_analysis(min_agreement=None)
    assert "replay" not in drift_only
    assert "minAgreement" not in drift_only
    delta_only = model_aware_analysis(
        max_prediction_drift=None, min_agreement=None, max_score_delta=0.5
    )
    assert delta_only["maxScoreDelta"] == 0.5
    assert delta_only["replay"]["referenceUri"].endswith("reference.csv")


def test_the_demo_prints_the_model_aware_values() -> None:
    analysis = {
        "phase": "Pass",
        "errorRate": 0.0,
        "p99Ms": 12.0,
        "requests": 80,
        "predictionDrift": 0.021,
        "driftOutput": "probabilities[1]",
        "agreement": 0.975,
        "replayedRows": 512,
        "scoreDeltaMean": 0.03,
        "scoreDeltaMax": 0.46,
    }
    assert describe(analysis) == (
        "Pass: error rate 0.0 %, p99 12.0 ms, 80 requests, PSI 0.02 on `probabilities[1]`, "
        "agreement 97.5 % of 512 rows (score delta mean 0.03, max 0.46)"
    )
    assert gates_text([analysis, {"predictionDrift": 0.05}], None) == (
        "PSI ≤ 0.05 · agreement 97.5 %"
    )
    assert gates_text([{}], 0.371) == "agreement 37.1 %"
    assert gates_text([], None) == "–"
