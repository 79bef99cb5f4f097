"""LightGBM boosters, scored natively or through an equivalent ONNX graph.

`load_lightgbm` reads a text model (optionally gzip-compressed; LightGBM has no other
file format apart from pickles, which we refuse to unpickle) and returns a runtime whose
outputs are `probabilities` (FP, [N, classes]) and `label` (INT64, [N]) for classifiers,
`predictions` ([N]) otherwise. With backend `onnx` or `auto` the booster is converted with
onnxmltools and the conversion (its "twin") is used only when it scores probe rows like the
booster, within `_PROB_TOLERANCE`; otherwise scoring stays native, with a warning. `onnx`
converts before the model is ready. `auto` uses a cached conversion at once; without one the
replica starts on the booster and `upgrade_in_background` converts, checks and switches while
it serves, so for a while after a start two replicas of one revision may score on different
engines (on the probe rows, their scores agree within the tolerance and their labels exactly).
The twin is worth it: onnxruntime's tree ensemble was 2-5x faster than Booster.predict on
one-row requests in bench/server (docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import ModelMetadata, Outputs, Task, TensorSpec, probe_rows
from modelfleet.server.runtimes.onnx import fast_run

log = logging.getLogger(__name__)

PROBE_ROWS = 512
_PROB_TOLERANCE = 1e-5


@dataclass(frozen=True)
class _Header:
    objective: str
    classes: int
    feature_names: tuple[str, ...]
    feature_ranges: dict[str, tuple[float, float]]
    categorical: dict[str, tuple[int, ...]]


def _task(objective: str) -> Task:
    name = objective.split(" ", 1)[0]
    if name in ("binary", "cross_entropy", "xentropy"):
        return "binary"
    if name in ("multiclass", "multiclassova", "softmax", "ova", "ovr"):
        return "multiclass"
    return "regression"


def _parse_header(text: str) -> _Header:
    fields: dict[str, str] = {}
    for line in text.split("\n", 64)[:64]:  # the header precedes the first "Tree=" block
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    names = tuple(fields.get("feature_names", "").split())
    ranges: dict[str, tuple[float, float]] = {}
    categorical: dict[str, tuple[int, ...]] = {}
    for name, info in zip(names, fields.get("feature_infos", "").split(), strict=False):
        if info.startswith("[") and ":" in info:
            low, high = info.strip("[]").split(":", 1)
            ranges[name] = (float(low), float(high))
        elif info != "none":
            # LightGBM lists -1 among the categories: negative values mean "missing"
            categorical[name] = tuple(int(c) for c in info.split(":") if c.isdigit())
    return _Header(
        objective=fields.get("objective", "regression"),
        classes=int(fields.get("num_class", "1")),
        feature_names=names,
        feature_ranges=ranges,
        categorical=categorical,
    )


def _metadata(header: _Header, n_features: int, backend: str, datatype: str) -> ModelMetadata:
    task = _task(header.objective)
    if task == "regression":
        outputs: tuple[TensorSpec, ...] = (TensorSpec("predictions", datatype, (-1,)),)
        classes = 0
    else:
        classes = 2 if task == "binary" else header.classes
        outputs = (
            TensorSpec("probabilities", datatype, (-1, classes)),
            TensorSpec("label", "INT64", (-1,)),
        )
    return ModelMetadata(
        platform="lightgbm",
        backend=backend,
        task=task,
        input=TensorSpec("input", datatype, (-1, n_features)),
        outputs=outputs,
        n_features=n_features,
        feature_names=header.feature_names,
        classes=classes,
        handles_missing=True,
        primary_output=outputs[0].name,
        feature_ranges=header.feature_ranges,
        categorical_features=header.categorical,
    )


class NativeLightGBM:
    """lightgbm.Booster.predict, one thread per call unless told otherwise."""

    def __init__(self, booster: Any, header: _Header, threads: int) -> None:
        self._booster = booster
        self._threads = threads
        self._metadata = _metadata(header, booster.num_feature(), "lightgbm", "FP64")

    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, rows: npt.NDArray[np.generic]) -> Outputs:
        scores = self._booster.predict(rows, num_threads=self._threads)
        task = self._metadata.task
        if task == "regression":
            return {"predictions": scores}
        if task == "binary":
            scores = np.column_stack((1.0 - scores, scores))
        return {"probabilities": scores, "label": np.argmax(scores, axis=1).astype(np.int64)}


class OnnxLightGBM:
    """The same booster converted to ONNX: tree-ensemble operators in float32, answering
    with the booster's output names and datatypes (FP64) so nothing changes for clients."""

    def __init__(self, session: Any, metadata: ModelMetadata) -> None:
        self._session = session
        self._metadata = replace(metadata, backend="onnxruntime (converted)")
        self._names = [o.name for o in session.get_outputs()]
        self._run = fast_run(session)

    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, rows: npt.NDArray[np.generic]) -> Outputs:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond FP32's range: inf
            features = rows.astype(np.float32)
        results = dict(
            zip(self._names, self._run(self._names, {"input": features}, None), strict=True)
        )
        if self._metadata.task == "regression":
            return {"predictions": results[self._names[0]].reshape(-1).astype(np.float64)}
        return {
            "probabilities": results["probabilities"].astype(np.float64),
            "label": results["label"],
        }


