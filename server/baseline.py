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
with the live counts as `le` labels. `EdgeCounts` counts live values on the edges, in bulk, in
the prediction metrics' flush (`predictions.py`); `gauge_families` exposes the baseline.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from modelfleet.server import storage
from modelfleet.server.errors import ModelLoadError
from modelfleet.server.runtimes.base import Outputs, Runtime

MAX_CATEGORIES = 64
SCORE_BATCH = 4096  # baseline rows per predict call when scoring the baseline once
# Features with at most this many edges are counted by comparing every value with every edge
# (branch-free, vectorised: ~0.25 µs per row of 64 features at 9 edges); a binary search
# (searchsorted) mispredicts on random data and costs ~1 µs there, but wins past ~25 edges.
COMPARED_EDGES = 16
COUNT_CHUNK = 1024  # rows compared at once: bounds the (rows × edges × features) temporary

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


def read_rows(uri: str, max_rows: int, width: int) -> Floats:
    """The baseline's first `max_rows` rows as a float64 matrix (NaN = missing)."""
    try:
        text = _read_text(uri, max_rows)
    except ModelLoadError as error:
        raise BaselineError(str(error)) from error
    except UnicodeDecodeError as error:
        raise BaselineError(f"cannot read {uri}: not UTF-8 text ({error.reason})") from error
    return parse_rows(text, uri, max_rows, width)


def _read_text(uri: str, max_rows: int) -> str:
    """The file's text; for CSV only up to its `max_rows`-th non-blank line (a training set
    may be far larger than the rows wanted), for JSON all of it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    is_csv: bool | None = None
    newlines = 0
    for chunk in storage.stream(uri):
        text = decoder.decode(chunk)
        parts.append(text)
        if is_csv is None and text.strip():
            is_csv = not "".join(parts).lstrip().startswith("{")
        if is_csv:
            newlines += text.count("\n")
            if newlines > max_rows and _non_blank_lines("".join(parts)) > max_rows:
                return "".join(parts)  # enough rows; closing the generator closes the file
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def _non_blank_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


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
    """Increasing, distinct edges for one feature from its non-missing baseline values; only
    finite values make edges (an infinite one still counts in the shares, but `le="inf"`
    would shadow the +Inf bucket)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(0, dtype=np.float64)
    if categorical:
        distinct, counts = np.unique(finite, return_counts=True)
        # most frequent first; equal counts by value (np.unique sorted them, the sort is stable)
        return np.sort(distinct[np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]])
    return np.unique(np.quantile(finite, np.arange(1, bins) / bins))


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
        finite = values[np.isfinite(values)]
        stddev.append(float(finite.std()) if finite.size else math.nan)
    outside = (rows < low) | (rows > high)  # NaN is neither
    return Baseline(
        rows=rows.shape[0],
        edges=tuple(edges),
        input_share=tuple(shares),
        missing_ratio=missing.mean(axis=0),
        out_of_range_ratio=outside.mean(axis=0),
        stddev=np.asarray(stddev, dtype=np.float64),
    )


