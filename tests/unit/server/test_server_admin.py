"""The metrics port's WSGI app through httpx (in-process): `/metrics` unchanged, the replay
route answering like the inference route yet counted nowhere, the live sample (off by
default, bounded), and every client mistake a 4xx naming what to fix."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.server.admin import MAX_REPLAY_ROWS, REPLAY_PATH, SAMPLE_PATH, AdminApp

FEATURES = 6


def _rows(count: int, seed: int = 0) -> list[list[float]]:
    rows: list[list[float]] = np.random.default_rng(seed).normal(size=(count, FEATURES)).tolist()
    return rows


def _infer(client: Any, rows: list[list[float]]) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP64", "shape": [len(rows), FEATURES], "data": rows}
        ]
    }
    response = client.post("/v2/models/model/infer", json=body)
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def _families(plane: Any) -> dict[str, Any]:
    text = generate_latest(plane.metrics.registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _counts(plane: Any) -> dict[str, float]:
    """Every sample of the request and prediction metrics, by name and labels."""
    counted = {}
    for name, family in _families(plane).items():
        if name.startswith(("modelfleet_request", "modelfleet_predict", "modelfleet_batch")):
            for entry in family.samples:
                counted[f"{entry.name}{sorted(entry.labels.items())}"] = entry.value
    return counted


@pytest.fixture
def admin(serve: Any, connect: Any) -> Iterator[Callable[..., tuple[httpx.Client, Any, Any]]]:
    """admin(model=..., **settings) -> (httpx client of the metrics port, inference client,
    data plane)."""
    clients: list[httpx.Client] = []

    def make(model: str = "multiclass.txt", **overrides: Any) -> tuple[httpx.Client, Any, Any]:
        app, plane = serve(model, revision="r9", **overrides)
        wsgi = AdminApp(plane.metrics.registry)
        wsgi.attach(plane)
        transport = httpx.WSGITransport(app=wsgi)
        clients.append(httpx.Client(transport=transport, base_url="http://metrics"))
        return clients[-1], connect(app), plane

    yield make
    for client in clients:
        client.close()


def test_metrics_are_served_as_before(admin: Any) -> None:
    metrics, inference, _ = admin()
    _infer(inference, _rows(3))
    response = metrics.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["modelfleet_requests"].samples[0].value == 1
    assert "modelfleet_requests_in_flight" in families  # the name KEDA's inflight trigger reads
    assert "modelfleet_inflight_requests" not in families
    assert "process_resident_memory_bytes" in families
    filtered = metrics.get("/metrics", params={"name[]": "modelfleet_ready"}).text
    assert "modelfleet_ready{" in filtered
    assert "modelfleet_requests_total" not in filtered


def test_replay_answers_like_the_inference_route(admin: Any) -> None:
    metrics, inference, _ = admin()
    rows = _rows(40, seed=3)
    rows[0][2] = None  # type: ignore[call-overload]  # null: a missing value
    expected = _infer(inference, rows)
    response = metrics.post(REPLAY_PATH, json={"rows": rows})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "model"
    assert answer["revision"] == "r9"
    assert answer["kind"] == "classifier"
    assert answer["classes"] == expected["label"]["data"]
    np.testing.assert_array_equal(
        np.array(answer["scores"]).ravel(), expected["probabilities"]["data"]
    )
    assert np.array(answer["scores"]).shape == (40, 3)


@pytest.mark.parametrize(
    ("model", "kind", "width"),
    [("binary.txt", "classifier", 2), ("regression.txt", "regressor", 1), ("logistic.onnx", "classifier", 2)],
)  # fmt: skip
def test_replay_kinds(admin: Any, model: str, kind: str, width: int) -> None:
    metrics, _, plane = admin(model)
    rows = _rows(5)
    answer = metrics.post(REPLAY_PATH, json={"rows": rows}).json()
    assert answer["kind"] == kind
    scores = np.array(answer["scores"])
    assert scores.shape == (5, width)
    direct = plane.model.runtime.predict(np.asarray(rows, dtype=plane.model.metadata.input_dtype))
    primary = direct[plane.model.metadata.primary_output].reshape(5, -1)
    np.testing.assert_allclose(scores, primary, rtol=1e-6)
    if kind == "classifier":
        assert answer["classes"] == np.argmax(primary, axis=1).tolist()
    else:
        assert answer["classes"] is None


def test_replayed_rows_are_counted_nowhere(admin: Any) -> None:
    metrics, inference, plane = admin(live_sample_rows=16)
    _infer(inference, _rows(2, seed=1))
    before_counts, before_sample = _counts(plane), metrics.get(SAMPLE_PATH).json()
    for _ in range(3):
        assert metrics.post(REPLAY_PATH, json={"rows": _rows(50, seed=2)}).status_code == 200
    assert _counts(plane) == before_counts
    assert metrics.get(SAMPLE_PATH).json() == before_sample
    assert len(before_sample["rows"]) == 2


def test_live_sample_is_off_by_default(admin: Any) -> None:
    metrics, inference, plane = admin()
    assert plane.live_sample is None
    _infer(inference, _rows(3))
    response = metrics.get(SAMPLE_PATH)
    assert response.status_code == 404
    assert "live sample is off" in response.json()["error"]
    assert "MODELFLEET_LIVE_SAMPLE_ROWS" in response.json()["error"]


def test_live_sample_keeps_the_newest_rows_in_order(admin: Any) -> None:
    metrics, inference, _ = admin(live_sample_rows=8)
    sent = _rows(13, seed=5)
    sent[12][0] = None  # type: ignore[call-overload]
    for start in range(0, 13, 3):  # batches of 3, 3, 3, 3, 1
        _infer(inference, sent[start : start + 3])
    answer = metrics.get(SAMPLE_PATH).json()
    assert answer["capacity"] == 8
    assert answer["features"] == FEATURES
    assert answer["rows"] == sent[-8:]  # NaN comes back as null
    assert metrics.get(SAMPLE_PATH, params={"limit": 3}).json()["rows"] == sent[-3:]
    assert len(metrics.get(SAMPLE_PATH, params={"limit": 100}).json()["rows"]) == 8


@pytest.mark.parametrize("limit", ["0", "-1", "x", "1.5", ""])
def test_live_sample_bad_limit(admin: Any, limit: str) -> None:
    metrics, _, _ = admin(live_sample_rows=4)
    response = metrics.get(f"{SAMPLE_PATH}?limit={limit}")
    assert response.status_code == 400
    assert "limit must be a positive integer" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[[1, 2]]", '{"rows"'),
        (b'{"row": []}', '{"rows"'),
        (b'{"rows": []}', "at least one row"),
        (b'{"rows": [[1, 2, 3]]}', "rows[0] must be a list of 6 feature values"),
        (b'{"rows": [[1, 2, 3, 4, 5, 6], [1]]}', "rows[1] must be a list of 6"),
        (b'{"rows": [1, 2, 3, 4, 5, 6]}', "rows[0] must be a list of 6 feature values"),
        (b'{"rows": [[1, 2, 3, 4, 5, "6"]]}', "rows[0] holds '6': values must be numbers"),
        (b'{"rows": [[1, 2, 3, 4, 5, true]]}', "values must be numbers, or null"),
        (b'{"rows": [[1, 2, 3, 4, 5, [6]]]}', "values must be numbers"),
    ],
)
def test_replay_client_mistakes_are_400(admin: Any, body: bytes, message: str) -> None:
    metrics, _, _ = admin()
    response = metrics.post(REPLAY_PATH, content=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_replay_row_limit_and_missing_values_where_unsupported(admin: Any) -> None:
    metrics, _, _ = admin()
    too_many = {"rows": [[0.0] * FEATURES] * (MAX_REPLAY_ROWS + 1)}
    response = metrics.post(REPLAY_PATH, json=too_many)
    assert response.status_code == 400
    assert f"send at most {MAX_REPLAY_ROWS}" in response.json()["error"]
    exact = metrics.post(REPLAY_PATH, json={"rows": too_many["rows"][1:]})
    assert exact.status_code == 200
    assert len(exact.json()["classes"]) == MAX_REPLAY_ROWS
    onnx, _, _ = admin("logistic.onnx")
    missing = onnx.post(REPLAY_PATH, json={"rows": [[None, 1, 2, 3, 4, 5]]})
    assert missing.status_code == 400
    assert "does not handle missing values" in missing.json()["error"]


def test_wrong_methods_and_routes(admin: Any) -> None:
    metrics, _, _ = admin(live_sample_rows=4)
    response = metrics.get(REPLAY_PATH)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert "answers POST only" in response.json()["error"]
    response = metrics.post(SAMPLE_PATH, json={})
    assert (response.status_code, response.headers["allow"]) == (405, "GET")
    response = metrics.get("/modelfleet/v1/replays")
    assert response.status_code == 404
    assert REPLAY_PATH in response.json()["error"]


def _call(app: AdminApp, environ: dict[str, Any]) -> tuple[str, bytes]:
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], body


def test_body_without_length_or_too_large(admin: Any) -> None:
    _, _, plane = admin()
    app = AdminApp(plane.metrics.registry)
    app.attach(plane)
    environ = {"PATH_INFO": REPLAY_PATH, "REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO()}
    status, body = _call(app, environ)
    assert status == "411 Length Required"
    assert b"Content-Length" in body
    status, body = _call(app, {**environ, "CONTENT_LENGTH": str(10**9)})
    assert status == "413 Request Entity Too Large"
    assert f"send at most {MAX_REPLAY_ROWS} rows".encode() in body


def test_not_ready_is_503(admin: Any, serve: Any) -> None:
    metrics, _, plane = admin()
    plane.start_draining()
    response = metrics.post(REPLAY_PATH, json={"rows": _rows(1)})
    assert response.status_code == 503
    assert "shutting down" in response.json()["error"]
    _, unattached = serve()
    app = AdminApp(unattached.metrics.registry)  # the model is loaded before attach
    status, body = _call(
        app, {"PATH_INFO": REPLAY_PATH, "REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO()}
    )
    assert status.startswith("503")
    assert b"still loading" in body


def test_replays_run_safely_beside_inference(admin: Any) -> None:
    """Replays on other threads while the event loop scores: every answer is exact."""
    metrics, inference, plane = admin(live_sample_rows=64)
    rows = _rows(200, seed=9)
    expected = metrics.post(REPLAY_PATH, json={"rows": rows}).json()
    with ThreadPoolExecutor(4) as pool:
        replays = [pool.submit(metrics.post, REPLAY_PATH, json={"rows": rows}) for _ in range(8)]
        for start in range(0, 200, 10):
            outputs = _infer(inference, rows[start : start + 10])
            assert outputs["label"]["data"] == expected["classes"][start : start + 10]
        for replay in replays:
            assert replay.result().json() == expected
    assert plane.live_sample.recent().shape == (64, FEATURES)
