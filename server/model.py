"""Bring a model from its URI to ready: fetch, verify the pin, load, check, warm up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import ModelMetadata, Runtime, probe_rows
from modelfleet.server.settings import ServerSettings
from modelfleet.server.storage import fetch_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, and the facts the server reports about it."""

    name: str
    version: str
    sha256: str
    format: str
    runtime: Runtime
    metadata: ModelMetadata
    load_seconds: float
    path: Path

    def upgrade_in_background(
        self, settings: ServerSettings, on_switch: Callable[[], None]
    ) -> None:
        """LightGBM with backend `auto`, not yet on its ONNX twin: convert, check and switch
        while already serving (readiness never waits for a conversion)."""
        from modelfleet.server.runtimes.lightgbm import LightGBMRuntime

        runtime = self.runtime
        if (
            isinstance(runtime, LightGBMRuntime)
            and settings.lightgbm_backend == "auto"
            and runtime.engine is runtime.native
        ):
            cache = _conversion_cache(settings, self.sha256)
            runtime.upgrade_in_background(self.path, cache, settings.intra_op_threads, on_switch)


def _verify(runtime: Runtime, metadata: ModelMetadata, batch: int) -> None:
    """Score probe rows; every declared output must come back with one entry per row."""
    for count in (1, batch):
        rows = probe_rows(metadata, count)
        try:
            outputs = runtime.predict(rows)
        except Exception as error:  # any library error here means the model is unusable
            raise ModelLoadError(f"the model fails on probe rows: {error}") from error
        for spec in metadata.outputs:
            value = outputs.get(spec.name)
            if value is None or np.shape(value)[:1] != (count,):
                raise ModelLoadError(f"output {spec.name!r} is missing or has the wrong shape")


def _runtime(settings: ServerSettings, path: Path, sha256: str) -> Runtime:
    threads = settings.intra_op_threads
    if settings.resolved_format == "onnx":
        from modelfleet.server.runtimes.onnx import load_onnx

        return load_onnx(path, threads=threads, device=settings.device)
    from modelfleet.server.runtimes.lightgbm import load_lightgbm

    return load_lightgbm(
        path,
        threads=threads,
        backend=settings.lightgbm_backend,
        convert_cache=_conversion_cache(settings, sha256),
    )


def _conversion_cache(settings: ServerSettings, sha256: str) -> Path:
    return settings.cache_dir / "converted" / f"{sha256}.onnx"


def load_model(settings: ServerSettings) -> LoadedModel:
    """Everything between start and ready; ModelLoadError says why a model cannot serve."""
    started = time.perf_counter()
    path, sha256 = fetch_model(settings.model_uri, settings.cache_dir, settings.model_sha256)
    runtime = _runtime(settings, path, sha256)
    metadata = runtime.metadata()
    _verify(runtime, metadata, settings.max_batch_size)
    elapsed = time.perf_counter() - started
    model = LoadedModel(
        name=settings.model_name,
        version=settings.model_version or sha256[:12],
        sha256=sha256,
        format=settings.resolved_format,
        runtime=runtime,
        metadata=metadata,
        load_seconds=elapsed,
        path=path,
    )
    log.info(
        "model loaded",
        extra={
            "model": model.name,
            "version": model.version,
            "format": model.format,
            "backend": metadata.backend,
            "sha256": sha256,
            "load_s": round(elapsed, 3),
        },
    )
    return model