class EdgeCounts:
    """Live counts of every feature's non-missing values on its baseline edges (`le`).

    Features with few edges (the default 9, small categoricals) are counted cumulatively at
    once: `values <= grid` over a (rows, depth, features) block, the grid holding each
    feature's edges padded with +Inf, summed over rows; a NaN is never <= anything. The other
    features get one searchsorted per column and one bincount over a flat array in which
    feature j owns len(edges[j]) + 1 slots from `offsets[j]`; a NaN sorts past every edge into
    the +Inf slot and is taken out again with the feature's missing count."""

    def __init__(self, edges: tuple[Floats, ...]) -> None:
        self.edges = edges
        self.compared = [j for j, e in enumerate(edges) if len(e) <= COMPARED_EDGES]
        self.searched = [j for j, e in enumerate(edges) if len(e) > COMPARED_EDGES]
        self._every_column = len(self.compared) == len(edges)
        depth = max((len(edges[j]) for j in self.compared), default=0)
        self.grid = np.full((depth, len(self.compared)), np.inf)
        for column, j in enumerate(self.compared):
            self.grid[: len(edges[j]), column] = edges[j]
        self.at_or_below = np.zeros(self.grid.shape, dtype=np.int64)
        sizes = np.array([len(edges[j]) + 1 for j in self.searched], dtype=np.intp)
        self.offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        self.last = self.offsets + sizes - 1  # each searched feature's +Inf slot
        self.slots = np.zeros(int(sizes.sum()), dtype=np.int64)
        self.sums = np.zeros(len(edges), dtype=np.float64)
        self.seen = np.zeros(len(edges), dtype=np.int64)  # non-missing values per feature

    def observe(self, rows: npt.NDArray[np.generic], missing: npt.NDArray[np.int64]) -> None:
        """Count a (rows × features) batch whose per-feature NaN counts are `missing`."""
        if self.compared:
            block = rows if self._every_column else rows[:, self.compared]
            for start in range(0, block.shape[0], COUNT_CHUNK):
                below = block[start : start + COUNT_CHUNK, None, :] <= self.grid[None, :, :]
                flat = below.view(np.uint8).reshape(below.shape[0], -1)  # 2-D: a faster reduce
                at_or_below = np.add.reduce(flat, axis=0, dtype=np.int32)  # < 2**31 per chunk
                self.at_or_below += at_or_below.reshape(self.grid.shape)
        if self.searched:
            slots = np.empty((len(self.searched), rows.shape[0]), dtype=np.intp)
            for slot_row, j in enumerate(self.searched):
                slots[slot_row] = np.searchsorted(self.edges[j], rows[:, j], side="left")
            slots += self.offsets[:, None]
            counts = np.bincount(slots.ravel(), minlength=self.slots.shape[0])
            counts[self.last] -= missing[self.searched]  # the NaNs in the +Inf slots
            self.slots += counts
        self.seen += rows.shape[0] - missing
        sums = rows.sum(axis=0, dtype=np.float64)
        if np.isnan(sums).any():
            sums = np.nansum(rows, axis=0, dtype=np.float64)
        self.sums += sums

    def snapshot(self) -> tuple[list[list[int]], list[float]]:
        """Per feature: the count at or below each edge then the +Inf count, and the sum. The
        caller holds the lock `observe` runs under, so buckets, count and sum agree."""
        result: list[list[int]] = [[] for _ in self.edges]
        for column, j in enumerate(self.compared):
            at_or_below = self.at_or_below[: len(self.edges[j]), column].tolist()
            result[j] = [*at_or_below, int(self.seen[j])]
        for slot_row, j in enumerate(self.searched):
            start, stop = self.offsets[slot_row], self.last[slot_row] + 1
            result[j] = np.cumsum(self.slots[start:stop]).tolist()
        return result, self.sums.tolist()

    def family(
        self,
        identity: dict[str, str],
        features: Sequence[str],
        snapshot: tuple[list[list[int]], list[float]],
    ) -> Metric:
        """`modelfleet_input` from a `snapshot()`: a histogram per feature, `_count` and `_sum`
        always."""
        counts, sums = snapshot
        label_names = [*identity, "feature"]
        family = HistogramMetricFamily(
            "modelfleet_input",
            "Non-missing values of this feature on the baseline's edges (MODELFLEET_BASELINE_URI)",
            labels=label_names,
        )
        for index, (name, cumulative) in enumerate(zip(features, counts, strict=True)):
            les = le_labels(self.edges[index])
            buckets = [(le, float(count)) for le, count in zip(les, cumulative, strict=True)]
            labels = [*identity.values(), name]
            family.add_metric(labels, buckets, None)
            # prometheus_client leaves _count and _sum out below a negative edge; the count
            # is what live shares are divided by, so both are always there (docs/server.md)
            named = dict(zip(label_names, labels, strict=True))
            family.samples.append(Sample("modelfleet_input_count", named, buckets[-1][1]))
            family.samples.append(Sample("modelfleet_input_sum", named, sums[index]))
        return family


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
