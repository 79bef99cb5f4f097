"""Prediction histograms, predicted-class counts and input quality per feature, through the
real app: the exposition (parsed by prometheus_client's parser) counts exactly what was
sent and what the model answered, computed here independently of the server's code."""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.server.predictions import DEFAULT_VALUE_EDGES, PROBABILITY_EDGES

IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}
FEATURES = 6


def _exposition(plane: Any) -> dict[str, Any]:
    text = generate_latest(plane.metrics.registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], family: str, sample: str) -> list[Any]:
    if family not in families:
        return []
    return [
        s
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in IDENTITY.items())
    ]


def _by(families: dict[str, Any], family: str, sample: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in _samples(families, family, sample)}


def _histogram(
    families: dict[str, Any], output: str
) -> tuple[dict[str, float], float | None, float]:
    """(cumulative count by le, sum, count) of one output's prediction histogram; OpenMetrics
    drops _sum (and _count) when an edge is negative: then the count is the +Inf bucket."""
    name = "modelfleet_prediction"
    buckets = {
        s.labels["le"]: s.value
        for s in _samples(families, name, f"{name}_bucket")
        if s.labels["output"] == output
    }
    total = [
        s.value for s in _samples(families, name, f"{name}_sum") if s.labels["output"] == output
    ]
    count = [
        s.value for s in _samples(families, name, f"{name}_count") if s.labels["output"] == output
    ]
    return buckets, (total[0] if total else None), (count[0] if count else buckets["+Inf"])


