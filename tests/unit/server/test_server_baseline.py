"""The drift-monitoring baseline: rows read as the operator's reference sets are, edges derived
from them (quantiles, ties, constant and categorical features, NaN), live values counted on those
edges in bulk, and the exposition of issue 15's contract, read back with prometheus_client's
parser. Expected figures are computed here one value at a time, independently of the server."""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from modelfleet.operator import replay
from modelfleet.server.baseline import (
    MAX_CATEGORIES,
    BaselineError,
    cumulative_shares,
    derive_edges,
    parse_rows,
    read_rows,
    summarise,
)
from modelfleet.server.predictions import PROBABILITY_EDGES

FEATURES = 6
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


def _linear_quantile(sorted_values: list[float], p: float) -> float:
    """The textbook linear-interpolation quantile (numpy's default method), by hand."""
    position = (len(sorted_values) - 1) * p
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    weight = position - below
    return sorted_values[below] + weight * (sorted_values[above] - sorted_values[below])


# -- edges -------------------------------------------------------------------------------------


def test_numeric_edges_are_the_quantiles_at_k_over_bins() -> None:
    values = np.random.default_rng(3).normal(size=997)
    edges = derive_edges(values, 10, categorical=False)
    ordered = sorted(values.tolist())
    expected = [_linear_quantile(ordered, k / 10) for k in range(1, 10)]
    assert edges.tolist() == pytest.approx(expected, rel=0, abs=1e-12)
    assert len(edges) == 9


def test_tied_quantiles_become_one_edge() -> None:
    values = np.array([0.0] * 70 + [float(v) for v in range(1, 31)])  # 70 % zeros
    edges = derive_edges(values, 10, categorical=False)
    ordered = sorted(values.tolist())
    expected = sorted({_linear_quantile(ordered, k / 10) for k in range(1, 10)})
    assert edges.tolist() == pytest.approx(expected)
    assert edges[0] == 0.0
    assert list(edges).count(0.0) == 1
    assert all(b > a for a, b in itertools.pairwise(edges))


def test_a_constant_feature_has_one_edge_holding_everything() -> None:
    values = np.full(50, 2.5)
    edges = derive_edges(values, 10, categorical=False)
    assert edges.tolist() == [2.5]
    assert cumulative_shares(values, edges).tolist() == [1.0, 1.0]


def test_categorical_edges_are_the_values_by_frequency_at_most_64() -> None:
    rng = np.random.default_rng(5)
    small = rng.choice([3.0, 0.0, 7.0, 1.0], size=200)
    assert derive_edges(small, 10, categorical=True).tolist() == [0.0, 1.0, 3.0, 7.0]
    # 80 categories: value v appears 100 - v times; the 64 most frequent are 0 … 63
    many = np.concatenate([np.full(100 - v, float(v)) for v in range(80)])
    rng.shuffle(many)
    edges = derive_edges(many, 10, categorical=True)
    assert len(edges) == MAX_CATEGORIES
    assert edges.tolist() == [float(v) for v in range(64)]
    # equal counts: the lower values are kept (deterministic on every pod)
    tied = np.repeat(np.arange(70, dtype=float)[::-1], 2)
    assert derive_edges(tied, 10, categorical=True).tolist() == [float(v) for v in range(64)]


def test_no_values_no_edges() -> None:
    assert derive_edges(np.zeros(0), 10, categorical=False).size == 0


@pytest.mark.parametrize("categorical", [False, True])
def test_infinite_values_are_never_edges(categorical: bool) -> None:
    values = np.array([-math.inf, 1.0, 2.0, 3.0, math.inf, math.inf, math.inf, math.inf])
    edges = derive_edges(values, 4, categorical=categorical)
    assert np.isfinite(edges).all()
    assert edges.size > 0
    assert cumulative_shares(values, edges)[-1] == 1.0
    summary = summarise(values[:, None], 4, [categorical], np.array([-9.0]), np.array([9.0]))
    assert summary.stddev[0] == pytest.approx(float(np.std([1.0, 2.0, 3.0])))
    assert summary.out_of_range_ratio[0] == 5 / 8


def test_cumulative_shares_include_values_on_the_edge() -> None:
    values = np.array([1.0, 2.0, 2.0, 3.0, 10.0])
    shares = cumulative_shares(values, np.array([2.0, 3.0]))
    assert shares.tolist() == [3 / 5, 4 / 5, 1.0]


