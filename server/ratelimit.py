"""Per-tenant rate limits on the inference routes: a token bucket per tenant, in this process or
shared in Redis.

A tenant's bucket holds up to `burst` tokens and refills at requestsPerMinute / 60 a second; a
request takes one token or is refused with 429, `Retry-After` (whole seconds until a token) and a
body naming the limit. Who the tenant is comes from `MODELFLEET_RATE_LIMIT_KEY`: the API key
offered (`apiKey`), the JWT's `sub` (`subject`), or a header's value (`header:<name>`); it is
hashed before it is kept anywhere, so no credential sits in memory maps or in Redis.

    TokenBucket     the arithmetic, on a clock passed in (pure)
    LocalBuckets    per pod: buckets by tenant in this process, the limit divided by the replicas
    RedisBuckets    shared: one bucket per tenant for every replica and both slots, taken by one
                    Lua script (one round trip, atomic) on Redis' own clock
    RateLimiter     tenant from the request, the take, the refusal

Redis unreachable: the request is let through (fail open, as Envoy's and most gateways' rate
limiters do) and counted, and Redis is not asked again for a second, so an outage costs no
latency: a rate limiter must not take the model down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from modelfleet.server.errors import RateLimitedError
from modelfleet.server.settings import ServerSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

_MAX_LOCAL_TENANTS = 65_536  # least recently seen evicted beyond this (a full bucket, again)
_REDIS_TIMEOUT_S = 0.25
_REDIS_COOLDOWN_S = 1.0  # after a failure, let through without asking for this long
_ANONYMOUS = "-"  # the tenant of requests that carry no key (one bucket for all of them)

# KEYS[1] the tenant's bucket; ARGV: refill per second, capacity. Returns {allowed, wait}: wait
# as text, since Redis truncates Lua numbers to integers. TIME needs Redis >= 5 (effects
# replication); every replica then reads one clock.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, string.format('%.6f', wait)}
"""


@dataclass
class TokenBucket:
    """`capacity` tokens at most, refilled at `rate_per_s`; one token per request."""

    capacity: float
    rate_per_s: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, capacity: float, rate_per_s: float, now: float) -> TokenBucket:
        return cls(capacity, rate_per_s, capacity, now)

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one will be there."""
        if now > self.updated:
            refilled = self.tokens + (now - self.updated) * self.rate_per_s
            self.tokens, self.updated = min(self.capacity, refilled), now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


@dataclass(frozen=True)
class Limit:
    """The configured limit and the share of it this process enforces."""

    requests_per_minute: float
    burst: int
    key: str
    replicas: int = 1  # per pod: the limit is divided by this many replicas
    shared: bool = False  # in Redis: one bucket for every replica, not divided

    @property
    def split(self) -> int:
        return 1 if self.shared else max(1, self.replicas)

    @property
    def rate_per_s(self) -> float:
        return self.requests_per_minute / 60 / self.split

    @property
    def capacity(self) -> float:
        return max(1.0, self.burst / self.split)

    def describe(self) -> str:
        """The limit in words, for the 429's message."""
        total = f"{self.requests_per_minute:g} requests per minute (burst {self.burst})"
        per = f"per {self.key}"
        if self.shared:
            return f"{total} {per}, shared by every replica"
        if self.split == 1:
            return f"{total} {per}"
        each = f"{self.requests_per_minute / self.split:g}/min (burst {self.capacity:g})"
        return f"{total} {per}, split over {self.split} replicas: {each} on this pod"

    def as_json(self) -> dict[str, Any]:
        return {
            "requestsPerMinute": self.requests_per_minute,
            "burst": self.burst,
            "key": self.key,
            "mode": "shared" if self.shared else "perPod",
            "replicas": self.split,
        }


class Buckets(Protocol):
    async def take(self, tenant: str) -> float | None:
        """0 when a token was taken, else seconds until one; None when it cannot be told."""


