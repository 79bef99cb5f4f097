"""The prediction cache in real `modelfleet serve` processes: a repeated row is answered from
the cache after the first call (the hit counter moves, the model does not run again) and the
prediction metrics still count it; with a real Redis (Debian's redis-server, started here on
loopback by tests/redis_server.py) the pods of one revision share answers and two revisions never do."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import running_redis


def _sample(server: Any, sample: str, **labels: str) -> float:
    text = httpx.get(server.metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for entry in family.samples:
            if entry.name == sample and all(entry.labels.get(k) == v for k, v in labels.items()):
                return float(entry.value)
    return 0.0


def _infer(server: Any, body: bytes) -> list[float]:
    answer = httpx.post(f"{server.url}/v2/models/fraud/infer", content=body, timeout=10)
    assert answer.status_code == 200, answer.text
    outputs = {output["name"]: output["data"] for output in answer.json()["outputs"]}
    probabilities: list[float] = outputs["probabilities"]
    return probabilities


def _env(model: Path, revision: str, **cache: str) -> dict[str, str]:
    return {
        "MODELFLEET_MODEL_URI": str(model),
        "MODELFLEET_MODEL_NAME": "fraud",
        "MODELFLEET_DEPLOYMENT": "fraud",
        "MODELFLEET_SLOT": "blue",
        "MODELFLEET_REVISION": revision,
        # the engine is part of the key: keep it fixed (no switch to the ONNX twin mid-test)
        "MODELFLEET_LIGHTGBM_BACKEND": "native",
        **cache,
    }


def test_a_repeated_row_is_served_from_the_cache(start_server: Any, example_models: Path) -> None:
    server = start_server(**_env(example_models / "model.txt", "r1", MODELFLEET_CACHE="memory"))
    server.wait_ready()
    body = (example_models / "request.json").read_bytes()
    answers = [_infer(server, body) for _ in range(4)]
    assert all(answer == answers[0] for answer in answers)
    identity = {"deployment": "fraud", "revision": "r1"}
    assert _sample(server, "modelfleet_cache_requests_total", **identity, result="miss") == 1
    assert _sample(server, "modelfleet_cache_requests_total", **identity, result="hit") == 3
    assert _sample(server, "modelfleet_batch_size_count", **identity) == 1  # scored once
    # every answer still counts, so drift and monitoring see the traffic as it was
    assert _sample(server, "modelfleet_input_rows_total", **identity) == 4
    positive = {**identity, "output": "probabilities[1]", "le": "+Inf"}
    assert _sample(server, "modelfleet_prediction_bucket", **positive) == 4
    assert _sample(server, "modelfleet_requests_total", **identity, code="200") == 4


def _wait_for_keys(url: str, count: int) -> None:
    """The answer goes back before its cache write: wait until Redis holds it."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 5
    while client.dbsize() < count:
        assert time.monotonic() < deadline, f"Redis holds {client.dbsize()} keys, not {count}"
        time.sleep(0.01)
    client.close()


def test_redis_shares_answers_within_a_revision_never_across(
    start_server: Any, example_models: Path, tmp_path: Path
) -> None:
    with running_redis(tmp_path) as store:
        cache = {"MODELFLEET_CACHE": "redis", "MODELFLEET_CACHE_REDIS_URL": store.url}
        v1_a = start_server(**_env(example_models / "model.txt", "r1", **cache))
        v1_b = start_server(**_env(example_models / "model.txt", "r1", **cache))
        v2 = start_server(**_env(example_models / "model-v2.txt", "r2", **cache))
        for server in (v1_a, v1_b, v2):
            server.wait_ready()
        body = (example_models / "request.json").read_bytes()

        first = _infer(v1_a, body)
        _wait_for_keys(store.url, 1)
        assert _infer(v1_b, body) == first  # another pod of r1: answered from Redis
        assert _sample(v1_b, "modelfleet_cache_requests_total", result="hit") == 1
        assert _sample(v1_b, "modelfleet_batch_size_count") == 0  # its model never ran

        own = _infer(v2, body)  # r2 asks the same row: scored by its own model
        assert _sample(v2, "modelfleet_cache_requests_total", result="miss") == 1
        assert own != first
        expected = _own_answer(example_models / "model-v2.txt", body)
        assert own == pytest.approx(expected, rel=1e-6)
        _wait_for_keys(store.url, 2)
        assert _infer(v2, body) == own  # and from then on from Redis, still its own
        assert _infer(v1_a, body) == first
        assert _sample(v2, "modelfleet_cache_requests_total", result="hit") == 1
        assert _sample(v2, "modelfleet_input_rows_total") == 2

        store.stop()  # Redis goes away: answers still come, scored, without waiting for it
        started = time.monotonic()
        assert _infer(v1_a, body) == first
        assert _infer(v1_a, body) == first
        assert time.monotonic() - started < 1.0
        assert _sample(v1_a, "modelfleet_cache_requests_total", result="miss") == 3


def _own_answer(model: Path, body: bytes) -> list[float]:
    """What the model file itself answers, computed here by LightGBM without the server."""
    import lightgbm
    import numpy as np

    tensor = json.loads(body)["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    probabilities: list[float] = (
        np.asarray(lightgbm.Booster(model_file=str(model)).predict(rows)).ravel().tolist()
    )
    return probabilities
