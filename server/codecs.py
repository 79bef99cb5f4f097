"""Decode inference requests into row batches and encode outputs: OIP v2 (JSON and the
binary tensor data extension) and KServe v1. Pure functions; every client mistake is an
`InvalidInputError`/`MalformedRequestError` whose message names the field to fix.

NaN (JSON `NaN` or `null`) is accepted only when the model handles missing values
(LightGBM always; ONNX graphs made of tree-ensemble operators); otherwise it is a 400.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.server.errors import InvalidInputError, MalformedRequestError
from modelfleet.server.runtimes.base import OIP_TO_NUMPY, ModelMetadata, Outputs

_INT_KINDS = "iu"
_NUMERIC_KINDS = "fiub"
_ORJSON_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class V2Request:
    """A decoded OIP v2 request: the rows to score and how to answer."""

    rows: npt.NDArray[np.generic]
    id: str | None = None
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)


def parse_json(body: bytes) -> Any:
    """orjson first; the standard library only for the NaN/Infinity tokens clients send."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedRequestError(f"the request body is not valid JSON: {error}") from error


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidInputError(f"input '{name}': shape must be a list of non-negative integers")
    return tuple(value)


def _numeric(data: Any, name: str) -> npt.NDArray[np.generic]:
    if not isinstance(data, list):
        raise InvalidInputError(f"input '{name}': data must be a (flat or nested) list of numbers")
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidInputError(
            f"input '{name}': data is ragged or not numeric ({error})"
        ) from error
    if array.dtype.kind in _NUMERIC_KINDS:
        return array
    if array.dtype.kind == "O" and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in array.flat
    ):
        return array.astype(np.float64)  # JSON null means missing: NaN
    raise InvalidInputError(
        f"input '{name}': data must hold numbers only, found {array.dtype.kind!r}"
    )


def _typed(array: npt.NDArray[np.generic], datatype: str, name: str) -> npt.NDArray[np.generic]:
    kind = array.dtype.kind
    if datatype == "BOOL" and kind not in "b":
        raise InvalidInputError(f"input '{name}': BOOL data must be true/false")
    if datatype[0] in "IU" and kind not in "iub":
        raise InvalidInputError(f"input '{name}': {datatype} data must be integers")
    target = OIP_TO_NUMPY[datatype]
    if target.kind in _INT_KINDS and array.size and kind in _INT_KINDS:
        limits = np.iinfo(target.name)
        if array.min() < limits.min or array.max() > limits.max:
            raise InvalidInputError(f"input '{name}': values do not fit {datatype}")
    if array.dtype == target:
        return array
    with np.errstate(over="ignore", invalid="ignore"):  # too large for FP16/FP32: inf
        return array.astype(target)


def _binary(chunk: bytes, datatype: str, name: str) -> npt.NDArray[np.generic]:
    dtype = OIP_TO_NUMPY[datatype].newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise InvalidInputError(f"input '{name}': binary_data_size is not a multiple of {datatype}")
    return np.frombuffer(chunk, dtype=dtype)