class LocalBuckets:
    """Per pod: each tenant's bucket in this process (the least recently seen evicted first)."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    async def take(self, tenant: str) -> float | None:
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = TokenBucket.full(self._limit.capacity, self._limit.rate_per_s, now)
            self._buckets[tenant] = bucket
            if len(self._buckets) > _MAX_LOCAL_TENANTS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
        return bucket.take(now)


class RedisBuckets:
    """Shared: each tenant's bucket in Redis under `modelfleet:ratelimit:<scope>:<tenant>`."""

    def __init__(
        self,
        client: Redis,
        limit: Limit,
        scope: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._script = client.register_script(_TAKE_SCRIPT)
        self._args = [repr(limit.rate_per_s), repr(limit.capacity)]
        self._prefix = f"modelfleet:ratelimit:{scope}:"
        self._clock = clock
        self._down_until = 0.0
        self._unavailable = (RedisError, OSError, TimeoutError)

    @classmethod
    def connect(cls, url: str, limit: Limit, scope: str) -> RedisBuckets:
        from redis.asyncio import Redis

        client = Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_S,
            socket_connect_timeout=_REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        return cls(client, limit, scope)

    async def take(self, tenant: str) -> float | None:
        if self._clock() < self._down_until:
            return None
        try:
            allowed, wait = await self._script(keys=[self._prefix + tenant], args=self._args)
        except self._unavailable as error:
            self._down_until = self._clock() + _REDIS_COOLDOWN_S
            log.warning("rate limit: Redis unavailable, letting requests through: %s", error)
            return None
        return 0.0 if int(allowed) == 1 else float(wait)


def tenant_of(key: str, headers: Mapping[bytes, bytes], claims: Mapping[str, Any] | None) -> str:
    """The hashed tenant of one request (see the module docstring), `-` when it carries none."""
    value: bytes | None
    if key == "subject" and claims is not None and claims.get("sub") is not None:
        value = str(claims["sub"]).encode()
    elif key.startswith("header:"):
        value = headers.get(key.removeprefix("header:").strip().lower().encode())
    else:  # apiKey, and subject for a request let in by an API key
        value = headers.get(b"x-api-key") or _bearer(headers.get(b"authorization"))
    if not value:
        return _ANONYMOUS
    return hashlib.sha256(value).hexdigest()[:32]


def _bearer(authorization: bytes | None) -> bytes | None:
    if authorization is None:
        return None
    scheme, _, credential = authorization.partition(b" ")
    return credential.strip() or None if scheme.lower() == b"bearer" else None


class RateLimiter:
    """Admit a request or raise RateLimitedError (429) saying which limit and when to retry."""

    def __init__(self, limit: Limit, buckets: Buckets) -> None:
        self.limit = limit
        self.buckets = buckets
        self.refused = 0
        self.unchecked = 0  # let through because the shared buckets could not be asked

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> RateLimiter | None:
        if not settings.rate_limit_requests_per_minute:
            return None
        url = settings.rate_limit_redis_url
        limit = Limit(
            settings.rate_limit_requests_per_minute,
            settings.rate_limit_burst,
            settings.rate_limit_key,
            settings.rate_limit_replicas,
            shared=bool(url),
        )
        if url:
            scope = settings.rate_limit_scope or settings.deployment or settings.model_name
            return cls(limit, RedisBuckets.connect(url, limit, scope))
        return cls(limit, LocalBuckets(limit))

    async def admit(
        self, headers: Mapping[bytes, bytes], claims: Mapping[str, Any] | None = None
    ) -> bool:
        """True when the request took a token; False when it was let through unchecked (the
        shared buckets could not be asked)."""
        wait = await self.buckets.take(tenant_of(self.limit.key, headers, claims))
        if wait is None:
            self.unchecked += 1
            return False
        if wait > 0:
            self.refused += 1
            raise RateLimitedError(
                f"rate limit exceeded: {self.limit.describe()}; retry in {wait:.2f} s",
                retry_after_s=math.ceil(wait),
                details={"limit": self.limit.as_json(), "retryAfterSeconds": round(wait, 3)},
            )
        return True


class RateLimitMetrics(Collector):
    """`modelfleet_rate_limited_total` and `modelfleet_rate_limit_unchecked_total`: counted
    apart from `modelfleet_requests_total`, whose answers the canary's gates judge."""

    def __init__(self, limiter: RateLimiter, identity: Mapping[str, str]) -> None:
        self._limiter = limiter
        self._identity = dict(identity)

    def collect(self) -> Iterator[Metric]:
        labels, values = list(self._identity), list(self._identity.values())
        refused = CounterMetricFamily(
            "modelfleet_rate_limited",
            "Inference requests refused with 429 by the per-tenant rate limit: not in "
            "modelfleet_requests_total",
            labels=labels,
        )
        refused.add_metric(values, self._limiter.refused)
        yield refused
        unchecked = CounterMetricFamily(
            "modelfleet_rate_limit_unchecked",
            "Inference requests let through unchecked because Redis could not be asked",
            labels=labels,
        )
        unchecked.add_metric(values, self._limiter.unchecked)
        yield unchecked