def test_summary_keeps_nan_out_of_the_bins_and_counts_it_missing() -> None:
    rows = np.array(
        [
            [1.0, math.nan, 5.0],
            [2.0, math.nan, -1.0],
            [3.0, math.nan, 9.0],
            [math.nan, math.nan, 7.0],
        ]
    )
    low, high = np.array([0.0, -np.inf, 0.0]), np.array([2.5, np.inf, 8.0])
    summary = summarise(rows, 4, [False, False, False], low, high)
    assert summary.rows == 4
    assert summary.missing_ratio.tolist() == [0.25, 1.0, 0.0]
    # f0: 3.0 above 2.5; the NaN is missing, not out of range. f2: -1 below, 9 above
    assert summary.out_of_range_ratio.tolist() == [0.25, 0.0, 0.5]
    assert summary.edges[0].tolist() == pytest.approx([1.5, 2.0, 2.5])
    assert summary.input_share[0] is not None
    assert summary.input_share[0].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])
    assert summary.stddev[0] == pytest.approx(float(np.std([1.0, 2.0, 3.0])))
    assert summary.edges[1].size == 0
    assert summary.input_share[1] is None
    assert math.isnan(summary.stddev[1])


# -- reading rows ------------------------------------------------------------------------------

PARITY_TEXTS = [
    "1,2.5,3\n-1,0,4e-3\n",  # numpy's fast path
    "1,2.5,3\n\n-1,,nan\n",  # a blank line, an empty value, nan
    '1,"2.5",NULL\n 4 , 5 ,6\n',  # quotes, null as text, spaces
    '{"rows": [[1, null, 3], [2, 3.5, "nan"]]}',
    '{"rows": [[1, "2", 3]]}',
]


@pytest.mark.parametrize("text", PARITY_TEXTS)
def test_rows_read_like_the_operators_reference_sets(text: str) -> None:
    ours = parse_rows(text, "ref", 1000, 3)
    theirs = replay.parse_rows(text, "ref")
    expected = np.array([[math.nan if v is None else v for v in row] for row in theirs])
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1,2\n3,4\n", "rows have 2 values, the model takes 3"),
        ("1,2,3\n4,5\n", "row 2 has 2 values, the model takes 3"),
        ("1,x,3\n", "row 1: 'x' is not a number"),
        ('{"rows": [[1, true, 3]]}', "row 1: True is not a number"),
        ('{"rows": 3}', "must be a list of lists"),
        ('{"data": []}', 'not JSON of the form {"rows"'),
        ("\n\n", "no rows"),
    ],
)
def test_malformed_rows_say_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(BaselineError, match=match):
        parse_rows(text, "ref", 1000, 3)


def test_only_the_first_rows_are_read(tmp_path: Path) -> None:
    csv_text = "\n".join(f"{i},0,0" for i in range(10))
    assert parse_rows(csv_text, "ref", 4, 3)[:, 0].tolist() == [0, 1, 2, 3]
    json_text = json.dumps({"rows": [[i, 0, 0] for i in range(10)]})
    assert parse_rows(json_text, "ref", 3, 3)[:, 0].tolist() == [0, 1, 2]
    # a large CSV is read only as far as the rows wanted (in 1 MiB chunks): its tail, 2.6 MB
    # further on and not even UTF-8, is never decoded
    path = tmp_path / "train.csv"
    head = "".join(f"{i},1,2\n\n" for i in range(200_000))  # blank lines do not count
    path.write_bytes(head.encode() + b"\xff\xfe,0,0\n")
    rows = read_rows(path.as_uri(), 3000, 3)
    assert rows[:, 0].tolist() == [float(i) for i in range(3000)]
    with pytest.raises(BaselineError, match="not UTF-8"):
        read_rows(str(path), 300_000, 3)


def test_a_baseline_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"1,2,3\n\xff\xfe,0,0\n")
    with pytest.raises(BaselineError, match="not UTF-8"):
        read_rows(str(path), 100, 3)


# -- through the served app --------------------------------------------------------------------


