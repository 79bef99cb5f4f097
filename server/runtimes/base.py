"""The runtime interface every model format implements, and the metadata it reports.

A runtime is loaded once (`load_*` functions in the sibling modules) and then only
answers `metadata()` and `predict(rows)`: rows are a C-contiguous 2-D array of
`metadata().input_dtype`, one row per instance; outputs are arrays whose first
dimension is the row count, by output name, in the order `metadata().outputs` lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Task = Literal["binary", "multiclass", "regression", "unknown"]

NUMPY_TO_OIP: dict[str, str] = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
OIP_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    oip: np.dtype(name) for name, oip in NUMPY_TO_OIP.items()
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the Open Inference Protocol describes it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    """What a loaded model is: read from the model file itself, never configured."""

    platform: str
    backend: str
    task: Task
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    n_features: int
    feature_names: tuple[str, ...] = ()
    classes: int = 0
    handles_missing: bool = False
    primary_output: str = ""
    feature_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categorical_features: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def input_dtype(self) -> np.dtype[np.generic]:
        return OIP_TO_NUMPY[self.input.datatype]


Outputs = dict[str, npt.NDArray[np.generic]]


class Runtime(Protocol):
    """A loaded model: metadata from the file, and a predict over a 2-D batch of rows."""

    def metadata(self) -> ModelMetadata: ...

    def predict(self, rows: npt.NDArray[np.generic]) -> Outputs: ...


def probe_rows(metadata: ModelMetadata, count: int, seed: int = 0) -> npt.NDArray[np.generic]:
    """Rows spread over each feature's trained range (categories for categorical ones),
    with a few missing values where the model handles them: for warm-up and equality checks."""
    rng = np.random.default_rng(seed)
    width = max(metadata.n_features, 1)
    rows = rng.normal(size=(count, width))
    for index, name in enumerate(metadata.feature_names[:width]):
        if metadata.categorical_features.get(name):
            rows[:, index] = rng.choice(np.array(metadata.categorical_features[name]), size=count)
        elif name in metadata.feature_ranges:
            low, high = metadata.feature_ranges[name]
            rows[:, index] = rng.uniform(low, high, size=count)
    if metadata.handles_missing and count >= 4:
        rows[rng.integers(0, count, size=count // 4), rng.integers(0, width, size=count // 4)] = (
            np.nan
        )
    return np.ascontiguousarray(rows.astype(metadata.input_dtype))
