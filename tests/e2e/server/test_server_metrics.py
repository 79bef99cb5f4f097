"""The metrics port: names and labels of the interface, counts that match what was sent,
a histogram fine enough for p99s; valid exposition (prometheus_client's parser always,
promtool when it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "r7", "model": "fraud"}


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for entry in families[family].samples:
        if entry.name == sample and all(entry.labels.get(k) == v for k, v in labels.items()):
            return float(entry.value)
    return 0.0


def test_metrics_count_inference_requests_by_code(start_server: Any, example_models: Path) -> None:
    server = start_server(
        MODELFLEET_MODEL_URI=str(example_models / "model.txt"),
        MODELFLEET_MODEL_NAME="fraud",
        MODELFLEET_DEPLOYMENT="fraud",
        MODELFLEET_SLOT="green",
        MODELFLEET_REVISION="r7",
        MODELFLEET_FAULT_ERROR_RATE="0.1",
    )
    server.wait_ready()
    body = (example_models / "request.json").read_bytes()
    with httpx.Client(base_url=server.url) as client:
        codes = [client.post("/v2/models/fraud/infer", content=body).status_code for _ in range(30)]
        client.post("/v1/models/fraud:predict", content=b"not json")
        client.get("/v2/health/ready")
        client.get("/v2/models/fraud")
    assert codes.count(500) == 3  # every tenth request, exactly
    text = httpx.get(server.metrics_url).text
    families = _families(text)
    requests = "modelfleet_requests_total"
    assert _value(families, "modelfleet_requests", requests, **IDENTITY, code="200") == 27
    assert _value(families, "modelfleet_requests", requests, **IDENTITY, code="500") == 3
    assert _value(families, "modelfleet_requests", requests, **IDENTITY, code="400") == 1
    duration = "modelfleet_request_duration_seconds"
    assert _value(families, duration, f"{duration}_count", **IDENTITY) == 31
    buckets = [s.labels["le"] for s in families[duration].samples if s.name.endswith("_bucket")]
    assert {"0.0005", "0.001", "0.005", "0.05", "0.5", "5.0"} <= set(buckets)
    info = [s for s in families["modelfleet_model_info"].samples if s.value == 1]
    assert info[0].labels["format"] == "lightgbm"
    assert info[0].labels["slot"] == "green"
    for name in (
        "modelfleet_batch_size",
        "modelfleet_requests_in_flight",
        "modelfleet_model_load_seconds",
    ):
        assert name in families
    assert "process_resident_memory_bytes" in families
    _promtool_agrees(text)


def _promtool_agrees(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # prometheus_client's parser above already read every line
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