class LightGBMRuntime:
    """A booster scored natively until (and unless) its ONNX twin is ready and agrees."""

    def __init__(self, native: NativeLightGBM) -> None:
        self.native = native
        self.engine: NativeLightGBM | OnnxLightGBM = native
        self.predict = native.predict  # swapped in one assignment: no lock on the hot path

    def metadata(self) -> ModelMetadata:
        return self.engine.metadata()

    def use(self, engine: NativeLightGBM | OnnxLightGBM) -> None:
        self.engine = engine
        self.predict = engine.predict

    def upgrade(self, model_path: Path, cache: Path, threads: int) -> bool:
        """Convert (or reuse the cached conversion), check against the booster, switch."""
        try:
            twin = _onnx_twin(model_path, cache, self.native.metadata(), threads)
        except (ModelLoadError, OSError) as error:
            log.warning("LightGBM to ONNX conversion failed, scoring natively: %s", error)
            return False
        if not _agrees(self.native, twin):
            return False
        self.use(twin)
        return True

    def upgrade_in_background(
        self, model_path: Path, cache: Path, threads: int, on_switch: Callable[[], None]
    ) -> threading.Thread:
        def run() -> None:
            if self.upgrade(model_path, cache, threads):
                on_switch()

        thread = threading.Thread(target=run, name="onnx-upgrade", daemon=True)
        thread.start()
        return thread


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as error:
        raise ModelLoadError(f"{path} is not a LightGBM text model: {error}") from error
    if not text.startswith("tree"):
        raise ModelLoadError(
            f"{path} is not a LightGBM text model (saved with Booster.save_model); "
            "pickled boosters are refused because unpickling runs arbitrary code"
        )
    return text


def _convert(model_path: Path, cache: Path) -> bytes:
    """The ONNX conversion, made by a separate process (onnxmltools' memory and CPU stay
    out of the server) and kept in the cache for the next start."""
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelfleet.server.runtimes.convert",
                str(model_path),
                str(cache),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if completed.returncode != 0:
            raise ModelLoadError(f"conversion failed: {completed.stderr.strip()[-500:]}")
    return cache.read_bytes()


def _max_difference(native: Outputs, converted: Outputs) -> float:
    """The largest score difference, or inf when a predicted label differs."""
    if "label" in native and not np.array_equal(native["label"], converted["label"]):
        return float("inf")
    name = "probabilities" if "probabilities" in native else "predictions"
    expected = np.asarray(native[name], dtype=np.float64)
    actual = np.asarray(converted[name], dtype=np.float64)
    scale = np.maximum(1.0, np.abs(expected)) if name == "predictions" else 1.0
    return float(np.max(np.abs(expected - actual) / scale, initial=0.0))


def _onnx_twin(
    model_path: Path, cache: Path, metadata: ModelMetadata, threads: int
) -> OnnxLightGBM:
    import onnxruntime as ort

    from modelfleet.server.runtimes.onnx import session_options

    try:
        session = ort.InferenceSession(
            _convert(model_path, cache),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"onnxruntime cannot load the conversion: {error}") from error
    return OnnxLightGBM(session, metadata)


def _agrees(native: NativeLightGBM, twin: OnnxLightGBM) -> bool:
    rows = probe_rows(native.metadata(), PROBE_ROWS)
    difference = _max_difference(native.predict(rows), twin.predict(rows))
    if difference > _PROB_TOLERANCE:
        log.warning(
            "ONNX twin disagrees with the booster (max difference %.3g): native", difference
        )
        return False
    log.info("scoring through the ONNX twin (max difference on probe rows %.3g)", difference)
    return True


def load_lightgbm(
    path: Path, threads: int = 1, backend: str = "native", convert_cache: Path | None = None
) -> LightGBMRuntime:
    """Load a LightGBM text model. `onnx` converts and checks now; `auto` switches to the
    twin now when a cached conversion exists, else leaves that to `upgrade_in_background`."""
    import lightgbm

    text = _read_text(path)
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as error:
        raise ModelLoadError(f"LightGBM cannot load {path}: {error}") from error
    runtime = LightGBMRuntime(NativeLightGBM(booster, _parse_header(text), threads))
    if convert_cache is not None and (
        backend == "onnx" or (backend == "auto" and convert_cache.is_file())
    ):
        runtime.upgrade(path, convert_cache, threads)
    return runtime