def _decode_input(item: Any, binary: memoryview | None, offset: int) -> tuple[Any, int, str]:
    if not isinstance(item, dict):
        raise MalformedRequestError("each entry of 'inputs' must be an object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInputError("every input needs a string 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in OIP_TO_NUMPY:
        supported = ", ".join(OIP_TO_NUMPY)
        raise InvalidInputError(f"input '{name}': datatype must be one of {supported}")
    shape = _shape(item.get("shape"), name)
    parameters = item.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if binary is None or not isinstance(size, int) or size < 0:
            raise InvalidInputError(f"input '{name}': binary_data_size without binary data")
        if offset + size > len(binary):
            raise InvalidInputError(f"input '{name}': binary_data_size runs past the body")
        array = _binary(bytes(binary[offset : offset + size]), datatype, name)
        offset += size
    else:
        array = _typed(_numeric(item.get("data"), name), datatype, name)
    if array.size != math.prod(shape):
        raise InvalidInputError(
            f"input '{name}': {array.size} values do not fill shape {list(shape)} "
            f"({math.prod(shape)} values)"
        )
    return array.reshape(shape), offset, name


def _as_rows(columns: list[tuple[Any, str]], metadata: ModelMetadata) -> npt.NDArray[np.generic]:
    """One [N, F] input, or one [N] (or [N, 1]) input per feature named like the model's."""
    width = metadata.n_features
    if len(columns) == 1:
        array, name = columns[0]
        if array.ndim != 2 or (width > 0 and array.shape[1] != width):
            raise InvalidInputError(
                f"input '{name}': shape must be [rows, {width}] (one row of {width} features "
                f"per instance), got {list(array.shape)}"
            )
        rows: npt.NDArray[np.generic] = array
        return rows
    by_name = {name: array for array, name in columns}
    if set(by_name) != set(metadata.feature_names):
        raise InvalidInputError(
            f"send one input of shape [rows, {width}], or one input per feature named "
            f"{', '.join(metadata.feature_names) or '(the model has no feature names)'}"
        )
    arrays = [by_name[n].reshape(-1) for n in metadata.feature_names]
    if len({a.shape[0] for a in arrays}) != 1:
        raise InvalidInputError("every per-feature input must have the same number of rows")
    return np.column_stack(arrays)


def finish_rows(rows: npt.NDArray[np.generic], metadata: ModelMetadata) -> npt.NDArray[np.generic]:
    """Cast to the model's input type, refusing NaN/inf where the model cannot handle them."""
    if rows.shape[0] == 0:
        raise InvalidInputError("the request has no rows to score")
    typed = rows
    if rows.dtype != metadata.input_dtype or not rows.flags.c_contiguous:
        with np.errstate(over="ignore", invalid="ignore"):  # FP64 beyond FP32's range: inf
            typed = np.ascontiguousarray(rows, dtype=metadata.input_dtype)
    if not metadata.handles_missing and typed.dtype.kind == "f" and not np.isfinite(typed).all():
        raise InvalidInputError(
            "the input holds NaN or infinite values and this model does not handle missing values"
        )
    return typed


def _requested_outputs(value: Any, metadata: ModelMetadata) -> tuple[list[str] | None, set[str]]:
    if value is None:
        return None, set()
    known = {spec.name for spec in metadata.outputs}
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise InvalidInputError("'outputs' must be a list of {\"name\": ...} objects")
    names: list[str] = []
    binary: set[str] = set()
    for entry in value:
        name = entry.get("name")
        if not isinstance(name, str) or name not in known:
            raise InvalidInputError(f"unknown output {name!r}; this model has {', '.join(known)}")
        names.append(name)
        parameters = entry.get("parameters")
        if isinstance(parameters, dict) and parameters.get("binary_data") is True:
            binary.add(name)
    return names, binary


def decode_v2(body: bytes, header_length: int | None, metadata: ModelMetadata) -> V2Request:
    """An OIP v2 request body (JSON, or JSON + binary tensors) as rows for the model."""
    binary: memoryview | None = None
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise MalformedRequestError("Inference-Header-Content-Length is outside the body")
        binary = memoryview(body)[header_length:]
        body = body[:header_length]
    request = parse_json(body)
    if not isinstance(request, dict):
        raise MalformedRequestError("the request must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    columns, offset = [], 0
    for item in inputs:
        array, offset, name = _decode_input(item, binary, offset)
        columns.append((array, name))
    outputs, binary_outputs = _requested_outputs(request.get("outputs"), metadata)
    parameters = request.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        binary_outputs = {spec.name for spec in metadata.outputs}
    request_id = request.get("id")
    return V2Request(
        rows=finish_rows(_as_rows(columns, metadata), metadata),
        id=request_id if isinstance(request_id, str) else None,
        outputs=outputs,
        binary_outputs=binary_outputs,
    )


def _json_safe(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat.astype(np.float32) if flat.dtype == np.float16 else flat


def encode_v2(
    request: V2Request, outputs: Outputs, metadata: ModelMetadata, name: str, version: str
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow it."""
    names = request.outputs or [spec.name for spec in metadata.outputs]
    datatypes = {spec.name: spec.datatype for spec in metadata.outputs}
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for output in names:
        array = outputs[output]
        entry: dict[str, Any] = {
            "name": output,
            "datatype": datatypes[output],
            "shape": list(array.shape),
        }
        if output in request.binary_outputs:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_safe(array)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=_ORJSON_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _instance_rows(instances: list[Any], metadata: ModelMetadata) -> npt.NDArray[np.generic]:
    if all(isinstance(i, dict) for i in instances):
        names = metadata.feature_names
        if not names:
            raise InvalidInputError("this model has no feature names: send instances as lists")
        index = {n: i for i, n in enumerate(names)}
        unknown = {k for i in instances for k in i} - set(index)
        if unknown:
            raise InvalidInputError(
                f"unknown features {sorted(unknown)}; the model has {list(names)}"
            )
        missing = float("nan")
        instances = [[i.get(n, missing) for n in names] for i in instances]
    array = _typed(_numeric(instances, "instances"), "FP64", "instances")
    if array.ndim != 2:
        raise InvalidInputError("'instances' must be a list of rows (lists of numbers or objects)")
    return array


def decode_v1(body: bytes, metadata: ModelMetadata) -> npt.NDArray[np.generic]:
    """A KServe v1 `{"instances": [...]}` (or `inputs`) body as rows for the model."""
    request = parse_json(body)
    if not isinstance(request, dict):
        raise MalformedRequestError('the request must be a JSON object: {"instances": [...]}')
    instances = request.get("instances", request.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("'instances' must be a non-empty list of rows")
    rows = _instance_rows(instances, metadata)
    if metadata.n_features > 0 and rows.shape[1] != metadata.n_features:
        raise InvalidInputError(
            f"each instance needs {metadata.n_features} features, got {rows.shape[1]}"
        )
    return finish_rows(rows, metadata)


def encode_v1(outputs: Outputs, metadata: ModelMetadata) -> bytes:
    """`{"predictions": [...]}` from the model's primary output (probabilities or values)."""
    predictions = outputs[metadata.primary_output]
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.reshape(-1)
    if predictions.dtype == np.float16:
        predictions = predictions.astype(np.float32)
    return orjson.dumps({"predictions": np.ascontiguousarray(predictions)}, option=_ORJSON_NUMPY)
