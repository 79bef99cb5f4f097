"""The prediction cache (server/cache.py): the LRU and its TTL on a fake clock, keys that
never cross revisions, batched requests looked up row by row, the Redis store's encoding
and failures, and through the real app: the hit/miss counter and the prediction metrics
counting cached answers as answered rows."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest
from server_helpers import sample

from modelfleet.server.cache import (
    REDIS_COOLDOWN_S,
    CachedScorer,
    MemoryStore,
    RedisStore,
    decode_answer,
    encode_answer,
)

FEATURES = 6
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answer(value: float) -> dict[str, Any]:
    return {"predictions": np.array([value])}


def test_memory_store_keeps_the_most_recently_used() -> None:
    store = MemoryStore(max_entries=2, ttl_s=60, clock=FakeClock())
    store.put(b"a", _answer(1))
    store.put(b"b", _answer(2))
    assert store.get(b"a") is not None  # a is now more recent than b
    store.put(b"c", _answer(3))
    assert store.get(b"b") is None
    assert store.get(b"a") is not None
    assert store.get(b"c") is not None
    assert len(store) == 2


def test_memory_store_forgets_after_the_ttl() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=10, ttl_s=30, clock=clock)
    store.put(b"a", _answer(1))
    clock.now += 29.9
    assert store.get(b"a") is not None
    clock.now += 0.1
    assert store.get(b"a") is None
    assert len(store) == 0  # an expired entry is dropped, not kept until evicted
    store.put(b"a", _answer(2))  # a fresh answer starts a fresh TTL
    clock.now += 29
    assert store.get(b"a")["predictions"].tolist() == [2.0]  # type: ignore[index]


class Recorder:
    """The scoring function and the two observers a CachedScorer is given."""

    def __init__(self) -> None:
        self.scored: list[list[float]] = []
        self.observed: list[int] = []
        self.lookups: list[tuple[int, int]] = []

    async def score(self, rows: Any) -> dict[str, Any]:
        self.scored.append(rows[:, 0].tolist())
        return {"predictions": rows.sum(axis=1), "label": (rows[:, 0] > 0).astype(np.int64)}

    def observe(self, rows: Any, outputs: Any) -> None:
        self.observed.append(rows.shape[0])

    def count(self, hits: int, misses: int) -> None:
        self.lookups.append((hits, misses))


def _scorer(store: Any, namespace: bytes, recorder: Recorder) -> CachedScorer:
    return CachedScorer(store, namespace, recorder.observe, recorder.count)


def test_a_repeated_row_is_answered_from_the_cache() -> None:
    recorder = Recorder()
    scorer = _scorer(MemoryStore(100, 60), b"rev-1\0", recorder)
    row = np.array([[1.0, 2.0, 3.0]])
    first = asyncio.run(scorer.score(row, recorder.score))
    second = asyncio.run(scorer.score(row.copy(), recorder.score))
    assert recorder.scored == [[1.0]]  # scored once
    assert recorder.lookups == [(0, 1), (1, 0)]
    assert recorder.observed == [1]  # the cached answer was observed too
    assert second["predictions"].tolist() == first["predictions"].tolist() == [6.0]


def test_the_key_holds_the_revision() -> None:
    store = MemoryStore(100, 60)
    recorder = Recorder()
    row = np.array([[1.0, 2.0, 3.0]])
    asyncio.run(_scorer(store, b"rev-1\0", recorder).score(row, recorder.score))
    asyncio.run(_scorer(store, b"rev-2\0", recorder).score(row, recorder.score))
    assert recorder.scored == [[1.0], [1.0]]  # the second revision scored its own
    assert recorder.lookups == [(0, 1), (0, 1)]
    assert len(store) == 2


def test_a_batch_is_looked_up_row_by_row_and_answered_in_order() -> None:
    recorder = Recorder()
    scorer = _scorer(MemoryStore(100, 60), b"rev\0", recorder)
    rows = np.arange(15, dtype=np.float64).reshape(5, 3) - 6
    asyncio.run(scorer.score(rows[[1, 3]], recorder.score))
    answer = asyncio.run(scorer.score(rows, recorder.score))
    assert recorder.scored == [[-3.0, 3.0], [-6.0, 0.0, 6.0]]  # only rows 0, 2, 4 scored again
    assert recorder.lookups == [(0, 2), (2, 3)]
    assert recorder.observed == [2]  # the two cached rows (scored rows are counted by the plane)
    assert answer["predictions"].tolist() == rows.sum(axis=1).tolist()
    assert answer["label"].tolist() == (rows[:, 0] > 0).astype(np.int64).tolist()
    assert answer["label"].dtype == np.int64


@pytest.mark.parametrize(
    "answer",
    [
        {"probabilities": np.array([[0.1, 0.7, 0.2]]), "label": np.array([1], dtype=np.int64)},
        {"variable": np.array([[0.5]], dtype=np.float32)},
        {"predictions": np.array([2.5])},
    ],
)
def test_answers_travel_as_bytes_unchanged(answer: dict[str, Any]) -> None:
    decoded = decode_answer(encode_answer(answer))
    assert list(decoded) == list(answer)
    for name, value in answer.items():
        assert decoded[name].dtype == value.dtype
        assert decoded[name].shape == value.shape
        assert decoded[name].tolist() == value.tolist()


class BrokenRedis:
    """A Redis client whose every call fails, like one that is down; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def mget(self, keys: Any) -> Any:
        self.calls += 1
        raise ConnectionError("connection refused")

    def pipeline(self, transaction: bool = False) -> Any:
        self.calls += 1
        raise ConnectionError("connection refused")

    async def aclose(self) -> None:
        return None