def _expected_cumulative(values: list[float], edges: tuple[float, ...]) -> dict[str, float]:
    """Prometheus `le` buckets counted one value at a time (the server does it vectorised)."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_left(edges, value)] += 1
    cumulative, running = {}, 0
    for edge, count in zip([*(repr(float(e)) for e in edges), "+Inf"], counts, strict=True):
        running += count
        cumulative[edge] = float(running)
    return cumulative


def _post(client: Any, rows: np.ndarray[Any, Any], model: str = "model") -> None:
    data = [[None if math.isnan(v) else v for v in row] for row in rows.tolist()]
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP64", "shape": [len(data), FEATURES], "data": data}
        ]
    }
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text


def _rows(count: int, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(scale=1.5, size=(count, FEATURES))


def test_binary_probability_histogram_and_class_counts(
    serve: Any, connect: Any, model_dir: Path
) -> None:
    app, plane = serve("binary.txt")
    client = connect(app)
    rows = _rows(90, seed=5)
    for start in range(0, 90, 30):  # three requests of 30 rows
        _post(client, rows[start : start + 30])
    client.post("/v2/models/model/infer", content=b"{")  # a 400 is not a prediction

    positive = np.asarray(lightgbm.Booster(model_file=str(model_dir / "binary.txt")).predict(rows))
    families = _exposition(plane)
    buckets, total, count = _histogram(families, "probabilities[1]")
    assert buckets == _expected_cumulative(positive.tolist(), PROBABILITY_EDGES)
    assert count == 90
    assert total == pytest.approx(float(positive.sum()))
    # column 0 is 1 - column 1: not a series of its own
    outputs = {
        s.labels["output"]
        for s in _samples(families, "modelfleet_prediction", "modelfleet_prediction_count")
    }
    assert outputs == {"probabilities[1]"}
    classes = _by(
        families, "modelfleet_predicted_class", "modelfleet_predicted_class_total", "class"
    )
    expected_ones = int((positive > 0.5).sum())
    assert classes == {"0": 90 - expected_ones, "1": expected_ones}


def test_multiclass_histogram_per_class(serve: Any, connect: Any, model_dir: Path) -> None:
    app, plane = serve("multiclass.txt")
    client = connect(app)
    rows = _rows(40, seed=6)
    _post(client, rows[:25])
    _post(client, rows[25:])
    probabilities = np.asarray(
        lightgbm.Booster(model_file=str(model_dir / "multiclass.txt")).predict(rows)
    )
    families = _exposition(plane)
    for k in range(3):
        buckets, total, count = _histogram(families, f"probabilities[{k}]")
        assert buckets == _expected_cumulative(probabilities[:, k].tolist(), PROBABILITY_EDGES)
        assert count == 40
        assert total == pytest.approx(float(probabilities[:, k].sum()))
    predicted = np.argmax(probabilities, axis=1)
    classes = _by(
        families, "modelfleet_predicted_class", "modelfleet_predicted_class_total", "class"
    )
    assert classes == {
        str(k): float((predicted == k).sum()) for k in range(3) if (predicted == k).any()
    }
    assert sum(classes.values()) == 40


def test_regression_uses_the_configured_edges(serve: Any, connect: Any, model_dir: Path) -> None:
    edges = (-2.0, -0.5, 0.0, 0.25, 1.0, 3.0)
    app, plane = serve("regression.txt", prediction_buckets="-2,-0.5,0,0.25,1,3")
    client = connect(app)
    rows = _rows(50, seed=7)
    _post(client, rows)
    predictions = np.asarray(
        lightgbm.Booster(model_file=str(model_dir / "regression.txt")).predict(rows)
    )
    families = _exposition(plane)
    buckets, total, count = _histogram(families, "predictions")
    assert buckets == _expected_cumulative(predictions.tolist(), edges)
    assert count == 50
    assert total is None  # negative edges: no _sum in the exposition
    assert (
        _samples(families, "modelfleet_predicted_class", "modelfleet_predicted_class_total") == []
    )


def test_regression_default_edges(serve: Any, connect: Any, model_dir: Path) -> None:
    app, plane = serve("regression.txt")
    rows = _rows(20, seed=8)
    _post(connect(app), rows)
    predictions = np.asarray(
        lightgbm.Booster(model_file=str(model_dir / "regression.txt")).predict(rows)
    )
    buckets, _, _ = _histogram(_exposition(plane), "predictions")
    assert buckets == _expected_cumulative(predictions.tolist(), DEFAULT_VALUE_EDGES)


def test_lightgbm_input_quality_from_feature_infos(serve: Any, connect: Any) -> None:
    app, plane = serve("binary.txt")
    client = connect(app)
    ranges = plane.model.metadata.feature_ranges
    assert set(ranges) == {f"f{i}" for i in range(FEATURES)}
    rows = np.zeros((10, FEATURES))
    rows[[0, 3, 7], 1] = np.nan  # f1 missing in 3 rows
    rows[4, 2] = np.nan  # f2 missing in 1 row
    rows[[1, 2], 0] = ranges["f0"][1] + 1.0  # f0 above its trained maximum in 2 rows
    rows[5, 0] = ranges["f0"][0] - 0.01  # … and below its minimum in 1
    rows[6, 4] = ranges["f4"][1] * 10  # f4 above in 1 row
    rows[8, 3] = ranges["f3"][1]  # the trained maximum itself is inside the range
    _post(client, rows[:6])
    _post(client, rows[6:])
    _post(client, rows[:2])  # rows 0 and 1 again: f1 missing once more, f0 above once more
    families = _exposition(plane)
    missing = _by(families, "modelfleet_input_missing", "modelfleet_input_missing_total", "feature")
    outside = _by(
        families, "modelfleet_input_out_of_range", "modelfleet_input_out_of_range_total", "feature"
    )
    assert missing == {"f0": 0, "f1": 4, "f2": 1, "f3": 0, "f4": 0, "f5": 0}
    assert outside == {"f0": 4, "f1": 0, "f2": 0, "f3": 0, "f4": 1, "f5": 0}


def test_onnx_counts_missing_values_and_ranges_only_when_given(serve: Any, connect: Any) -> None:
    rows = np.zeros((8, FEATURES))
    rows[[1, 2], 0] = np.nan
    rows[3, 3] = 5.0
    rows[4, 3] = -5.0
    rows[5, 0] = 1.5

    app, plane = serve("tree.onnx")
    assert plane.model.metadata.handles_missing  # tree ensembles route NaN
    _post(connect(app), rows)
    families = _exposition(plane)
    missing = _by(families, "modelfleet_input_missing", "modelfleet_input_missing_total", "feature")
    assert missing == {"0": 2, "1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    assert "modelfleet_input_out_of_range" not in families or not _samples(
        families, "modelfleet_input_out_of_range", "modelfleet_input_out_of_range_total"
    )

    app, plane = serve("tree.onnx", feature_ranges='{"0": [-1, 1], "3": [-2, 2]}')
    _post(connect(app), rows)
    families = _exposition(plane)
    outside = _by(
        families, "modelfleet_input_out_of_range", "modelfleet_input_out_of_range_total", "feature"
    )
    assert outside == {"0": 1, "3": 2}


def test_onnx_classifier_counts_its_label_output(serve: Any, connect: Any) -> None:
    app, plane = serve("logistic.onnx")
    rows = _rows(30, seed=9).astype(np.float32)
    body = {
        "inputs": [
            {
                "name": "X",
                "datatype": "FP32",
                "shape": [30, FEATURES],
                "data": rows.ravel().tolist(),
            }
        ]
    }
    name = plane.model.metadata.input.name
    body["inputs"][0]["name"] = name
    response = connect(app).post("/v2/models/model/infer", json=body)
    assert response.status_code == 200, response.text
    answer = {o["name"]: o["data"] for o in response.json()["outputs"]}
    labels = np.asarray(answer["label"])
    families = _exposition(plane)
    classes = _by(
        families, "modelfleet_predicted_class", "modelfleet_predicted_class_total", "class"
    )
    assert classes == {str(k): float((labels == k).sum()) for k in np.unique(labels).tolist()}
    probabilities = np.asarray(answer["probabilities"]).reshape(30, 2)[:, 1]
    buckets, _, count = _histogram(families, "probabilities[1]")
    assert count == 30
    assert buckets == _expected_cumulative(probabilities.tolist(), PROBABILITY_EDGES)


def test_turned_off_no_prediction_metrics(serve: Any, connect: Any) -> None:
    app, plane = serve("binary.txt", prediction_metrics=False)
    _post(connect(app), _rows(5, seed=1))
    families = _exposition(plane)
    for name in (
        "modelfleet_prediction",
        "modelfleet_predicted_class",
        "modelfleet_input_missing",
        "modelfleet_input_out_of_range",
    ):
        assert name not in families
    assert families["modelfleet_requests"].samples[0].value == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prediction_buckets": "1,1,2"}, "increasing"),
        ({"prediction_buckets": "1,inf"}, "finite"),
        ({"prediction_buckets": "a,b"}, "float"),
        ({"feature_ranges": "{not json"}, "MODELFLEET_FEATURE_RANGES is not JSON"),
        ({"feature_ranges": '{"f0": [2, 1]}'}, "low must be"),
    ],
)
def test_bad_prediction_settings_are_refused(
    make_settings: Any, overrides: dict[str, str], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        make_settings("binary.txt", **overrides)


def test_prediction_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelfleet.server.settings import ServerSettings

    monkeypatch.setenv("MODELFLEET_MODEL_URI", "model.onnx")
    monkeypatch.setenv("MODELFLEET_PREDICTION_BUCKETS", "0.5, 1, 10")
    monkeypatch.setenv("MODELFLEET_FEATURE_RANGES", '{"0": [0, 1], "age": [18, 99]}')
    monkeypatch.setenv("MODELFLEET_PREDICTION_METRICS", "false")
    settings = ServerSettings()
    assert settings.prediction_buckets == (0.5, 1.0, 10.0)
    assert settings.feature_ranges == {"0": (0.0, 1.0), "age": (18.0, 99.0)}
    assert settings.prediction_metrics is False


def test_bulk_counting_equals_counting_each_batch(serve: Any) -> None:
    """Batches are counted in bulk (past FLUSH_BATCHES, and at every scrape): the result is
    the same as counting the whole traffic at once, and nothing pending is lost."""
    from modelfleet.server.predictions import FLUSH_BATCHES, PredictionStats

    _, plane = serve("binary.txt")
    runtime, metadata = plane.model.runtime, plane.model.metadata
    rows = np.random.default_rng(12).uniform(-0.5, 0.5, size=(FLUSH_BATCHES + 45, FEATURES))
    rows[::7, 3] = np.nan
    rows[::5, 0] = 100.0
    one_by_one = PredictionStats(IDENTITY, metadata)
    for index in range(rows.shape[0]):
        one_by_one.observe(rows[index : index + 1], runtime.predict(rows[index : index + 1]))
    assert len(one_by_one._pending) == 45  # the first FLUSH_BATCHES were counted already
    at_once = PredictionStats(IDENTITY, metadata)
    at_once.observe(rows, runtime.predict(rows))

    def text(stats: PredictionStats) -> str:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(stats)
        return generate_latest(registry).decode()

    def without_sums(exposition: str) -> list[str]:
        return [line for line in exposition.splitlines() if "_sum{" not in line]

    exposition = text(one_by_one)
    assert without_sums(exposition) == without_sums(text(at_once))  # sums: float order
    assert one_by_one.histograms[0].total == pytest.approx(at_once.histograms[0].total)
    assert 'modelfleet_input_missing_total{deployment="fraud",feature="f3"' in exposition
    assert one_by_one.missing[3] == len(range(0, rows.shape[0], 7))
    assert one_by_one.out_of_range[0] == len(range(0, rows.shape[0], 5))