def _families(plane: Any) -> dict[str, Any]:
    text = generate_latest(plane.metrics.registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _by(families: dict[str, Any], family: str, sample: str, *labels: str) -> dict[Any, float]:
    if family not in families:
        return {}
    found = {}
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in IDENTITY.items()):
            key = tuple(s.labels[label] for label in labels)
            found[key[0] if len(key) == 1 else key] = s.value
    return found


def _post(client: Any, rows: np.ndarray[Any, Any]) -> None:
    data = [[None if math.isnan(v) else v for v in row] for row in rows.tolist()]
    shape = [len(data), rows.shape[1]]
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": shape, "data": data}]}
    response = client.post("/v2/models/model/infer", json=body)
    assert response.status_code == 200, response.text


def _le(edge: float) -> str:
    return repr(float(edge))


def _write_baseline(path: Path, rows: np.ndarray[Any, Any]) -> Path:
    lines = [",".join("" if math.isnan(v) else repr(v) for v in row) for row in rows.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def baseline_rows() -> np.ndarray[Any, Any]:
    rows = np.random.default_rng(21).normal(size=(400, FEATURES))
    rows[:40, 2] = np.nan  # f2: 10 % missing in the baseline
    rows[:, 4] = np.round(rows[:, 4])  # f4: few distinct values, tied quantiles
    return rows


@pytest.mark.parametrize("bins", [5, 40])
def test_live_values_are_counted_on_the_baseline_edges(
    serve: Any, connect: Any, tmp_path: Path, baseline_rows: np.ndarray[Any, Any], bins: int
) -> None:
    """5 bins: every feature counted by comparison with its edges; 40: most features have
    more than COMPARED_EDGES edges and are binary-searched, f4 (few values) still compared."""
    path = _write_baseline(tmp_path / "baseline.csv", baseline_rows)
    app, plane = serve("binary.txt", baseline_uri=str(path), baseline_bins=bins)
    edges = {f"f{j}": plane.predictions.baseline.edges[j].tolist() for j in range(FEATURES)}
    counting = plane.predictions._inputs
    if bins == 40:
        assert counting.compared == [4]
        assert counting.searched == [0, 1, 2, 3, 5]
    else:
        assert counting.searched == []
    live = np.random.default_rng(8).normal(loc=0.3, size=(300, FEATURES))
    live[::7, 1] = np.nan  # missing: counted as missing, never in a bin
    live[0, 0] = edges["f0"][2]  # exactly on an edge: in that bucket (le)
    live[1, 3] = 1e9  # above every edge: +Inf only
    client = connect(app)
    for start in range(0, 300, 50):
        _post(client, live[start : start + 50])
    for row in live[:3]:  # and one-row requests (batched, flushed in bulk)
        _post(client, row[None, :])
    sent = np.concatenate([live, live[:3]])
    families = _families(plane)
    buckets = _by(families, "modelfleet_input", "modelfleet_input_bucket", "feature", "le")
    counts = _by(families, "modelfleet_input", "modelfleet_input_count", "feature")
    sums = _by(families, "modelfleet_input", "modelfleet_input_sum", "feature")
    for j in range(FEATURES):
        name = f"f{j}"
        values = [v for v in sent[:, j].tolist() if not math.isnan(v)]
        per_bucket = [0] * (len(edges[name]) + 1)
        for value in values:
            per_bucket[bisect.bisect_left(edges[name], value)] += 1
        running = 0
        for edge, count in zip([*map(_le, edges[name]), "+Inf"], per_bucket, strict=True):
            running += count
            assert buckets[(name, edge)] == running, (name, edge)
        assert counts[name] == len(values)
        assert sums[name] == pytest.approx(math.fsum(values))
    assert counts["f1"] == len(sent) - int(np.isnan(sent[:, 1]).sum())
    rows_total = _by(families, "modelfleet_input_rows", "modelfleet_input_rows_total", "model")
    assert rows_total == {"model": len(sent)}
    missing = _by(families, "modelfleet_input_missing", "modelfleet_input_missing_total", "feature")
    assert missing["f1"] == int(np.isnan(sent[:, 1]).sum())


def test_baseline_gauges_match_the_baseline(
    serve: Any, tmp_path: Path, model_dir: Path, baseline_rows: np.ndarray[Any, Any]
) -> None:
    path = _write_baseline(tmp_path / "baseline.csv", baseline_rows)
    _, plane = serve("binary.txt", baseline_uri=str(path), baseline_bins=5)
    families = _families(plane)
    assert _by(families, "modelfleet_baseline_loaded", "modelfleet_baseline_loaded", "model") == {
        "model": 1.0
    }
    assert _by(families, "modelfleet_baseline_rows", "modelfleet_baseline_rows", "model") == {
        "model": 400.0
    }
    name = "modelfleet_baseline_input_share"
    shares = _by(families, name, name, "feature", "le")
    ranges = plane.model.metadata.feature_ranges
    for j in range(FEATURES):
        feature, column = f"f{j}", baseline_rows[:, j]
        values = sorted(v for v in column.tolist() if not math.isnan(v))
        quantiles = sorted({_linear_quantile(values, k / 5) for k in range(1, 5)})
        les = [*map(_le, quantiles), "+Inf"]
        assert sorted(le for f, le in shares if f == feature) == sorted(les)
        for edge, le in zip([*quantiles, math.inf], les, strict=True):
            at_or_below = sum(1 for v in values if v <= edge)
            assert shares[(feature, le)] == pytest.approx(at_or_below / len(values))
        stddev = _by(families, f"{name[:-6]}_stddev", f"{name[:-6]}_stddev", "feature")
        mean = math.fsum(values) / len(values)
        spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        assert stddev[feature] == pytest.approx(spread)
        low, high = ranges[feature]
        outside = sum(1 for v in column.tolist() if v < low or v > high) / len(column)
        ratio = "modelfleet_baseline_input_out_of_range_ratio"
        assert _by(families, ratio, ratio, "feature")[feature] == pytest.approx(outside)
    missing = "modelfleet_baseline_input_missing_ratio"
    assert _by(families, missing, missing, "feature") == {
        "f0": 0.0, "f1": 0.0, "f2": 0.1, "f3": 0.0, "f4": 0.0, "f5": 0.0,
    }  # fmt: skip
    scores = np.asarray(
        lightgbm.Booster(model_file=str(model_dir / "binary.txt")).predict(baseline_rows)
    )
    prediction = "modelfleet_baseline_prediction_share"
    shares = _by(families, prediction, prediction, "output", "le")
    assert {output for output, _ in shares} == {"probabilities[1]"}
    for edge in [*PROBABILITY_EDGES, math.inf]:
        le = "+Inf" if edge == math.inf else _le(edge)
        expected = sum(1 for s in scores.tolist() if s <= edge) / len(scores)
        assert shares[("probabilities[1]", le)] == pytest.approx(expected)


def test_categorical_feature_counted_by_value(serve: Any, connect: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(200, FEATURES))
    rows[:, 5] = rng.choice([0.0, 1.0, 2.0, 3.0], size=200, p=[0.4, 0.3, 0.2, 0.1])
    path = _write_baseline(tmp_path / "baseline.csv", rows)
    app, plane = serve("categorical.txt", baseline_uri=str(path))
    live = rng.normal(size=(40, FEATURES))
    live[:, 5] = [2.0] * 30 + [0.0] * 10
    _post(connect(app), live)
    families = _families(plane)
    buckets = _by(families, "modelfleet_input", "modelfleet_input_bucket", "feature", "le")
    assert {le: v for (f, le), v in buckets.items() if f == "f5"} == {
        "0.0": 10, "1.0": 10, "2.0": 40, "3.0": 40, "+Inf": 40,
    }  # fmt: skip
    name = "modelfleet_baseline_input_share"
    shares = {le: v for (f, le), v in _by(families, name, name, "feature", "le").items()}
    assert set(shares) >= {"0.0", "1.0", "2.0", "3.0", "+Inf"}
    # f5 is categorical: no trained range, so no out-of-range ratio for it
    ratio = "modelfleet_baseline_input_out_of_range_ratio"
    assert "f5" not in _by(families, ratio, ratio, "feature")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file or directory"),
        ("1,2\n", "rows have 2 values, the model takes 6"),
        ('{"rows": [[1, 2, 3, 4, 5, "six"]]}', "'six' is not a number"),
    ],
)
def test_an_unusable_baseline_is_one_log_line_and_the_server_serves(
    serve: Any,
    connect: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content: str | None,
    reason: str,
) -> None:
    path = tmp_path / "baseline.csv"
    if content is not None:
        path.write_text(content)
    with caplog.at_level(logging.INFO, logger="modelfleet.server.dataplane"):
        app, plane = serve("binary.txt", baseline_uri=str(path))
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert reason in errors[0].getMessage()
    assert "serving without drift monitoring" in errors[0].getMessage()
    _post(connect(app), np.zeros((2, FEATURES)))
    families = _families(plane)
    loaded = _by(families, "modelfleet_baseline_loaded", "modelfleet_baseline_loaded", "model")
    assert loaded == {"model": 0.0}
    assert "modelfleet_input" not in families
    assert "modelfleet_baseline_rows" not in families
    assert "modelfleet_baseline_input_share" not in families
    rows_total = _by(families, "modelfleet_input_rows", "modelfleet_input_rows_total", "model")
    assert rows_total == {"model": 2.0}


