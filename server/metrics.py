"""Prometheus metrics, served on their own port (never routed by an ingress).

Only inference routes count in `modelfleet_requests_total`,
`modelfleet_request_duration_seconds` and `modelfleet_requests_in_flight` (the name KEDA's
`inflight` trigger queries); health, metadata and the metrics port's admin routes do not.
The registry is served by `admin.py`. The server runs one process per pod
(MODELFLEET_WORKERS must be 1), so a plain registry is exact and no multiprocess mode is
needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelfleet.server.predictions import PredictionMetricsConfig, PredictionStats
from modelfleet.server.runtimes.base import ModelMetadata

# Fine enough that histogram_quantile(0.99, …) resolves p99s from 0.5 ms to 5 s.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LABELS = ("deployment", "slot", "revision", "model")


class _Histogram:
    """Bucket counts and a sum, updated without a lock by the event-loop thread only; a
    scrape copies the counts first, so its buckets and count always agree."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, help_text: str, identity: dict[str, str]) -> Metric:
        counts, total = list(self.counts), self.total
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        family = HistogramMetricFamily(name, help_text, labels=list(identity))
        family.add_metric(list(identity.values()), buckets, total)
        return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _HotPathStats(Collector):
    """Request counts by code, latency and batch-size histograms: the per-request metrics,
    kept as plain numbers (prometheus_client's locks cost more than the model on one row)."""

    def __init__(self, identity: dict[str, str]) -> None:
        self.identity = identity
        self.by_code: dict[int, int] = {}
        self.auth_refusals: dict[str, int] = {}
        self.cache_lookups: dict[str, int] = {}  # empty (no series) while the cache is off
        self.duration = _Histogram(LATENCY_BUCKETS)
        self.batch = _Histogram(tuple(float(b) for b in BATCH_BUCKETS))

    def observe(self, code: int, seconds: float) -> None:
        self.by_code[code] = self.by_code.get(code, 0) + 1
        self.duration.observe(seconds)

    def observe_batch(self, rows: int) -> None:
        self.batch.observe(rows)

    def observe_auth_refusal(self, reason: str) -> None:
        self.auth_refusals[reason] = self.auth_refusals.get(reason, 0) + 1

    def observe_cache(self, hits: int, misses: int) -> None:
        lookups = self.cache_lookups
        lookups["hit"] = lookups.get("hit", 0) + hits
        lookups["miss"] = lookups.get("miss", 0) + misses

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "modelfleet_requests",
            "Inference requests answered, by HTTP status code",
            labels=[*self.identity, "code"],
        )
        for code, count in sorted(dict(self.by_code).items()):
            requests.add_metric([*self.identity.values(), str(code)], count)
        yield requests
        refusals = CounterMetricFamily(
            "modelfleet_auth_failures",
            "Inference requests refused by auth (401, 403) by reason: not in modelfleet_requests",
            labels=[*self.identity, "reason"],
        )
        for reason, count in sorted(dict(self.auth_refusals).items()):
            refusals.add_metric([*self.identity.values(), reason], count)
        yield refusals
        cache = CounterMetricFamily(
            "modelfleet_cache_requests",
            "Rows looked up in the prediction cache, by result (hit, miss); a batched request "
            "counts each row",
            labels=[*self.identity, "result"],
        )
        for result, count in sorted(dict(self.cache_lookups).items()):
            cache.add_metric([*self.identity.values(), result], count)
        yield cache
        yield self.duration.family(
            "modelfleet_request_duration_seconds",
            "Time from the request's arrival to the end of the answer, inference routes only",
            self.identity,
        )
        yield self.batch.family(
            "modelfleet_batch_size", "Rows per predict call after micro-batching", self.identity
        )


class ServerMetrics:
    """Every metric of one server, in its own registry, bound to its identity labels."""

    def __init__(self, deployment: str, slot: str, revision: str, model: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        identity = dict(zip(_LABELS, (deployment, slot, revision, model), strict=True))
        self._identity = identity
        self.identity = identity  # read-only: what every series of this server carries
        self._hot = _HotPathStats(identity)
        self.registry.register(self._hot)
        self._inflight = Gauge(
            "modelfleet_requests_in_flight",
            "Inference requests in flight",
            _LABELS,
            registry=self.registry,
        ).labels(**identity)
        self._load = Gauge(
            "modelfleet_model_load_seconds",
            "Time to fetch, verify, load and warm up the model",
            _LABELS,
            registry=self.registry,
        ).labels(**identity)
        self._ready = Gauge(
            "modelfleet_ready", "1 while the server is ready", _LABELS, registry=self.registry
        ).labels(**identity)
        self._info = Gauge(
            "modelfleet_model_info",
            "The served model (value 1)",
            [*_LABELS, "version", "format", "backend", "sha256"],
            registry=self.registry,
        )

    def observe(self, code: int, seconds: float) -> None:
        """Count one answered inference request."""
        self._hot.observe(code, seconds)

    def observe_auth_refusal(self, reason: str) -> None:
        """Count one inference request refused by auth (`reason` is a fixed word, never a
        credential); it is not a request the model answered."""
        self._hot.observe_auth_refusal(reason)

    def observe_cache(self, hits: int, misses: int) -> None:
        """Count the rows of one request answered from the prediction cache and not."""
        self._hot.observe_cache(hits, misses)

    def track_predictions(
        self, metadata: ModelMetadata, config: PredictionMetricsConfig
    ) -> PredictionStats:
        """Register prediction and input-quality metrics for this model; the caller feeds
        them each scored batch."""
        stats = PredictionStats(self._identity, metadata, config)
        self.registry.register(stats)
        return stats

    def track_inflight(self, read: Callable[[], float]) -> None:
        """Read the in-flight count at scrape time (no lock on the request path)."""
        self._inflight.set_function(read)

    def observe_batch(self, rows: int) -> None:
        self._hot.observe_batch(rows)

    def model_loaded(
        self, version: str, model_format: str, backend: str, sha256: str, s: float
    ) -> None:
        self._info.clear()  # one sample: the current backend
        self._info.labels(
            **self._identity, version=version, format=model_format, backend=backend, sha256=sha256
        ).set(1)
        self._load.set(s)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)
