"""The metrics port's admin routes on real `modelfleet serve` processes, over loopback with
a real HTTP client: replays answer like inference yet count nowhere, the live sample holds
the newest rows sent, and the paired comparison the operator makes sees the silent bug."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

REPLAY, SAMPLE = "/modelfleet/v1/replay", "/modelfleet/v1/sample"


def _admin(server: Any) -> str:
    return f"http://127.0.0.1:{server.metrics_port}"


def _reference(example_models: Path) -> list[list[float]]:
    rows: list[list[float]] = np.loadtxt(
        example_models / "reference.csv", delimiter=",", ndmin=2
    ).tolist()
    return rows


def _counted(server: Any) -> dict[str, float]:
    """Request, batch and prediction samples of the server's exposition."""
    text = httpx.get(server.metrics_url).text
    return {
        f"{entry.name}{sorted(entry.labels.items())}": entry.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith(("modelfleet_request", "modelfleet_predict", "modelfleet_batch"))
        and family.name != "modelfleet_requests_in_flight"
        for entry in family.samples
    }


def _infer(server: Any, rows: list[list[float]]) -> dict[str, Any]:
    body = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [len(rows), 16], "data": rows}]
    }
    response = httpx.post(f"{server.url}/v2/models/fraud/infer", json=body)
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def test_replay_and_live_sample_on_a_real_server(start_server: Any, example_models: Path) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"),
        MODELFLEET_MODEL_NAME="fraud",
        MODELFLEET_REVISION="r3",
        MODELFLEET_LIVE_SAMPLE_ROWS="64",
    )
    server.wait_ready()
    reference = _reference(example_models)
    for start in range(0, 100, 5):  # 100 live rows in 20 requests
        _infer(server, reference[start : start + 5])
    before = _counted(server)
    with httpx.Client(base_url=_admin(server), timeout=30) as admin:
        replayed = admin.post(REPLAY, json={"rows": reference})
        assert replayed.status_code == 200, replayed.text
        answer = replayed.json()
        sample = admin.get(SAMPLE).json()
        bad = admin.post(REPLAY, json={"rows": [[1.0, 2.0]]})
        assert admin.get(SAMPLE, params={"limit": 10}).json()["rows"] == reference[90:100]
    assert _counted(server) == before  # replays are counted in no metric
    assert (answer["model"], answer["revision"], answer["kind"]) == ("fraud", "r3", "classifier")
    assert len(answer["classes"]) == len(answer["scores"]) == 512
    assert (sample["capacity"], sample["features"]) == (64, 16)
    assert sample["rows"] == reference[36:100]  # the newest 64 live rows, oldest first
    assert bad.status_code == 400
    assert "rows[0] must be a list of 16 feature values" in bad.json()["error"]
    live = _infer(server, reference[:256])  # what the same rows get on the inference route
    assert answer["classes"][:256] == live["label"]
    np.testing.assert_allclose(np.ravel(answer["scores"][:256]), live["probabilities"])


def test_admin_routes_only_on_the_metrics_port(shared_server: Any) -> None:
    off = httpx.get(f"{_admin(shared_server)}{SAMPLE}")
    assert off.status_code == 404
    assert "live sample is off" in off.json()["error"]
    assert httpx.get(shared_server.metrics_url).status_code == 200
    on_http_port = httpx.post(f"{shared_server.url}{REPLAY}", json={"rows": [[0.0] * 16]})
    assert on_http_port.status_code == 404  # the routed port never serves them


def test_paired_replay_tells_the_silent_bug_from_an_honest_retrain(
    start_server: Any, example_models: Path
) -> None:
    """Replaying reference.csv to v1 and to each variant, the way the operator's paired
    gate does, measures the agreement train_models.py recorded."""
    stems = ("model", "model-v2", "model-permuted", "model-relabelled")
    servers = {
        stem: start_server(
            MODELFLEET_MODEL_URI=str(example_models / f"{stem}.txt"),
            MODELFLEET_MODEL_NAME="fraud",
            MODELFLEET_LIGHTGBM_BACKEND="native",  # the engine train_models.py measured with
        )
        for stem in stems
    }
    reference = _reference(example_models)
    answers = {}
    for stem, server in servers.items():
        server.wait_ready()
        response = httpx.post(f"{_admin(server)}{REPLAY}", json={"rows": reference}, timeout=30)
        assert response.status_code == 200, response.text
        answers[stem] = response.json()
    recorded = json.loads((example_models / "models.json").read_text())["versus_model"]
    stable = np.array(answers["model"]["classes"])
    agreement = {
        stem: float(np.mean(np.array(answers[stem]["classes"]) == stable)) for stem in stems[1:]
    }
    for stem in stems[1:]:
        assert round(agreement[stem], 4) == recorded[stem]["agreement"], stem
    assert agreement["model-v2"] > 0.95
    assert agreement["model-permuted"] < 0.5
    assert agreement["model-relabelled"] < 0.6
