"""LightGBM and ONNX runtimes: metadata read from the model, predictions equal to the
library's own, the ONNX twin of a booster checked against it."""

from __future__ import annotations

import gzip
import pickle
import threading
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import probe_rows
from modelfleet.server.runtimes.lightgbm import load_lightgbm
from modelfleet.server.runtimes.onnx import load_onnx

FEATURES = 6  # as trained in conftest.py


@pytest.mark.parametrize(
    ("model", "task", "classes", "outputs"),
    [
        ("binary.txt", "binary", 2, ("probabilities", "label")),
        ("multiclass.txt", "multiclass", 3, ("probabilities", "label")),
        ("regression.txt", "regression", 0, ("predictions",)),
        ("categorical.txt", "binary", 2, ("probabilities", "label")),
    ],
)
def test_lightgbm_metadata_comes_from_the_model(
    model_dir: Path, model: str, task: str, classes: int, outputs: tuple[str, ...]
) -> None:
    meta = load_lightgbm(model_dir / model).metadata()
    assert (meta.task, meta.classes, meta.n_features) == (task, classes, FEATURES)
    assert tuple(spec.name for spec in meta.outputs) == outputs
    assert meta.feature_names == tuple(f"f{i}" for i in range(FEATURES))
    assert meta.input.shape == (-1, FEATURES)
    assert meta.handles_missing


def test_categorical_features_and_ranges_are_read(model_dir: Path) -> None:
    meta = load_lightgbm(model_dir / "categorical.txt").metadata()
    assert set(meta.categorical_features) == {"f5"}
    assert set(meta.categorical_features["f5"]) <= {0, 1, 2, 3}
    low, high = meta.feature_ranges["f0"]
    assert low < 0 < high


@pytest.mark.parametrize("model", ["binary.txt", "multiclass.txt", "regression.txt"])
def test_native_predictions_equal_the_booster(model_dir: Path, model: str) -> None:
    runtime = load_lightgbm(model_dir / model)
    booster = lightgbm.Booster(model_file=str(model_dir / model))
    rows = probe_rows(runtime.metadata(), 32)
    expected = np.asarray(booster.predict(rows))
    outputs = runtime.predict(rows)
    if runtime.metadata().task == "regression":
        np.testing.assert_array_equal(outputs["predictions"], expected)
    else:
        probabilities = outputs["probabilities"]
        positive = probabilities[:, 1] if expected.ndim == 1 else probabilities
        np.testing.assert_array_equal(positive, expected)
        np.testing.assert_array_equal(outputs["label"], np.argmax(probabilities, axis=1))


def test_nan_is_a_missing_value_for_lightgbm(model_dir: Path) -> None:
    runtime = load_lightgbm(model_dir / "binary.txt")
    rows = np.full((1, FEATURES), np.nan)
    assert np.isfinite(runtime.predict(rows)["probabilities"]).all()


@pytest.mark.parametrize("model", ["binary.txt", "multiclass.txt", "regression.txt"])
def test_onnx_backend_agrees_with_native(model_dir: Path, model: str, tmp_path: Path) -> None:
    native = load_lightgbm(model_dir / model)
    twin = load_lightgbm(model_dir / model, backend="onnx", convert_cache=tmp_path / "m.onnx")
    assert twin.metadata().backend == "onnxruntime (converted)"
    assert (tmp_path / "m.onnx").is_file()  # cached for the next start
    rows = probe_rows(native.metadata(), 64)
    expected, actual = native.predict(rows), twin.predict(rows.astype(np.float32))
    for name, value in expected.items():
        np.testing.assert_allclose(
            actual[name].astype(float), value.astype(float), rtol=1e-5, atol=1e-5
        )


def test_auto_backend_serves_natively_then_switches_in_the_background(
    model_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "converted.onnx"
    runtime = load_lightgbm(model_dir / "multiclass.txt", backend="auto", convert_cache=cache)
    assert runtime.metadata().backend == "lightgbm"  # no cached conversion: ready at once
    switched = threading.Event()
    thread = runtime.upgrade_in_background(model_dir / "multiclass.txt", cache, 1, switched.set)
    thread.join(timeout=120)
    assert switched.is_set()
    assert runtime.metadata().backend == "onnxruntime (converted)"
    assert runtime.metadata().outputs == runtime.native.metadata().outputs  # same datatypes
    again = load_lightgbm(model_dir / "multiclass.txt", backend="auto", convert_cache=cache)
    assert again.metadata().backend == "onnxruntime (converted)"  # the cache makes it immediate


def test_gzip_text_models_load(model_dir: Path, tmp_path: Path) -> None:
    packed = tmp_path / "model.txt.gz"
    packed.write_bytes(gzip.compress((model_dir / "binary.txt").read_bytes()))
    assert load_lightgbm(packed).metadata().task == "binary"


def test_pickled_boosters_are_refused(model_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "model.txt"
    pickled.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ModelLoadError, match="not a LightGBM text model"):
        load_lightgbm(pickled)


def test_truncated_lightgbm_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model.txt"
    broken.write_text((model_dir / "binary.txt").read_text()[:300])
    with pytest.raises(ModelLoadError):
        load_lightgbm(broken)


def test_sklearn_onnx_model_serves_its_tensor_outputs(model_dir: Path) -> None:
    runtime = load_onnx(model_dir / "logistic.onnx")
    meta = runtime.metadata()
    assert meta.input.datatype == "FP32"
    assert meta.n_features == FEATURES
    assert {spec.name for spec in meta.outputs} == {"label", "probabilities"}
    assert meta.primary_output == "probabilities"
    assert meta.task == "binary"
    assert not meta.handles_missing  # a linear model computes with NaN: refused at the door
    outputs = runtime.predict(np.zeros((3, FEATURES), dtype=np.float32))
    assert outputs["probabilities"].shape == (3, 2)


def test_tree_onnx_models_handle_missing_values(model_dir: Path) -> None:
    meta = load_onnx(model_dir / "tree.onnx").metadata()
    assert meta.handles_missing
    assert meta.task == "regression"


def test_onnx_zipmap_outputs_are_left_out(model_dir: Path) -> None:
    runtime = load_onnx(model_dir / "zipmap.onnx")
    assert [spec.name for spec in runtime.metadata().outputs] == ["output_label"]
    assert runtime.predict(np.zeros((2, FEATURES), dtype=np.float32))["output_label"].shape == (2,)


def test_onnx_with_two_inputs_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    path = tmp_path / "two.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="2 inputs"):
        load_onnx(path)


def test_garbage_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        load_onnx(path)
