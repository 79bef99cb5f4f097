"""Per-tenant rate limits on real `modelfleet serve` processes: two replicas sharing one bucket in
a real Redis (started by the test) let through the configured burst and then the configured rate
(±5 %), whichever replica a request reaches; without Redis the per-pod split holds; a Redis that
goes away lets requests through (fail open) without slowing them. The 429s are counted in
modelfleet_rate_limited_total, never in modelfleet_requests_total."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer, running_redis

ROW = [0.5] * 16
BODY = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 16], "data": ROW}]}
INFER = "/v2/models/fraud/infer"
PER_MINUTE = 1200  # 20 a second: a minute's worth of arithmetic in a few seconds
BURST = 30


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _serve(
    start_server: Any, example_models: Path, per_minute: float = PER_MINUTE, **env: str
) -> list[Any]:
    servers = [
        start_server(
            MODELFLEET_MODEL_URI=str(example_models / "model.txt"),
            MODELFLEET_MODEL_NAME="fraud",
            MODELFLEET_DEPLOYMENT="fraud",
            MODELFLEET_SLOT=slot,
            MODELFLEET_REVISION="r1",
            MODELFLEET_RATE_LIMIT_REQUESTS_PER_MINUTE=str(per_minute),
            MODELFLEET_RATE_LIMIT_BURST=str(BURST),
            MODELFLEET_RATE_LIMIT_KEY="header:x-tenant",
            **env,
        )
        for slot in ("blue", "green")
    ]
    for server in servers:
        server.wait_ready()
    return servers


class Hammered:
    """What `_hammer` saw: answers by (replica index, code), and when each 200 was asked and
    answered, so the window in which its tokens were taken is known from both sides."""

    def __init__(self) -> None:
        self.codes: Counter[tuple[int, int]] = Counter()
        self.passed: list[tuple[float, float]] = []  # (sent, answered) of each 200

    def allowed(self, index: int | None = None) -> int:
        return sum(n for (i, code), n in self.codes.items() if code == 200 and index in (None, i))

    def window(self) -> tuple[float, float]:
        """The shortest and the longest the tokens' window can have been: from the first 200's
        answer to the last one's request, and from the first's request to the last's answer."""
        first = min(self.passed, key=lambda pair: pair[0])
        last = max(self.passed, key=lambda pair: pair[1])
        return last[0] - first[1], last[1] - first[0]

    def expected(self, per_minute: float, burst: float) -> tuple[float, float, float]:
        """Requests a bucket lets through over the window: least, midpoint, most."""
        shortest, longest = self.window()
        low, high = burst + per_minute / 60 * shortest, burst + per_minute / 60 * longest
        return low, (low + high) / 2, high


