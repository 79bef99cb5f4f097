"""The training baseline that drift monitoring compares live inputs and predictions with.

Read once at start from `MODELFLEET_BASELINE_URI` (any URI the model itself may come from;
the same row formats as the rollout's `replay.referenceUri`: CSV, one row per line, no header,
empty / `nan` / `null` = missing; or JSON `{"rows": [[...], ...]}` with `null` = missing;
columns in the model's feature order; at most `MODELFLEET_BASELINE_ROWS` rows). From it:

- per feature, bin edges: numeric features at the quantiles k/bins (k = 1 … bins-1, numpy's
  default linear interpolation) of the non-missing values, deduplicated; categorical features
  (the model's own) at each distinct value, the 64 most frequent at most, ascending;
- per feature, the cumulative share of non-missing values at or below each edge, the share
  missing, the share outside the trained range, and the standard deviation;
- per prediction-histogram output, the cumulative share of the baseline's predictions.

Every pod of a revision reads the same file and so derives the same edges; the edges travel
with the live counts as `le` labels (`predictions.py` counts, this module exposes the gauges).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import GaugeMetricFamily, Metric

from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import Outputs, Runtime
from modelfleet.server.storage import fetch_model

MAX_CATEGORIES = 64
SCORE_BATCH = 4096  # baseline rows per predict call when scoring the baseline once

Floats = npt.NDArray[np.float64]


class BaselineError(Exception):
    """The baseline cannot be used (unreadable, malformed, empty); the server serves anyway."""


@dataclass(frozen=True)
class Baseline:
    """What the baseline says, per feature (in the model's column order) and per output."""

    rows: int
    edges: tuple[Floats, ...]
    input_share: tuple[
        Floats | None, ...
    ]  # cumulative at each edge, then +Inf (1); None: no values
    missing_ratio: Floats
    out_of_range_ratio: Floats
    stddev: Floats  # NaN where a feature has no non-missing value
    prediction_share: dict[str, tuple[Floats, Floats]] = field(default_factory=dict)


def read_rows(uri: str, cache_dir: Path, max_rows: int, width: int) -> Floats:
    """The baseline's first `max_rows` rows as a float64 matrix (NaN = missing)."""
    try:
        path, _ = fetch_model(uri, cache_dir)
        text = path.read_text(encoding="utf-8")
    except ModelLoadError as error:
        raise BaselineError(str(error).replace("model file", "file")) from error
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"cannot read {uri}: {error}") from error
    return parse_rows(text, uri, max_rows, width)


