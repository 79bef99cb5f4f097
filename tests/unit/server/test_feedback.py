"""Ground truth (server/feedback.py): the bounded map of answers, the label counters, and the
feedback route on the metrics port, through real models served in process."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from server_helpers import sample

from modelfleet.server.admin import FEEDBACK_PATH, AdminApp
from modelfleet.server.errors import InvalidInputError, MalformedRequestError
from modelfleet.server.feedback import FeedbackStore
from modelfleet.server.runtimes.base import ModelMetadata, TensorSpec

FEATURES = 6
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


def _metadata(task: str = "binary", classes: int = 2) -> ModelMetadata:
    outputs = (
        (TensorSpec("probabilities", "FP64", (-1, classes)), TensorSpec("label", "INT64", (-1,)))
        if classes
        else (TensorSpec("predictions", "FP64", (-1,)),)
    )
    return ModelMetadata(
        platform="lightgbm",
        backend="native",
        task=task,  # type: ignore[arg-type]
        input=TensorSpec("input", "FP64", (-1, FEATURES)),
        outputs=outputs,
        n_features=FEATURES,
        classes=classes,
        primary_output=outputs[0].name,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _labels(*pairs: tuple[str, Any]) -> bytes:
    return orjson.dumps({"labels": [{"id": i, "label": label} for i, label in pairs]})


def _probabilities(*rows: tuple[float, float]) -> dict[str, Any]:
    return {"probabilities": np.array(rows), "label": np.argmax(rows, axis=1)}


def test_labels_become_counts_and_the_answer_is_dropped() -> None:
    store = FeedbackStore(IDENTITY, _metadata())
    store.remember(b"a", _probabilities((0.2, 0.8)))
    store.remember(b"b", _probabilities((0.9, 0.1), (0.4, 0.6)))
    assert store.stored_rows == 3
    answer = orjson.loads(store.label(_labels(("a", 0), ("b", [0, 1]), ("zz", 1))))
    assert answer == {"labelled": 2, "rows": 3, "unknown": 1, "unknownIds": ["zz"]}
    assert store.rows == 3
    assert store.correct == 2  # a predicted 1, truth 0; b's rows both right
    expected = -(math.log(0.2) + math.log(0.9) + math.log(0.6))
    assert store.log_loss == pytest.approx(expected, rel=1e-6)
    assert store.stored_rows == 0
    again = orjson.loads(store.label(_labels(("a", 1))))  # labelled once: now unknown
    assert again["unknown"] == 1
    assert store.rows == 3
    assert store.unknown == 2


def test_a_certain_wrong_answer_has_a_finite_log_loss() -> None:
    store = FeedbackStore(IDENTITY, _metadata())
    store.remember(b"a", _probabilities((1.0, 0.0)))
    store.label(_labels(("a", 1)))
    assert store.log_loss == pytest.approx(-math.log(1e-15))


def test_regressor_counts_absolute_error() -> None:
    store = FeedbackStore(IDENTITY, _metadata("regression", 0))
    store.remember(b"r", {"predictions": np.array([2.5, -1.0])})
    store.label(_labels(("r", [3.0, -3.0])))
    assert store.rows == 2
    assert store.abs_error == pytest.approx(2.5)
    assert store.correct == 0


def test_the_same_id_twice_in_one_batch_counts_once() -> None:
    store = FeedbackStore(IDENTITY, _metadata())
    store.remember(b"a", _probabilities((0.2, 0.8)))
    answer = orjson.loads(store.label(_labels(("a", 1), ("a", 1))))
    assert (answer["labelled"], answer["unknown"], store.rows) == (1, 1, 1)


def test_answers_expire_and_the_oldest_go_first() -> None:
    clock = Clock()
    store = FeedbackStore(IDENTITY, _metadata(), max_rows=3, ttl_s=60, clock=clock)
    for index in range(4):
        store.remember(f"r{index}".encode(), _probabilities((0.5, 0.5)))
        clock.now += 10
    assert store.stored_rows == 3  # r0 evicted by size
    clock.now = 1000 + 10 + 60.5  # r1 (stamped 1010) is now older than the TTL
    answer = orjson.loads(store.label(_labels(("r0", 0), ("r1", 0), ("r2", 0), ("r3", 0))))
    assert answer["unknownIds"] == ["r0", "r1"]
    assert answer["rows"] == 2
    assert store.stored_rows == 0
    too_big = _probabilities(*[(0.5, 0.5)] * 4)
    store.remember(b"big", too_big)  # more rows than the whole map: not kept
    assert store.stored_rows == 0


def test_a_reused_id_keeps_the_newest_answer() -> None:
    store = FeedbackStore(IDENTITY, _metadata())
    store.remember(b"a", _probabilities((0.2, 0.8)))
    store.remember(b"a", _probabilities((0.9, 0.1), (0.9, 0.1)))
    assert store.stored_rows == 2
    store.label(_labels(("a", [0, 0])))
    assert store.correct == 2


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"{", MalformedRequestError, "not JSON"),
        (b'{"rows": []}', MalformedRequestError, '{"labels"'),
        (b'{"labels": []}', MalformedRequestError, "at least one"),
        (b'{"labels": [{"label": 1}]}', InvalidInputError, 'labels[0] needs "id"'),
        (b'{"labels": [{"id": 7, "label": 1}]}', InvalidInputError, 'labels[0] needs "id"'),
        (b'{"labels": [{"id": "a"}]}', InvalidInputError, 'labels[0] needs "label"'),
        (b'{"labels": [{"id": "a", "label": "yes"}]}', InvalidInputError, "a number"),
        (b'{"labels": [{"id": "a", "label": true}]}', InvalidInputError, "a number"),
        (b'{"labels": [{"id": "a", "label": []}]}', InvalidInputError, "a number"),
        (b'{"labels": [{"id": "a", "label": 2}]}', InvalidInputError, "integer from 0 to 1"),
        (b'{"labels": [{"id": "a", "label": 0.5}]}', InvalidInputError, "not a class"),
        (b'{"labels": [{"id": "a", "label": [0, 1]}]}', InvalidInputError, "one label per row"),
    ],
)
def test_a_bad_batch_says_what_to_fix_and_counts_nothing(
    body: bytes, error: type[Exception], words: str
) -> None:
    store = FeedbackStore(IDENTITY, _metadata())
    store.remember(b"a", _probabilities((0.2, 0.8)))
    store.remember(b"b", _probabilities((0.2, 0.8)))
    with pytest.raises(error, match=words.replace("[", r"\[").replace("(", r"\(")):
        store.label(body.replace(b"}]}", b'}, {"id": "b", "label": 1}]}', 1))
    assert (store.rows, store.unknown, store.stored_rows) == (0, 0, 2)  # b is not counted either


@pytest.fixture
def served(serve: Any, connect: Any) -> Iterator[Callable[..., tuple[httpx.Client, Any, Any]]]:
    """served(model, **settings) -> (metrics-port client, inference client, data plane)."""
    clients: list[httpx.Client] = []

    def make(model: str, **overrides: Any) -> tuple[httpx.Client, Any, Any]:
        app, plane = serve(model, **overrides)
        wsgi = AdminApp(plane.metrics.registry)
        wsgi.attach(plane)
        clients.append(httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://m"))
        return clients[-1], connect(app), plane

    yield make
    for client in clients:
        client.close()


def _infer(client: Any, rows: list[list[float]], request_id: str | None) -> tuple[str, Any]:
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [len(rows), FEATURES],
                        "data": rows}]}  # fmt: skip
    headers = {"x-request-id": request_id} if request_id else {}
    response = client.post("/v2/models/model/infer", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"], {o["name"]: o for o in response.json()["outputs"]}


def test_feedback_through_the_metrics_port_fills_the_counters(served: Any) -> None:
    metrics, inference, plane = served("multiclass.txt")
    rows = np.random.default_rng(4).normal(size=(5, FEATURES)).tolist()
    given, outputs = _infer(inference, rows[:2], "order-17")
    assert given == "order-17"  # the client's id is echoed
    made, more = _infer(inference, rows[2:3], None)
    assert made
    assert made != "order-17"
    v1 = inference.post("/v1/models/model:predict", json={"instances": rows[3:4]})
    v1_id = v1.headers["x-request-id"]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(2, 3)
    truth = [2, 0]
    response = metrics.post(
        FEEDBACK_PATH,
        json={"labels": [{"id": "order-17", "label": truth}, {"id": made, "label": 1},
                         {"id": v1_id, "label": 0}, {"id": "never", "label": 0}]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {"labelled": 3, "rows": 4, "unknown": 1, "unknownIds": ["never"]}
    registry = plane.metrics.registry
    labels = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}
    assert sample(registry, "modelfleet_feedback_rows_total", **labels) == 4
    assert sample(registry, "modelfleet_feedback_unknown_ids_total", **labels) == 1
    third = np.array(more["probabilities"]["data"]).reshape(1, 3)[0]
    v1_scores = np.array(v1.json()["predictions"][0])
    correct = sum(int(np.argmax(p) == t) for p, t in zip(probabilities, truth, strict=True))
    correct += int(np.argmax(third) == 1) + int(np.argmax(v1_scores) == 0)
    assert sample(registry, "modelfleet_feedback_correct_total", **labels) == correct
    loss = -np.log(probabilities[0, 2]) - np.log(probabilities[1, 0])
    loss += -np.log(third[1]) - np.log(v1_scores[0])
    assert sample(registry, "modelfleet_feedback_log_loss_sum", **labels) == pytest.approx(
        loss, rel=1e-5
    )
    assert sample(registry, "modelfleet_feedback_log_loss_count", **labels) == 4
    text = metrics.get("/metrics").text
    assert "modelfleet_feedback_abs_error" not in text  # a classifier has no MAE
    assert 'modelfleet_feedback_stored_rows{deployment="fraud"' in text


def test_regressor_feedback_counts_mae(served: Any) -> None:
    metrics, inference, plane = served("regression.txt")
    rows = np.random.default_rng(5).normal(size=(3, FEATURES)).tolist()
    request_id, outputs = _infer(inference, rows, None)
    predicted = np.array(outputs["predictions"]["data"])
    truth = [1.0, -2.0, 0.5]
    response = metrics.post(FEEDBACK_PATH, json={"labels": [{"id": request_id, "label": truth}]})
    assert response.json()["rows"] == 3
    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_feedback_abs_error_sum", **IDENTITY) == pytest.approx(
        float(np.abs(predicted - truth).sum()), rel=1e-6
    )
    assert sample(registry, "modelfleet_feedback_abs_error_count", **IDENTITY) == 3


def test_feedback_route_mistakes_are_4xx(served: Any) -> None:
    metrics, inference, _ = served("binary.txt")
    request_id, _ = _infer(inference, [[0.0] * FEATURES], None)
    bad = metrics.post(FEEDBACK_PATH, json={"labels": [{"id": request_id, "label": 3}]})
    assert bad.status_code == 400
    assert "integer from 0 to 1" in bad.json()["error"]
    assert metrics.get(FEEDBACK_PATH).status_code == 405
    huge = metrics.post(FEEDBACK_PATH, content=b" " * (5 * 1024 * 1024))
    assert huge.status_code == 413
    assert "fewer labels" in huge.json()["error"]
    fine = metrics.post(FEEDBACK_PATH, json={"labels": [{"id": request_id, "label": 1}]})
    assert fine.status_code == 200
    assert fine.json()["rows"] == 1


def test_feedback_off_is_a_404_and_keeps_nothing(served: Any) -> None:
    metrics, inference, plane = served("binary.txt", feedback_rows=0)
    _infer(inference, [[0.0] * FEATURES], "x")
    response = metrics.post(FEEDBACK_PATH, json={"labels": [{"id": "x", "label": 1}]})
    assert response.status_code == 404
    assert "MODELFLEET_FEEDBACK_ROWS" in response.json()["error"]
    assert plane.feedback is None
    assert "modelfleet_feedback" not in metrics.get("/metrics").text
