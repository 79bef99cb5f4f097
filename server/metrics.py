"""Prometheus metrics, served on their own port (never routed by an ingress).

Only inference routes count in `modelfleet_requests_total` and
`modelfleet_request_duration_seconds`; health and metadata do not. The server runs one
process per pod (MODELFLEET_WORKERS must be 1), so a plain registry is exact and no
multiprocess mode is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

# Fine enough that histogram_quantile(0.99, …) resolves p99s from 0.5 ms to 5 s.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_LABELS = ("deployment", "slot", "revision", "model")


class ServerMetrics:
    """Every metric of one server, in its own registry, bound to its identity labels."""

    def __init__(self, deployment: str, slot: str, revision: str, model: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        identity = dict(zip(_LABELS, (deployment, slot, revision, model), strict=True))
        self._identity = identity
        self._requests = Counter(
            "modelfleet_requests",
            "Inference requests answered, by HTTP status code",
            [*_LABELS, "code"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "modelfleet_request_duration_seconds",
            "Time from the request's arrival to the end of the answer, inference routes only",
            _LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**identity)
        self._batch = Histogram(
            "modelfleet_batch_size",
            "Rows per predict call after micro-batching",
            _LABELS,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(**identity)
        self._inflight = Gauge(
            "modelfleet_inflight_requests",
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
        self._by_code: dict[int, Any] = {}

    def observe(self, code: int, seconds: float) -> None:
        """Count one answered inference request."""
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._requests.labels(**self._identity, code=str(code))
        counter.inc()
        self._duration.observe(seconds)

    def track_inflight(self, read: Callable[[], float]) -> None:
        """Read the in-flight count at scrape time (no lock on the request path)."""
        self._inflight.set_function(read)

    def observe_batch(self, rows: int) -> None:
        self._batch.observe(rows)

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

    def serve(self, host: str, port: int) -> tuple[Any, threading.Thread]:
        """Expose the registry on host:port from a background thread."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread
