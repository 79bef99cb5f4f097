"""LightGBM boosters, scored natively or through an equivalent ONNX graph.

`load_lightgbm` reads a text model (optionally gzip-compressed; LightGBM has no other
file format apart from pickles, which we refuse to unpickle) and returns a runtime whose
outputs are `probabilities` (FP, [N, classes]) and `label` (INT64, [N]) for classifiers,
`predictions` ([N]) otherwise. With backend `onnx` or `auto` the booster is converted with
onnxmltools and used only when it scores probe rows like the booster (`auto` falls back to
native scoring otherwise, `onnx` too, with a warning). The choice never depends on timing,
so every replica of a revision scores alike: onnxruntime's tree ensemble was 2-5x faster
than Booster.predict on one-row requests in bench/server (docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import ModelMetadata, Outputs, Task, TensorSpec, probe_rows

log = logging.getLogger(__name__)

PROBE_ROWS = 512
_PROB_TOLERANCE = 1e-5
_ONNX_OPSET = 15


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
    """The same booster converted to ONNX (tree-ensemble operators in float32)."""

    def __init__(self, session: Any, header: _Header, n_features: int) -> None:
        self._session = session
        self._metadata = _metadata(header, n_features, "onnx", "FP32")
        self._metadata = replace(self._metadata, backend="onnxruntime (converted)")
        self._names = [o.name for o in session.get_outputs()]

    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, rows: npt.NDArray[np.generic]) -> Outputs:
        results = dict(zip(self._names, self._session.run(None, {"input": rows}), strict=True))
        if self._metadata.task == "regression":
            return {"predictions": results[self._names[0]].reshape(-1)}
        return {"probabilities": results["probabilities"], "label": results["label"]}


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


def _convert(booster: Any, n_features: int, cache: Path | None) -> bytes:
    if cache is not None and cache.is_file():
        return cache.read_bytes()
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=_ONNX_OPSET,
    )
    data: bytes = model.SerializeToString()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            temp = cache.with_suffix(".partial")
            temp.write_bytes(data)
            temp.replace(cache)
        except OSError as error:
            log.info("converted model not cached: %s", error)
    return data


def _max_difference(native: Outputs, converted: Outputs) -> float:
    """The largest score difference, or inf when a predicted label differs."""
    if "label" in native and not np.array_equal(native["label"], converted["label"]):
        return float("inf")
    name = "probabilities" if "probabilities" in native else "predictions"
    expected = np.asarray(native[name], dtype=np.float64)
    actual = np.asarray(converted[name], dtype=np.float64)
    scale = np.maximum(1.0, np.abs(expected)) if name == "predictions" else 1.0
    return float(np.max(np.abs(expected - actual) / scale, initial=0.0))


def _onnx_twin(booster: Any, header: _Header, threads: int, cache: Path | None) -> OnnxLightGBM:
    from modelfleet.server.runtimes.onnx import OnnxRuntime

    n_features = booster.num_feature()
    engine = OnnxRuntime(_convert(booster, n_features, cache), threads=threads)
    return OnnxLightGBM(engine._session, header, n_features)


def _choose(
    native: NativeLightGBM, twin: OnnxLightGBM, backend: str
) -> NativeLightGBM | OnnxLightGBM:
    rows = probe_rows(native.metadata(), PROBE_ROWS)
    difference = _max_difference(native.predict(rows), twin.predict(rows.astype(np.float32)))
    if difference > _PROB_TOLERANCE:
        log.warning(
            "ONNX twin of the booster disagrees on probe rows (max difference %.3g): native",
            difference,
        )
        return native
    log.info("lightgbm backend %s: ONNX twin agrees (max difference %.3g)", backend, difference)
    return twin


def load_lightgbm(
    path: Path, threads: int = 1, backend: str = "native", convert_cache: Path | None = None
) -> NativeLightGBM | OnnxLightGBM:
    """Load a LightGBM text model; `backend` native | onnx | auto as described above."""
    import lightgbm

    text = _read_text(path)
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as error:
        raise ModelLoadError(f"LightGBM cannot load {path}: {error}") from error
    header = _parse_header(text)
    native = NativeLightGBM(booster, header, threads)
    if backend == "native":
        return native
    try:
        twin = _onnx_twin(booster, header, threads, convert_cache)
    except (ImportError, ModelLoadError, RuntimeError, ValueError, KeyError, TypeError) as error:
        log.warning("LightGBM to ONNX conversion failed, scoring natively: %s", error)
        return native
    return _choose(native, twin, backend)