def _hammer(servers: list[Any], tenant: str, seconds: float) -> Hammered:
    """Two clients per replica send as fast as they get answers for `seconds`."""
    seen = Hammered()
    lock = threading.Lock()
    start = threading.Barrier(2 * len(servers) + 1)
    stop_at: list[float] = []

    def client(index: int) -> None:
        with httpx.Client(headers={"x-tenant": tenant}, timeout=10) as http:
            http.get(f"{servers[index].url}/v2/health/ready")  # connected before the clock runs
            start.wait()
            while (sent := time.monotonic()) < stop_at[0]:
                code = http.post(f"{servers[index].url}{INFER}", json=BODY).status_code
                answered = time.monotonic()
                with lock:
                    seen.codes[(index, code)] += 1
                    if code == 200:
                        seen.passed.append((sent, answered))

    threads = [
        threading.Thread(target=client, args=(i,)) for i in range(len(servers)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    return seen


def _within(count: int, expected: tuple[float, float, float], tolerance: float = 0.05) -> bool:
    """Inside the window's bounds (give or take one), and within 5 % of their midpoint."""
    low, middle, high = expected
    return low - 1 <= count <= high + 1 and abs(count - middle) <= tolerance * middle


def _burst(servers: list[Any], tenant: str, count: int) -> tuple[int, float]:
    """`count` requests one after the other, alternating replicas: how many passed, how long."""
    began = time.monotonic()
    with httpx.Client(headers={"x-tenant": tenant}, timeout=10) as http:
        passed = sum(
            http.post(f"{servers[i % len(servers)].url}{INFER}", json=BODY).status_code == 200
            for i in range(count)
        )
    return passed, time.monotonic() - began


def _metric(server: Any, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(server.metrics_url, timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_replicas_sharing_a_redis_bucket_let_through_the_burst_then_the_rate(
    start_server: Any, example_models: Path, redis: RedisServer
) -> None:
    servers = _serve(start_server, example_models, MODELFLEET_RATE_LIMIT_REDIS_URL=redis.url)
    rate = PER_MINUTE / 60

    passed, took = _burst(servers, "burst", 2 * BURST)
    assert BURST <= passed <= BURST + rate * took + 1, (passed, took)

    seen = _hammer(servers, "steady", 12.0)
    allowed, codes = seen.allowed(), seen.codes
    expected = seen.expected(PER_MINUTE, BURST)
    assert _within(allowed, expected), (allowed, expected, codes)
    assert {code for _, code in codes} == {200, 429}, codes
    refused = sum(n for (_, code), n in codes.items() if code == 429)
    assert refused > allowed  # the clients asked for far more than the limit
    # one bucket for both: each replica let through part of it, not a limit each
    per_replica = [seen.allowed(i) for i in range(2)]
    assert all(n > 0.2 * allowed for n in per_replica), per_replica

    # counted apart: the 429s are no request a canary's gates would judge
    assert sum(_metric(s, "modelfleet_requests_total", code="429") for s in servers) == 0
    counted = sum(_metric(s, "modelfleet_requests_total", code="200") for s in servers)
    assert counted == allowed + passed
    limited = sum(_metric(s, "modelfleet_rate_limited_total") for s in servers)
    assert limited == refused + (2 * BURST - passed)


def test_without_redis_each_replica_enforces_its_share(
    start_server: Any, example_models: Path
) -> None:
    servers = _serve(start_server, example_models, MODELFLEET_RATE_LIMIT_REPLICAS="2")
    seen = _hammer(servers, "steady", 10.0)
    each = seen.expected(PER_MINUTE / 2, BURST / 2)
    for index in range(2):
        assert _within(seen.allowed(index), each), (index, seen.codes, each)
    expected = seen.expected(PER_MINUTE, BURST)  # spread evenly: the limit in all
    assert _within(seen.allowed(), expected), (seen.allowed(), expected)
    with httpx.Client(headers={"x-tenant": "steady"}, timeout=10) as http:
        answers = [http.post(f"{servers[0].url}{INFER}", json=BODY) for _ in range(5)]
    answer = answers[-1]  # a token refills every 0.1 s: the last of five finds none
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) == 1
    assert "split over 2 replicas: 600/min (burst 15) on this pod" in answer.json()["error"]


def test_a_redis_gone_away_lets_requests_through_without_delay(
    start_server: Any, example_models: Path, redis: RedisServer
) -> None:
    # a slow refill (one token in 10 s), so that a busy machine cannot refill it mid-burst
    (server, _) = _serve(
        start_server, example_models, per_minute=6, MODELFLEET_RATE_LIMIT_REDIS_URL=redis.url
    )
    passed, took = _burst([server], "t", 2 * BURST)
    assert BURST <= passed <= BURST + took / 10 + 1, (passed, took)  # limited while Redis answers
    redis.stop()
    passed, took = _burst([server], "t", 200)
    assert passed == 200
    assert took < 10  # at most one timed-out ask a second, not one per request
    assert _metric(server, "modelfleet_rate_limit_unchecked_total") >= 190
    assert "Redis unavailable" in server.log()