def test_without_a_baseline_only_loaded_0_and_the_row_count(serve: Any, connect: Any) -> None:
    app, plane = serve("binary.txt")
    _post(connect(app), np.zeros((3, FEATURES)))
    families = _families(plane)
    assert [n for n in families if n.startswith("modelfleet_baseline")] == [
        "modelfleet_baseline_loaded"
    ]
    assert "modelfleet_input" not in families
    assert _by(families, "modelfleet_input_rows", "modelfleet_input_rows_total", "model") == {
        "model": 3.0
    }


def test_the_baseline_is_scored_in_batches(
    serve: Any, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfleet.server import baseline

    monkeypatch.setattr(baseline, "SCORE_BATCH", 7)  # 50 rows: 8 predict calls
    rows = np.random.default_rng(2).normal(size=(50, FEATURES))
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"rows": rows.tolist()}))
    _, plane = serve("regression.txt", baseline_uri=str(path), prediction_buckets="-1,0,1")
    scores = np.asarray(
        lightgbm.Booster(model_file=str(model_dir / "regression.txt")).predict(rows)
    )
    edges, cumulative = plane.predictions.baseline.prediction_share["predictions"]
    assert edges.tolist() == [-1.0, 0.0, 1.0]
    expected = [sum(1 for s in scores if s <= e) / 50 for e in (-1.0, 0.0, 1.0)] + [1.0]
    assert cumulative.tolist() == pytest.approx(expected)