def parse_rows(text: str, source: str, max_rows: int, width: int) -> Floats:
    """CSV or JSON rows (the rules of the operator's reference sets) as a float64 matrix."""
    if text.lstrip().startswith("{"):
        try:
            listed = json.loads(text)["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise BaselineError(f'{source}: not JSON of the form {{"rows": [...]}}') from error
        if not isinstance(listed, list) or not all(isinstance(row, list) for row in listed):
            raise BaselineError(f'{source}: "rows" must be a list of lists of numbers')
        rows = _as_matrix(listed[:max_rows], source, width)
    else:
        lines = [line for line in text.splitlines() if line.strip()][:max_rows]
        if not lines:
            raise BaselineError(f"{source}: no rows")
        try:  # numpy's C parser when every value is a plain number (the usual case)
            rows = np.loadtxt(lines, delimiter=",", comments=None, ndmin=2, dtype=np.float64)
        except ValueError:  # quotes, empty values, `null`, ragged rows: value by value
            rows = _as_matrix(list(csv.reader(io.StringIO("\n".join(lines)))), source, width)
    if rows.shape[0] == 0:
        raise BaselineError(f"{source}: no rows")
    if rows.shape[1] != width:
        raise BaselineError(f"{source}: rows have {rows.shape[1]} values, the model takes {width}")
    return rows


def _as_matrix(listed: list[Any], source: str, width: int) -> Floats:
    plain = all(len(row) == width for row in listed) and not any(
        isinstance(value, bool) for row in listed for value in row
    )
    if plain:
        try:  # numbers, numeric strings and nulls: one C-level conversion
            return np.array(listed, dtype=np.float64).reshape(len(listed), width)
        except (TypeError, ValueError):
            pass  # e.g. "null" or "" as text: value by value below
    rows = np.empty((len(listed), width), dtype=np.float64)
    for line, row in enumerate(listed, 1):
        if len(row) != width:
            raise BaselineError(
                f"{source}: row {line} has {len(row)} values, the model takes {width}"
            )
        rows[line - 1] = [_number(value, source, line) for value in row]
    return rows


def _number(value: Any, source: str, line: int) -> float:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan", "null")):
        return math.nan
    if isinstance(value, bool):
        raise BaselineError(f"{source}: row {line}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise BaselineError(f"{source}: row {line}: {value!r} is not a number") from error


def derive_edges(values: Floats, bins: int, categorical: bool) -> Floats:
    """Increasing, distinct edges for one feature from its non-missing baseline values."""
    if values.size == 0:
        return np.zeros(0, dtype=np.float64)
    if categorical:
        distinct, counts = np.unique(values, return_counts=True)
        # most frequent first; equal counts by value (np.unique sorted them, the sort is stable)
        kept = distinct[np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]]
        return np.sort(kept)
    quantiles = np.quantile(values, np.arange(1, bins) / bins)
    return np.unique(quantiles)


def cumulative_shares(values: Floats, edges: Floats) -> Floats:
    """Share of `values` at or below each edge, then 1 for +Inf (`le` semantics)."""
    at_or_below = np.searchsorted(np.sort(values), edges, side="right")
    return np.append(at_or_below / values.size, 1.0)


def summarise(
    rows: Floats,
    bins: int,
    categorical: Sequence[bool],
    low: Floats,
    high: Floats,
) -> Baseline:
    """Edges, shares, missing and out-of-range ratios, spread: per feature (columns of `rows`)."""
    missing = np.isnan(rows)
    edges, shares, stddev = [], [], []
    for column, is_categorical in enumerate(categorical):
        values = rows[~missing[:, column], column]
        feature_edges = derive_edges(values, bins, is_categorical)
        edges.append(feature_edges)
        shares.append(cumulative_shares(values, feature_edges) if values.size else None)
        stddev.append(float(values.std()) if values.size else math.nan)
    outside = (rows < low) | (rows > high)  # NaN is neither
    return Baseline(
        rows=rows.shape[0],
        edges=tuple(edges),
        input_share=tuple(shares),
        missing_ratio=missing.mean(axis=0),
        out_of_range_ratio=outside.mean(axis=0),
        stddev=np.asarray(stddev, dtype=np.float64),
    )


def score(runtime: Runtime, rows: Floats, dtype: np.dtype[Any]) -> Outputs:
    """The model's answers to the baseline rows, in batches (rows with a missing value are
    left out for a model whose input cannot be missing)."""
    if dtype.kind != "f":
        rows = rows[~np.isnan(rows).any(axis=1)]
    batches: list[Outputs] = []
    try:
        for start in range(0, rows.shape[0], SCORE_BATCH):
            batch = np.ascontiguousarray(rows[start : start + SCORE_BATCH], dtype=dtype)
            batches.append(runtime.predict(batch))
    except Exception as error:  # any library error: the baseline is unusable, serving is not
        raise BaselineError(f"the model fails on the baseline rows: {error}") from error
    if not batches:
        return {}
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def gauge_families(
    identity: dict[str, str],
    features: Sequence[str],
    ranged: Sequence[bool],
    baseline: Baseline | None,
) -> Iterator[Metric]:
    """`modelfleet_baseline_*`: `loaded` always (0 or 1), the rest only with a baseline."""
    keys, values = list(identity), list(identity.values())
    loaded = GaugeMetricFamily(
        "modelfleet_baseline_loaded",
        "1 when the baseline (MODELFLEET_BASELINE_URI) was read and its edges derived",
        labels=keys,
    )
    loaded.add_metric(values, 0.0 if baseline is None else 1.0)
    yield loaded
    if baseline is None:
        return
    rows = GaugeMetricFamily("modelfleet_baseline_rows", "Rows read from the baseline", labels=keys)
    rows.add_metric(values, float(baseline.rows))
    yield rows
    share = GaugeMetricFamily(
        "modelfleet_baseline_input_share",
        "Cumulative share of the baseline's non-missing values of this feature at or below le",
        labels=[*keys, "feature", "le"],
    )
    missing = _per_feature("missing_ratio", "Share of baseline rows missing this feature", keys)
    outside = _per_feature(
        "out_of_range_ratio", "Share of baseline rows outside this feature's trained range", keys
    )
    stddev = _per_feature("stddev", "Standard deviation of the non-missing baseline values", keys)
    for index, name in enumerate(features):
        cumulative = baseline.input_share[index]
        if cumulative is not None:
            for le, value in zip(le_labels(baseline.edges[index]), cumulative, strict=True):
                share.add_metric([*values, name, le], float(value))
            stddev.add_metric([*values, name], float(baseline.stddev[index]))
        missing.add_metric([*values, name], float(baseline.missing_ratio[index]))
        if ranged[index]:
            outside.add_metric([*values, name], float(baseline.out_of_range_ratio[index]))
    yield from (share, missing, outside, stddev)
    predictions = GaugeMetricFamily(
        "modelfleet_baseline_prediction_share",
        "Cumulative share of the baseline's predictions of this output at or below le "
        "(the modelfleet_prediction histogram's edges)",
        labels=[*keys, "output", "le"],
    )
    for output, (edges, cumulative) in baseline.prediction_share.items():
        for le, value in zip(le_labels(edges), cumulative, strict=True):
            predictions.add_metric([*values, output, le], float(value))
    yield predictions


def _per_feature(suffix: str, help_text: str, keys: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"modelfleet_baseline_input_{suffix}", help_text, labels=[*keys, "feature"]
    )


def le_labels(edges: Floats) -> list[str]:
    """The `le` label of each edge, then +Inf (the same text as the histograms')."""
    return [repr(float(edge)) for edge in edges] + ["+Inf"]
