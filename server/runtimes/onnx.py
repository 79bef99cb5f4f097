"""ONNX models through onnxruntime: any model with one tensor input, CPU (or CUDA when asked)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import ModelMetadata, Outputs, Task, TensorSpec

log = logging.getLogger(__name__)

_ORT_TO_OIP = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
}
# Operators that route missing values (NaN) down a branch instead of computing with them.
_MISSING_AWARE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}


def _shape(dims: list[object]) -> tuple[int, ...]:
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in dims)
    return (-1, *shape[1:]) if shape else shape  # the batch dimension is always free


def _graph_facts(model: bytes) -> tuple[bool, dict[str, str]]:
    """Whether the graph handles NaN inputs (tree ensembles), and its metadata properties."""
    try:
        import onnx
    except ImportError:  # the onnx package is optional at run time: assume the strict answer
        return False, {}
    proto = onnx.load_from_string(model)
    ops = {node.op_type for node in proto.graph.node}
    props = {prop.key: prop.value for prop in proto.metadata_props}
    return bool(ops & _MISSING_AWARE_OPS), props


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # converted models warn about static output shapes
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def fast_run(session: Any) -> Any:
    """The session's compiled `run(output_names, feed, run_options)`: the Python wrapper
    re-validates the feed on every call, which costs more than a one-row tree ensemble."""
    compiled = getattr(session, "_sess", None)
    if compiled is None or not hasattr(compiled, "run"):
        return session.run
    return compiled.run


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("CUDA asked for but onnxruntime has no CUDA provider here: using the CPU")
    return ["CPUExecutionProvider"]


class OnnxRuntime:
    """One onnxruntime session; outputs are the model's tensor outputs, by name."""

    def __init__(self, model: bytes, threads: int = 1, device: str = "cpu") -> None:
        import onnxruntime as ort

        try:
            self._session = ort.InferenceSession(
                model, sess_options=session_options(threads), providers=_providers(device)
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load the model: {error}") from error
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelLoadError(
                f"the model has {len(inputs)} inputs ({names}); modelfleet serves models "
                "with one tensor input of shape [batch, features]"
            )
        self._input_name: str = inputs[0].name
        self._metadata = self._describe(inputs[0], model)
        self._output_names = [spec.name for spec in self._metadata.outputs]
        self._run = fast_run(self._session)

    def _describe(self, model_input: object, model: bytes) -> ModelMetadata:
        datatype = _ORT_TO_OIP.get(getattr(model_input, "type", ""))
        shape = _shape(list(getattr(model_input, "shape", [])))
        if datatype is None or len(shape) != 2:
            raise ModelLoadError(
                "the model's input must be a numeric tensor of shape [batch, features], "
                f"not {getattr(model_input, 'type', '?')} {list(shape)}"
            )
        outputs = tuple(
            TensorSpec(o.name, _ORT_TO_OIP[o.type], _shape(list(o.shape)))
            for o in self._session.get_outputs()
            if o.type in _ORT_TO_OIP
        )
        if not outputs:
            raise ModelLoadError(
                "the model has no tensor output (only sequences or maps): convert classifiers "
                "without ZipMap (skl2onnx options={'zipmap': False}, onnxmltools zipmap=False)"
            )
        handles_missing, _props = _graph_facts(model)
        return ModelMetadata(
            platform="onnx",
            backend="onnxruntime",
            task=_guess_task(outputs),
            input=TensorSpec(self._input_name, datatype, shape),
            outputs=outputs,
            n_features=shape[1],
            feature_names=(),
            classes=_classes(outputs),
            handles_missing=handles_missing,
            primary_output=_primary_output(outputs),
        )

    def metadata(self) -> ModelMetadata:
        return self._metadata

    def predict(self, rows: npt.NDArray[np.generic]) -> Outputs:
        results = self._run(self._output_names, {self._input_name: rows}, None)
        return dict(zip(self._output_names, results, strict=True))


def _primary_output(outputs: tuple[TensorSpec, ...]) -> str:
    for spec in outputs:
        if "prob" in spec.name.lower():
            return spec.name
    for spec in outputs:
        if spec.datatype.startswith("FP"):
            return spec.name
    return outputs[0].name


def _classes(outputs: tuple[TensorSpec, ...]) -> int:
    for spec in outputs:
        if "prob" in spec.name.lower() and len(spec.shape) == 2 and spec.shape[1] > 0:
            return spec.shape[1]
    return 0


def _guess_task(outputs: tuple[TensorSpec, ...]) -> Task:
    classes = _classes(outputs)
    if classes == 2:
        return "binary"
    if classes > 2:
        return "multiclass"
    if len(outputs) == 1 and outputs[0].datatype.startswith("FP"):
        return "regression"
    return "unknown"


def load_onnx(path: Path, threads: int = 1, device: str = "cpu") -> OnnxRuntime:
    """Load an .onnx file."""
    try:
        model = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    return OnnxRuntime(model, threads=threads, device=device)