@pytest.mark.parametrize("bins", [1, 51])
def test_bins_outside_2_to_50_are_refused(make_settings: Any, bins: int) -> None:
    with pytest.raises(ValidationError, match="baseline_bins"):
        make_settings(baseline_bins=bins)


def test_settings_come_from_the_contracts_env_vars(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_BASELINE_URI", "s3://bucket/train.csv")
    monkeypatch.setenv("MODELFLEET_BASELINE_BINS", "20")
    monkeypatch.setenv("MODELFLEET_BASELINE_ROWS", "5000")
    settings = make_settings()
    assert (settings.baseline_uri, settings.baseline_bins, settings.baseline_rows) == (
        "s3://bucket/train.csv", 20, 5000,
    )  # fmt: skip
    monkeypatch.delenv("MODELFLEET_BASELINE_BINS")
    monkeypatch.delenv("MODELFLEET_BASELINE_ROWS")
    assert (make_settings().baseline_bins, make_settings().baseline_rows) == (10, 100_000)


def test_a_baseline_is_read_through_fsspec_like_a_model() -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/baselines/train.json", json.dumps({"rows": [[1, None, 3], [4, 5, 6]]}).encode())
    try:
        rows = read_rows("memory://baselines/train.json", 100, 3)
        np.testing.assert_array_equal(rows, [[1.0, math.nan, 3.0], [4.0, 5.0, 6.0]])
        with pytest.raises(BaselineError, match=r"cannot read memory://baselines/absent\.csv"):
            read_rows("memory://baselines/absent.csv", 100, 3)
    finally:
        memory.rm("/baselines", recursive=True)


def test_a_baseline_is_read_over_http(tmp_path: Path) -> None:
    import http.server
    import threading

    (tmp_path / "train.csv").write_text("1,2,3\n4,5,6\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert read_rows(f"{base}/train.csv", 100, 3).tolist() == [[1, 2, 3], [4, 5, 6]]
        with pytest.raises(BaselineError, match="HTTP 404"):
            read_rows(f"{base}/absent.csv", 100, 3)
    finally:
        server.shutdown()
        server.server_close()
