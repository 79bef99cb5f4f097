"""OIP v2 and KServe v1 codecs: what is accepted, what is refused and how the message reads."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet.server.codecs import decode_v1, decode_v2, encode_v1, encode_v2
from modelfleet.server.errors import InvalidInputError, MalformedRequestError
from modelfleet.server.runtimes.base import ModelMetadata, TensorSpec

NAMES = ("a", "b", "c")


def _metadata(handles_missing: bool = True, datatype: str = "FP64") -> ModelMetadata:
    return ModelMetadata(
        platform="lightgbm",
        backend="lightgbm",
        task="binary",
        input=TensorSpec("input", datatype, (-1, 3)),
        outputs=(
            TensorSpec("probabilities", datatype, (-1, 2)),
            TensorSpec("label", "INT64", (-1,)),
        ),
        n_features=3,
        feature_names=NAMES,
        classes=2,
        handles_missing=handles_missing,
        primary_output="probabilities",
    )


META = _metadata()


def _v2(data: Any, shape: Any = (2, 3), datatype: str = "FP64", **extra: Any) -> bytes:
    tensor = {"name": "input", "datatype": datatype, "shape": list(shape), "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


@pytest.mark.parametrize(
    "data", [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]], [1.0, 2, 3.5, 4, 5, 6e-3]]
)
def test_flat_and_nested_data(data: list[Any]) -> None:
    rows = decode_v2(_v2(data), None, META).rows
    assert rows.shape == (2, 3)
    assert rows.dtype == np.float64
    assert rows.flags.c_contiguous


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "INT32", "INT64", "UINT8"])
def test_numeric_datatypes_are_cast_to_the_model_input(datatype: str) -> None:
    rows = decode_v2(_v2([1, 2, 3, 4, 5, 6], datatype=datatype), None, META).rows
    np.testing.assert_array_equal(rows, [[1, 2, 3], [4, 5, 6]])


def test_bool_inputs() -> None:
    body = _v2([True, False, True], shape=(1, 3), datatype="BOOL")
    np.testing.assert_array_equal(decode_v2(body, None, META).rows, [[1, 0, 1]])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [5]}', "must be an object"),
        (_v2([1, 2, 3, 4, 5]), "5 values do not fill shape"),
        (_v2([[1, 2, 3], [4, 5]]), "ragged"),
        (_v2(["1", "2", "3", "4", "5", "6"]), "numbers only"),
        (_v2([1, 2, 3, 4, 5, {"x": 1}]), "numbers only"),
        (_v2([1, 2, 3, 4], shape=(2, 2)), r"shape must be \[rows, 3\]"),
        (_v2([1, 2, 3], shape=(3,)), r"shape must be \[rows, 3\]"),
        (_v2([1, 2, 3], shape=(1, -3)), "non-negative integers"),
        (_v2([1, 2, 3], shape="1,3"), "non-negative integers"),
        (_v2([1, 2, 3], shape=(1, 3), datatype="BYTES"), "datatype must be one of"),
        (_v2([1.5, 2, 3], shape=(1, 3), datatype="INT64"), "must be integers"),
        (_v2([1, 2, 3], shape=(1, 3), datatype="BOOL"), "true/false"),
        (_v2([], shape=(0, 3)), "no rows"),
        (_v2(None, shape=(1, 3)), "list of numbers"),
        (_v2([1e400, 1, 1], shape=(1, 3), datatype="INT8"), "integers"),
        (_v2([300, 1, 1], shape=(1, 3), datatype="INT8"), "do not fit INT8"),
        (
            orjson.dumps({"inputs": [{"datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}),
            "name",
        ),
    ],
)
def test_client_mistakes_name_what_to_fix(body: bytes, message: str) -> None:
    with pytest.raises((InvalidInputError, MalformedRequestError), match=message):
        decode_v2(body, None, META)


def test_nan_and_null_are_missing_values_where_the_model_handles_them() -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [float("nan"), None, 1]}
            ]
        }
    )
    rows = decode_v2(body.encode(), None, META).rows
    assert math.isnan(rows[0, 0])
    assert math.isnan(rows[0, 1])
    assert rows[0, 2] == 1


def test_nan_is_refused_where_the_model_cannot_handle_it() -> None:
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [float("nan"), 1, 1]}
            ]
        }
    )
    with pytest.raises(InvalidInputError, match="does not handle missing values"):
        decode_v2(body.encode(), None, _metadata(handles_missing=False))


def test_one_input_per_feature_is_assembled_in_model_order() -> None:
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [2], "data": [value, value + 10]}
        for name, value in (("c", 3), ("a", 1), ("b", 2))
    ]
    rows = decode_v2(orjson.dumps({"inputs": inputs}), None, META).rows
    np.testing.assert_array_equal(rows, [[1, 2, 3], [11, 12, 13]])


def test_per_feature_inputs_must_match_the_feature_names() -> None:
    inputs = [{"name": n, "datatype": "FP64", "shape": [1], "data": [1]} for n in ("a", "b", "z")]
    with pytest.raises(InvalidInputError, match="one input per feature named a, b, c"):
        decode_v2(orjson.dumps({"inputs": inputs}), None, META)


def test_binary_tensor_data_extension() -> None:
    values = np.arange(6, dtype=np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    )
    request = decode_v2(header + values.tobytes(), len(header), META)
    np.testing.assert_array_equal(request.rows.ravel(), values)
    assert request.outputs == ["label"]
    assert request.binary_outputs == {"label"}


@pytest.mark.parametrize(("size", "length_delta"), [(100, 0), (24, 1000)])
def test_binary_sizes_outside_the_body_are_refused(size: int, length_delta: int) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "i",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    with pytest.raises((InvalidInputError, MalformedRequestError)):
        decode_v2(header + b"\0" * 24, len(header) + length_delta, META)


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown output 'score'"):
        decode_v2(_v2([1, 2, 3, 4, 5, 6], outputs=[{"name": "score"}]), None, META)


def test_encode_v2_json_outputs_and_id() -> None:
    request = decode_v2(_v2([1, 2, 3, 4, 5, 6], id="req-1"), None, META)
    outputs = {"probabilities": np.array([[0.25, 0.75], [0.5, 0.5]]), "label": np.array([1, 0])}
    body, header_length = encode_v2(request, outputs, META, "fraud", "v7")
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "fraud",
        "model_version": "v7",
        "id": "req-1",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [2, 2],
                "data": [0.25, 0.75, 0.5, 0.5],
            },
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]},
        ],
    }


def test_encode_v2_binary_outputs() -> None:
    request = decode_v2(
        _v2([1, 2, 3, 4, 5, 6], parameters={"binary_data_output": True}), None, META
    )
    outputs = {"probabilities": np.array([[0.25, 0.75], [0.5, 0.5]]), "label": np.array([1, 0])}
    body, header_length = encode_v2(request, outputs, META, "m", "1")
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [32, 16]
    np.testing.assert_array_equal(np.frombuffer(body[header_length:][32:], dtype="<i8"), [1, 0])


def test_v1_instances_as_lists_and_as_objects() -> None:
    lists = decode_v1(b'{"instances": [[1, 2, 3], [4, 5, 6]]}', META)
    objects = decode_v1(
        b'{"instances": [{"a": 1, "b": 2, "c": 3}, {"c": 6, "b": 5, "a": 4}]}', META
    )
    np.testing.assert_array_equal(lists, objects)
    partial = decode_v1(b'{"instances": [{"a": 1, "c": 3}]}', META)
    assert math.isnan(partial[0, 1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instances": []}', "non-empty"),
        (b'{"instances": [[1, 2]]}', "needs 3 features"),
        (b'{"instances": [{"a": 1, "zz": 2}]}', "unknown features"),
        (b'{"instances": [1, 2, 3]}', "list of rows"),
        (b'{"instances": [[1, 2, 3], [1]]}', "ragged"),
        (b'"text"', "JSON object"),
    ],
)
def test_v1_mistakes(body: bytes, message: str) -> None:
    with pytest.raises((InvalidInputError, MalformedRequestError), match=message):
        decode_v1(body, META)


def test_encode_v1_uses_the_primary_output() -> None:
    outputs = {"probabilities": np.array([[0.25, 0.75]]), "label": np.array([1])}
    assert orjson.loads(encode_v1(outputs, META)) == {"predictions": [[0.25, 0.75]]}