def test_a_redis_that_fails_is_a_miss_then_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    """Every answer still comes (scored); after a failure Redis is not asked for a second, so
    an outage costs one timeout a second, not one per request; one warning, not one a request."""
    recorder = Recorder()
    clock = FakeClock()
    broken = BrokenRedis()
    row = np.array([[1.0, 2.0, 3.0]])

    async def requests(count: int, store: RedisStore) -> None:
        scorer = _scorer(store, b"rev\0", recorder)
        for _ in range(count):
            assert (await scorer.score(row, recorder.score))["predictions"].tolist() == [6.0]

    async def scenario() -> None:
        store = RedisStore("redis://unused", ttl_s=60, client=broken, clock=clock)
        await requests(3, store)
        assert broken.calls == 1  # the first lookup failed; the write and the next two skipped
        clock.now += REDIS_COOLDOWN_S
        await requests(1, store)
        assert broken.calls == 2  # asked again after the cooldown
        await store.close()

    with caplog.at_level(logging.WARNING, logger="modelfleet.server.cache"):
        asyncio.run(scenario())
    assert recorder.lookups == [(0, 1)] * 4
    assert len(recorder.scored) == 4
    warnings = [r for r in caplog.records if "Redis" in r.getMessage()]
    assert len(warnings) == 1


def _body(rows: list[list[float]]) -> dict[str, Any]:
    tensor = {"name": "input", "datatype": "FP64", "shape": [len(rows), FEATURES], "data": rows}
    return {"inputs": [tensor]}


def test_the_app_counts_hits_and_cached_answers(serve: Any, connect: Any) -> None:
    app, plane = serve("regression.txt", cache="memory")
    client = connect(app)
    row = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5]
    answers = [client.post("/v2/models/model/infer", json=_body([row])) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers), answers[0].text
    values = {tuple(a.json()["outputs"][0]["data"]) for a in answers}
    assert len(values) == 1
    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_cache_requests_total", **IDENTITY, result="miss") == 1
    assert sample(registry, "modelfleet_cache_requests_total", **IDENTITY, result="hit") == 2
    # the model ran once, but every answer counts: drift and monitoring see the same traffic
    assert sample(registry, "modelfleet_batch_size_count", **IDENTITY) == 1
    assert sample(registry, "modelfleet_input_rows_total", **IDENTITY) == 3
    everything = {"output": "predictions", "le": "+Inf"}  # no _count: the edges go below 0
    assert sample(registry, "modelfleet_prediction_bucket", **IDENTITY, **everything) == 3
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 3
    # a batch holding the cached row and a new one: one hit, one miss
    client.post("/v2/models/model/infer", json=_body([row, [0.0] * FEATURES]))
    assert sample(registry, "modelfleet_cache_requests_total", **IDENTITY, result="hit") == 3
    assert sample(registry, "modelfleet_input_rows_total", **IDENTITY) == 5


def test_without_a_cache_no_series_and_no_lookups(serve: Any, connect: Any) -> None:
    app, plane = serve("regression.txt")
    client = connect(app)
    row = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5]
    for _ in range(2):
        client.post("/v2/models/model/infer", json=_body([row]))
    assert plane.cache is None
    registry = plane.metrics.registry
    assert registry.get_sample_value(
        "modelfleet_cache_requests_total", {**IDENTITY, "result": "hit"}
    ) is None  # fmt: skip
    assert sample(registry, "modelfleet_batch_size_count", **IDENTITY) == 2


def test_two_revisions_never_share_answers(serve: Any, connect: Any) -> None:
    """Two revisions in one store (as two deployments sharing a Redis would be)."""
    app_1, plane_1 = serve("regression.txt", cache="memory", revision="r1")
    app_2, plane_2 = serve("regression.txt", cache="memory", revision="r2")
    plane_2.cache.store = plane_1.cache.store
    row = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5]
    connect(app_1).post("/v2/models/model/infer", json=_body([row]))
    connect(app_2).post("/v2/models/model/infer", json=_body([row]))
    assert plane_1.cache.namespace != plane_2.cache.namespace
    assert sample(plane_2.metrics.registry, "modelfleet_batch_size_count", **IDENTITY) == 1


def test_redis_cache_needs_a_url(make_settings: Any) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="MODELFLEET_CACHE_REDIS_URL"):
        make_settings(cache="redis")
    assert make_settings(cache="redis", cache_redis_url="redis://127.0.0.1:6379/0").cache == "redis"
