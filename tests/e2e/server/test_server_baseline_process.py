"""Drift monitoring's server side with real parts: a `modelfleet serve` process serving the
example LightGBM model (16 features) with a baseline file, its metrics port read directly and
through a real Prometheus scraping it (histograms with negative `le` keep `_count` and `_sum`
there too), and a server whose baseline cannot be read, which serves all the same."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from modelfleet_dev.harness.stack import LocalStack, Server
from prometheus_client.parser import text_string_to_metric_families

FEATURES = 16
BINS = 8
IDENTITY = {"deployment": "fraud", "slot": "blue", "revision": "r1", "model": "fraud"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("baseline-stack"), scrape_interval="1s").start()
    try:
        yield stack
    finally:
        stack.close()


def _families(server: Server) -> dict[str, Any]:
    text = httpx.get(f"http://{server.metrics_address}/metrics", timeout=10).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], family: str, sample: str) -> list[Any]:
    if family not in families:
        return []
    return [
        s
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in IDENTITY.items())
    ]


def _infer(server: Server, rows: np.ndarray[Any, Any]) -> None:
    data = [None if math.isnan(v) else v for v in rows.reshape(-1).tolist()]
    tensor = {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": data}
    response = httpx.post(
        f"http://{server.address}/v2/models/fraud/infer", json={"inputs": [tensor]}, timeout=10
    )
    assert response.status_code == 200, response.text


def _quantile(ordered: list[float], p: float) -> float:
    position = (len(ordered) - 1) * p
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def _wait_for(stack: LocalStack, promql: str, expected: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    seen: float | None = None
    while time.monotonic() < deadline:
        result = stack.prometheus.query(promql)
        if result:
            seen = float(result[0]["value"][1])
            if seen == expected:
                return seen
        time.sleep(0.3)
    pytest.fail(f"Prometheus: {promql} = {seen}, expected {expected}")


def test_a_real_server_counts_inputs_on_its_baseline_edges(
    stack: LocalStack, example_models: Path
) -> None:
    reference = example_models / "reference.csv"
    server = stack.start_server(
        "with-baseline",
        deployment="fraud",
        slot="blue",
        revision="r1",
        model=example_models / "model.txt",
        env={
            "MODELFLEET_BASELINE_URI": reference.resolve().as_uri(),
            "MODELFLEET_BASELINE_BINS": str(BINS),
        },
    )
    baseline = np.loadtxt(reference, delimiter=",", ndmin=2)
    live = np.random.default_rng(15).normal(loc=0.5, size=(120, FEATURES))
    live[::4, 3] = np.nan  # f3 missing in a quarter of the rows
    for start in range(0, 120, 40):
        _infer(server, live[start : start + 40])
    for row in live[:5]:
        _infer(server, row[None, :])
    sent = np.concatenate([live, live[:5]])

    families = _families(server)
    loaded = _samples(families, "modelfleet_baseline_loaded", "modelfleet_baseline_loaded")
    assert [s.value for s in loaded] == [1.0]
    rows = _samples(families, "modelfleet_baseline_rows", "modelfleet_baseline_rows")
    assert [s.value for s in rows] == [float(baseline.shape[0])]
    buckets = _samples(families, "modelfleet_input", "modelfleet_input_bucket")
    counts = {
        s.labels["feature"]: s.value
        for s in _samples(families, "modelfleet_input", "modelfleet_input_count")
    }
    for j in range(FEATURES):
        feature = f"f{j}"
        ordered = sorted(baseline[:, j].tolist())
        edges = sorted({_quantile(ordered, k / BINS) for k in range(1, BINS)})
        got = {s.labels["le"]: s.value for s in buckets if s.labels["feature"] == feature}
        values = [v for v in sent[:, j].tolist() if not math.isnan(v)]
        expected = {repr(float(e)): float(sum(1 for v in values if v <= e)) for e in edges}
        expected["+Inf"] = float(len(values))
        assert set(got) == set(expected), feature
        for le, value in expected.items():
            assert got[le] == value, (feature, le)
        assert counts[feature] == len(values)
    assert counts["f3"] == len(sent) - int(np.isnan(sent[:, 3]).sum())
    total = _samples(families, "modelfleet_input_rows", "modelfleet_input_rows_total")
    assert [s.value for s in total] == [float(len(sent))]

    # Prometheus ingests all of it: _count and _sum beside negative edges, the baseline gauges
    where = 'deployment="fraud",slot="blue",revision="r1"'
    _wait_for(stack, f'modelfleet_input_count{{{where},feature="f3"}}', counts["f3"])
    sum_f0 = math.fsum(v for v in sent[:, 0].tolist())
    result: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not result and time.monotonic() < deadline:
        result = stack.prometheus.query(f'modelfleet_input_sum{{{where},feature="f0"}}')
        time.sleep(0.3)
    assert result
    assert float(result[0]["value"][1]) == pytest.approx(sum_f0)
    _wait_for(stack, f"modelfleet_baseline_loaded{{{where}}}", 1.0)
    _wait_for(stack, f"count(modelfleet_input_bucket{{{where}}})", float(len(buckets)))
    shares = f"count(modelfleet_baseline_input_share{{{where}}})"
    _wait_for(stack, shares, float(len(buckets)))  # the same (feature, le) pairs
    _wait_for(stack, f"count(modelfleet_baseline_prediction_share{{{where}}})", 3.0 * 30)


def test_an_unreadable_baseline_leaves_the_server_serving(
    stack: LocalStack, example_models: Path, tmp_path: Path
) -> None:
    missing = (tmp_path / "no-such-baseline.csv").as_uri()
    server = stack.start_server(
        "without-baseline",
        deployment="fraud",
        slot="blue",
        revision="r1",
        model=example_models / "model.txt",
        env={"MODELFLEET_BASELINE_URI": missing},
    )
    _infer(server, np.zeros((2, FEATURES)))
    families = _families(server)
    loaded = _samples(families, "modelfleet_baseline_loaded", "modelfleet_baseline_loaded")
    assert [s.value for s in loaded] == [0.0]
    assert "modelfleet_input" not in families
    assert "modelfleet_baseline_input_share" not in families
    log = stack.processes.processes["without-baseline"].log.read_text()
    lines = [line for line in log.splitlines() if "baseline not used" in line]
    assert len(lines) == 1
    assert "no-such-baseline.csv" in lines[0]
    assert '"level": "error"' in lines[0] or '"level":"error"' in lines[0]
