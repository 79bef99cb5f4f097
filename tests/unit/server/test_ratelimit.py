"""Per-tenant rate limits: the token bucket's arithmetic on a fake clock, the per-pod split, who
a tenant is, and the 429 through the real app (Retry-After, a body naming the limit, counted
apart from the requests a canary is judged on)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from pydantic import ValidationError
from server_helpers import sample

from modelfleet.server.app import create_app
from modelfleet.server.ratelimit import (
    Limit,
    LocalBuckets,
    RateLimiter,
    RateLimitMetrics,
    TokenBucket,
    tenant_of,
)

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]
BODY = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 6], "data": [ROW]}]}
INFER = "/v2/models/model/infer"
IDENTITY = {"deployment": "fraud", "slot": "green", "revision": "abc123", "model": "model"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_a_burst_through_then_one_request_per_refill() -> None:
    bucket = TokenBucket.full(capacity=5, rate_per_s=2.0, now=0.0)  # 120/min, burst 5
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0.0) == pytest.approx(0.5)  # the next token in 1 / rate
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token refilled: half the wait
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    # over a minute from empty: exactly the rate, the refill never above the capacity
    allowed = sum(bucket.take(0.5 + step * 0.01) == 0.0 for step in range(1, 6001))
    assert allowed == 120
    assert bucket.take(10_000.0) == 0.0
    assert bucket.tokens == 4


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket.full(capacity=1, rate_per_s=1.0, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(9.0) == pytest.approx(1.0)
    assert bucket.tokens == 0


@pytest.mark.parametrize(
    ("limit", "rate_per_min", "capacity", "words"),
    [
        (Limit(600, 20, "apiKey"), 600, 20, "600 requests per minute (burst 20) per apiKey"),
        (Limit(600, 20, "apiKey", replicas=3), 200, 20 / 3, "split over 3 replicas: 200/min"),
        (Limit(600, 2, "subject", replicas=4), 150, 1, "(burst 1) on this pod"),
        (Limit(600, 20, "apiKey", replicas=3, shared=True), 600, 20, "shared by every replica"),
    ],
)
def test_per_pod_the_limit_and_burst_are_divided_by_the_replicas(
    limit: Limit, rate_per_min: float, capacity: float, words: str
) -> None:
    assert limit.rate_per_s * 60 == pytest.approx(rate_per_min)
    assert limit.capacity == pytest.approx(capacity)  # never below one request
    assert words in limit.describe()


def test_the_tenant_is_the_hashed_key_subject_or_header() -> None:
    def hashed(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:32]

    keyed = {b"x-api-key": b"k1"}
    bearer = {b"authorization": b"Bearer k2", b"x-tenant": b"acme"}
    assert tenant_of("apiKey", keyed, None) == hashed("k1")
    assert tenant_of("apiKey", bearer, None) == hashed("k2")
    assert tenant_of("subject", bearer, {"sub": "user-7"}) == hashed("user-7")
    assert tenant_of("subject", keyed, None) == hashed("k1")  # let in by a key: the key
    assert tenant_of("header:X-Tenant", bearer, None) == hashed("acme")
    assert tenant_of("header:x-tenant", keyed, None) == "-"  # no header: one shared bucket
    assert tenant_of("apiKey", {}, None) == "-"


def test_each_tenant_has_its_own_bucket() -> None:
    clock = FakeClock()
    buckets = LocalBuckets(Limit(60, 2, "apiKey"), clock)

    async def takes(tenant: str, count: int) -> list[float | None]:
        return [await buckets.take(tenant) for _ in range(count)]

    assert asyncio.run(takes("a", 3)) == [0.0, 0.0, pytest.approx(1.0)]
    assert asyncio.run(takes("b", 2)) == [0.0, 0.0]
    clock.now += 1.0
    assert asyncio.run(takes("a", 2)) == [0.0, pytest.approx(1.0)]


def test_a_spent_limit_answers_429_with_retry_after_and_counts_apart(
    serve: Any, connect: Any
) -> None:
    _, plane = serve()
    clock = FakeClock()
    limit = Limit(requests_per_minute=30, burst=2, key="header:x-tenant")
    limiter = RateLimiter(limit, LocalBuckets(limit, clock))
    plane.metrics.registry.register(RateLimitMetrics(limiter, plane.metrics.identity))
    client = connect(create_app(plane, None, limiter))
    acme = {"x-tenant": "acme"}

    codes = [client.post(INFER, json=BODY, headers=acme).status_code for _ in range(2)]
    refused = client.post(INFER, json=BODY, headers=acme)
    other = client.post(INFER, json=BODY, headers={"x-tenant": "globex"})
    clock.now += 2.0  # one token at 0.5 a second
    again = client.post(INFER, json=BODY, headers=acme)

    assert codes == [200, 200]
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "2")
    body = refused.json()
    assert body["error"].startswith("rate limit exceeded: 30 requests per minute (burst 2)")
    assert "per header:x-tenant" in body["error"]
    assert body["limit"] == {
        "requestsPerMinute": 30,
        "burst": 2,
        "key": "header:x-tenant",
        "mode": "perPod",
        "replicas": 1,
    }
    assert body["retryAfterSeconds"] == pytest.approx(2.0)
    assert refused.headers["x-request-id"]
    assert other.status_code == 200
    assert again.status_code == 200

    registry = plane.metrics.registry
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="200") == 4
    # not canary traffic: neither a request, an error nor a latency sample
    assert sample(registry, "modelfleet_requests_total", **IDENTITY, code="429") == 0
    assert sample(registry, "modelfleet_request_duration_seconds_count", **IDENTITY) == 4
    assert sample(registry, "modelfleet_rate_limited_total", **IDENTITY) == 1
    assert client.get("/v2/health/ready").status_code == 200  # health is never limited


def test_refused_requests_do_not_reach_the_model(serve: Any, connect: Any) -> None:
    _, plane = serve()
    limit = Limit(requests_per_minute=1, burst=1, key="apiKey")
    limiter = RateLimiter(limit, LocalBuckets(limit, FakeClock()))
    client = connect(create_app(plane, None, limiter))
    codes = [client.post(INFER, json=BODY).status_code for _ in range(5)]
    assert codes == [200, 429, 429, 429, 429]
    assert sample(plane.metrics.registry, "modelfleet_batch_size_count", **IDENTITY) == 1


def test_settings_build_the_limiter_and_refuse_a_bad_key_or_url(make_settings: Any) -> None:
    assert RateLimiter.from_settings(make_settings()) is None
    per_pod = RateLimiter.from_settings(
        make_settings(
            rate_limit_requests_per_minute=600, rate_limit_burst=20, rate_limit_replicas=3
        )
    )
    assert per_pod is not None
    assert isinstance(per_pod.buckets, LocalBuckets)
    assert per_pod.limit.split == 3
    assert per_pod.limit.rate_per_s == pytest.approx(600 / 60 / 3)
    with pytest.raises(ValidationError, match="rate_limit_key"):
        make_settings(rate_limit_requests_per_minute=10, rate_limit_key="cookie")
    with pytest.raises(ValidationError, match="rate_limit_redis_url"):
        make_settings(rate_limit_requests_per_minute=10, rate_limit_redis_url="http://x")
