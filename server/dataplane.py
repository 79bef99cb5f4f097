"""The data plane: what the HTTP routes call. It finds the model, decodes, scores through
the micro-batcher, injects faults when asked, and encodes; it knows nothing of HTTP
beyond the error classes it raises. Replays for the rollout's paired gate (metrics port)
score on the caller's thread, outside the batcher, metrics and live sample."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet import __version__
from modelfleet.server import baseline, codecs
from modelfleet.server.batching import MicroBatcher
from modelfleet.server.cache import CachedScorer, MemoryStore, RedisStore, Store
from modelfleet.server.errors import InjectedFaultError, ModelNotFoundError, NotReadyError
from modelfleet.server.faults import FaultInjector
from modelfleet.server.feedback import FeedbackStore
from modelfleet.server.metrics import ServerMetrics
from modelfleet.server.model import LoadedModel
from modelfleet.server.predictions import (
    DEFAULT_VALUE_EDGES,
    PredictionMetricsConfig,
    PredictionStats,
)
from modelfleet.server.runtimes.base import Outputs
from modelfleet.server.sample import LiveSample
from modelfleet.server.settings import ServerSettings

log = logging.getLogger(__name__)

SERVER_NAME = "modelfleet"
EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    """One served model and everything needed to answer requests for it."""

    def __init__(self, model: LoadedModel, settings: ServerSettings, metrics: ServerMetrics):
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.faults = FaultInjector(settings.fault_error_rate, settings.fault_latency_ms)
        self.predictions: PredictionStats | None = None
        if settings.prediction_metrics:
            config = PredictionMetricsConfig(
                value_edges=settings.prediction_buckets or DEFAULT_VALUE_EDGES,
                feature_ranges=settings.feature_ranges,
            )
            self.predictions = metrics.track_predictions(model.metadata, config)
            self._load_baseline(self.predictions)
        elif settings.baseline_uri:
            log.warning("MODELFLEET_BASELINE_URI is ignored: MODELFLEET_PREDICTION_METRICS is off")
        self.feedback: FeedbackStore | None = None  # answers kept for labels (feedback.py)
        if settings.feedback_rows:
            self.feedback = FeedbackStore(
                metrics.identity, model.metadata, settings.feedback_rows,
                settings.feedback_ttl_seconds,
            )  # fmt: skip
            metrics.registry.register(self.feedback)
        self.live_sample: LiveSample | None = None
        if settings.live_sample_rows:
            width = max(model.metadata.n_features, 0)
            self.live_sample = LiveSample(settings.live_sample_rows, width)
        self._replay_lock = threading.Lock()  # one replay at a time: bounded CPU and memory
        self.batcher = MicroBatcher(
            self._predict,
            max_batch_size=settings.max_batch_size,
            max_latency_s=settings.max_batch_latency_micros / 1e6,
            observe_batch=metrics.observe_batch,
        )
        self.cache = self._make_cache()
        self.draining = False
        metrics.model_loaded(
            model.version, model.format, model.metadata.backend, model.sha256, model.load_seconds
        )
        metrics.set_ready(True)

    def _load_baseline(self, predictions: PredictionStats) -> None:
        """Read, score and summarise the baseline before the server is ready; a baseline that
        cannot be used is one error line, and the server serves without drift monitoring."""
        settings, metadata = self.settings, self.model.metadata
        if not settings.baseline_uri:
            return
        started = time.perf_counter()
        try:
            rows = baseline.read_rows(
                settings.baseline_uri, settings.baseline_rows, len(predictions.features)
            )
            outputs = baseline.score(self.model.runtime, rows, metadata.input_dtype)
            summary = predictions.use_baseline(rows, outputs, settings.baseline_bins)
        except baseline.BaselineError as error:
            log.error(
                "baseline not used, serving without drift monitoring "
                "(modelfleet_baseline_loaded 0): %s",
                error,
                extra={"uri": settings.baseline_uri},
            )
            return
        log.info(
            "baseline loaded",
            extra={
                "uri": settings.baseline_uri,
                "rows": summary.rows,
                "bins": settings.baseline_bins,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )

    def _make_cache(self) -> CachedScorer | None:
        settings = self.settings
        if settings.cache == "off":
            return None
        store: Store
        if settings.cache == "redis":
            store = RedisStore(settings.cache_redis_url, settings.cache_ttl_seconds)
        else:
            store = MemoryStore(settings.cache_max_entries, settings.cache_ttl_seconds)
        return CachedScorer(
            store, self._cache_namespace(), self._observe, self.metrics.observe_cache
        )

    def _cache_namespace(self) -> bytes:
        """What a cached answer belongs to: this model file, version, revision and engine."""
        model = self.model
        backend = model.runtime.metadata().backend
        parts = (model.name, model.version, model.sha256, self.settings.revision, backend)
        return "\0".join(parts).encode() + b"\0"

    def _predict(self, rows: npt.NDArray[np.generic]) -> Outputs:
        """Score one micro-batch with the runtime's current engine (it may switch to its
        ONNX twin after start) and count what was asked and answered."""
        outputs = self.model.runtime.predict(rows)
        self._observe(rows, outputs)
        return outputs

    def _observe(self, rows: npt.NDArray[np.generic], outputs: Outputs) -> None:
        """Count rows answered, scored or from the cache: drift and monitoring see them all."""
        if self.predictions is not None:
            try:
                self.predictions.observe(rows, outputs)
            except Exception:  # metrics never fail a request
                log.exception("prediction metrics failed for a batch")
        if self.live_sample is not None:
            self.live_sample.observe(rows)

    def replay(self, rows: npt.NDArray[np.generic]) -> Outputs:
        """Score rows for the paired gate on the calling thread (the metrics server's), with
        the runtime's current engine; counted in no metric and kept out of the live sample.
        The runtimes are safe to call from two threads (onnxruntime sessions and LightGBM's
        predict are), and both release the GIL while scoring."""
        if not self.ready:
            raise NotReadyError("not ready: the server is shutting down")
        with self._replay_lock:
            return self.model.runtime.predict(rows)

    @property
    def ready(self) -> bool:
        return not self.draining

    def start_draining(self) -> None:
        """SIGTERM: readiness fails from now on; requests are still answered."""
        self.draining = True
        self.metrics.set_ready(False)

    def backend_changed(self) -> None:
        """The runtime switched engines (LightGBM → its ONNX twin): say so in model_info."""
        model = self.model
        backend = model.runtime.metadata().backend
        self.metrics.model_loaded(
            model.version, model.format, backend, model.sha256, model.load_seconds
        )
        if self.cache is not None:  # the new engine's answers are its own
            self.cache.namespace = self._cache_namespace()

    def find(self, name: str, version: str | None = None) -> LoadedModel:
        if name != self.model.name or version not in (None, "", self.model.version):
            served = f"{self.model.name} (version {self.model.version})"
            asked = name if not version else f"{name} version {version}"
            raise ModelNotFoundError(
                f"model {asked} is not served here; this server serves {served}"
            )
        return self.model

    def inject_fault(self) -> None:
        if self.faults.should_fail():
            raise InjectedFaultError(
                f"injected fault (MODELFLEET_FAULT_ERROR_RATE={self.faults.error_rate:g})"
            )

    async def score(self, rows: npt.NDArray[np.generic]) -> Outputs:
        if self.cache is not None:
            return await self.cache.score(rows, self._score_now)
        return await self._score_now(rows)

    async def _score_now(self, rows: npt.NDArray[np.generic]) -> Outputs:
        return await self.batcher.submit(rows, self.settings.request_timeout_seconds)

    async def infer_v2(
        self,
        name: str,
        version: str | None,
        body: bytes,
        header_length: int | None,
        request_id: bytes | None = None,
    ) -> tuple[bytes, int | None]:
        model = self.find(name, version)
        self.inject_fault()
        request = codecs.decode_v2(body, header_length, model.metadata)
        outputs = await self.score(request.rows)
        self._remember(request_id, outputs)
        return codecs.encode_v2(request, outputs, model.metadata, model.name, model.version)

    async def predict_v1(self, name: str, body: bytes, request_id: bytes | None = None) -> bytes:
        model = self.find(name)
        self.inject_fault()
        rows = codecs.decode_v1(body, model.metadata)
        outputs = await self.score(rows)
        self._remember(request_id, outputs)
        return codecs.encode_v1(outputs, model.metadata)

    def _remember(self, request_id: bytes | None, outputs: Outputs) -> None:
        """Keep the answer for a later label (feedback.py); never fails the request."""
        if self.feedback is None or not request_id:
            return
        try:
            self.feedback.remember(request_id, outputs)
        except Exception:
            log.exception("feedback: answer not kept")

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.find(name, version)
        meta = model.runtime.metadata()
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": meta.platform,
            "inputs": [meta.input.as_dict()],
            "outputs": [spec.as_dict() for spec in meta.outputs],
            "parameters": {
                "backend": meta.backend,
                "task": meta.task,
                "classes": meta.classes,
                "feature_names": list(meta.feature_names),
                "handles_missing": meta.handles_missing,
                "sha256": model.sha256,
            },
        }

    def model_ready(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.find(name, version)
        if not self.ready:
            raise NotReadyError(f"model {model.name} is shutting down")
        return {"name": model.name, "ready": True}

    def close(self) -> None:
        self.batcher.close()
