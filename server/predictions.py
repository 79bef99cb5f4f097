"""What the model answered and what it was asked: prediction histograms per output,
predicted-class counts, and input quality per feature (missing, outside the trained range).

Cheap on the hot path: each predict call (a micro-batch) only appends references to its
input and output arrays to a pending queue (a deque: no lock). They are counted in
bulk, with a handful of vectorised numpy operations over all pending rows at once
(searchsorted + bincount, NaN and range comparisons summed over rows; never a Python loop
over rows), when `FLUSH_VALUES` input values or `FLUSH_BATCHES` batches are pending, and before
every scrape, so an exposition always includes every answered request. Counting each
one-row request on its own cost ~50 % more server CPU per request (a dozen numpy calls of
a few µs each on tiny arrays); in bulk it is within the noise (docs/benchmarks.md).
Exposed by the same registry as the request metrics, with the same identity labels, so
both slots of a rollout can be compared bucket by bucket.

With a baseline, each feature's values are also counted on the baseline's edges
(`modelfleet_input`, one histogram per feature) in the same flush (`baseline.EdgeCounts`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelfleet.server import baseline as baselines
from modelfleet.server.baseline import Baseline
from modelfleet.server.runtimes.base import ModelMetadata, Outputs

# Probabilities: fixed edges, identical for every model and slot. 0.05 steps in the middle,
# finer towards 0 and 1 where a well-calibrated classifier for rare events (fraud, churn)
# puts most of its rows: with 0.05 steps alone most traffic would share one bucket and a
# shift from 0.002 to 0.03 (a tenfold rise in flagged risk) would be invisible.
PROBABILITY_EDGES: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
    0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0,
)  # fmt: skip
# Regression outputs and other scores, unless MODELFLEET_PREDICTION_BUCKETS says otherwise
# (the operator hands both slots of a rollout the same edges): a symmetric 1-2.5-5 series
# from 0.01 to 1000, so any scale gets a usable shape until edges fitted to it arrive.
_POSITIVE = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
             250.0, 500.0, 1000.0)  # fmt: skip
DEFAULT_VALUE_EDGES: tuple[float, ...] = (*(-v for v in reversed(_POSITIVE)), 0.0, *_POSITIVE)
# Class labels that can be counted with bincount; anything else goes through np.unique.
_BINCOUNT_LIMIT = 4096
# Pending work counted in bulk past these (and before every scrape): bounds memory and
# keeps the per-request cost to one list append.
FLUSH_VALUES = 1 << 18  # input values (rows × features): 2 MB of FP64
FLUSH_BATCHES = 256

log = logging.getLogger(__name__)


class _ValueHistogram:
    """Counts of one 1-D series of predicted values on fixed edges (le semantics)."""

    def __init__(self, source: str, column: int | None, edges: tuple[float, ...]) -> None:
        self.source = source  # the model's output name
        self.column = column  # the column of a 2-D output, or None for a 1-D one
        # the label value, e.g. "probabilities[1]" or "predictions"
        self.output = source if column is None else f"{source}[{column}]"
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = np.zeros(len(edges) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, values: npt.NDArray[np.generic]) -> None:
        values = np.asarray(values, dtype=np.float64)
        total = float(values.sum())
        if total != total:  # NaN answers are not predictions: leave them out
            values = values[~np.isnan(values)]
            total = float(values.sum())
        index = np.searchsorted(self.edges, values, side="left")
        self.counts += np.bincount(index, minlength=self.counts.shape[0])
        self.total += total

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        cumulative = np.cumsum(self.counts)  # a copy: the loop may add while we format
        total = self.total
        les = [repr(float(edge)) for edge in self.edges] + ["+Inf"]
        return [(le, float(count)) for le, count in zip(les, cumulative, strict=True)], total


@dataclass(frozen=True)
class PredictionMetricsConfig:
    """The settings that shape these metrics (from ServerSettings)."""

    value_edges: tuple[float, ...] = DEFAULT_VALUE_EDGES
    feature_ranges: Mapping[str, tuple[float, float]] | None = None


def feature_labels(metadata: ModelMetadata) -> list[str]:
    """A label per input column: the model's feature names, else the column index."""
    names = list(metadata.feature_names)
    if len(names) != metadata.n_features:
        names = [str(index) for index in range(metadata.n_features)]
    return names


class PredictionStats(Collector):
    """Prediction and input-quality counts of one served model."""

    def __init__(
        self,
        identity: dict[str, str],
        metadata: ModelMetadata,
        config: PredictionMetricsConfig | None = None,
    ) -> None:
        config = config or PredictionMetricsConfig()
        self.identity = identity
        self.features = feature_labels(metadata)
        width = len(self.features)
        self.histograms: list[_ValueHistogram] = []
        self._class_output: str | None = None
        self._classes_from: str | None = None  # probabilities to argmax when no label output
        classifier = metadata.task in ("binary", "multiclass")
        for spec in metadata.outputs:
            if not spec.datatype.startswith("FP"):
                if classifier and spec.name == "label" and self._class_output is None:
                    self._class_output = spec.name
                continue
            columns = spec.shape[1] if len(spec.shape) == 2 and spec.shape[1] > 0 else 0
            probabilities = classifier and columns == metadata.classes and columns > 1
            edges = PROBABILITY_EDGES if probabilities else config.value_edges
            if columns == 0 or (len(spec.shape) == 2 and spec.shape[1] == 1):
                self.histograms.append(_ValueHistogram(spec.name, None, edges))
            else:  # binary: column 0 is 1 - column 1, so only the positive class
                first = 1 if probabilities and columns == 2 else 0
                self.histograms.extend(
                    _ValueHistogram(spec.name, k, edges) for k in range(first, columns)
                )
            if probabilities and self._classes_from is None:
                self._classes_from = spec.name
        self.class_counts: dict[int, int] = {}
        self.bincount_classes = np.zeros(0, dtype=np.int64)
        # Input quality: NaN is "missing" for float inputs; integer inputs cannot miss.
        self._floats = np.dtype(metadata.input_dtype).kind == "f"
        self.missing = np.zeros(width, dtype=np.int64)
        self.out_of_range = np.zeros(width, dtype=np.int64)
        ranges = dict(metadata.feature_ranges)
        for key, bounds in (config.feature_ranges or {}).items():
            name = self.features[int(key)] if key.isdigit() and int(key) < width else key
            ranges[name] = (float(bounds[0]), float(bounds[1]))
        low = np.full(width, -np.inf)
        high = np.full(width, np.inf)
        for index, name in enumerate(self.features):
            if name in ranges and name not in metadata.categorical_features:
                low[index], high[index] = ranges[name]
        self._ranged = bool(np.isfinite(low).any() or np.isfinite(high).any())
        self._low, self._high = low, high
        self._categorical = [name in metadata.categorical_features for name in self.features]
        self.rows_total = 0
        self.baseline: Baseline | None = None
        self._inputs: baselines.EdgeCounts | None = None
        self._count_lock = threading.Lock()  # the counts: one bulk update at a time
        self._pending: deque[tuple[npt.NDArray[np.generic], Outputs]] = deque()
        self._pending_values = 0

    def observe(self, rows: npt.NDArray[np.generic], outputs: Outputs) -> None:
        """Note one scored batch (`rows` as given to the model, `outputs` as it answered);
        counted in bulk later. The arrays are only referenced, never changed."""
        pending = self._pending
        pending.append((rows, outputs))  # deque: atomic, no lock against a scrape
        self._pending_values += rows.size  # approximate under a concurrent flush: a hint
        if self._pending_values >= FLUSH_VALUES or len(pending) >= FLUSH_BATCHES:
            self.flush()

    def flush(self) -> None:
        """Count everything pending, in one pass over the concatenated arrays."""
        with self._count_lock:
            self._pending_values = 0
            popleft, batches = self._pending.popleft, []
            try:
                while True:  # what is appended meanwhile is counted now or next time
                    batches.append(popleft())
            except IndexError:
                pass
            if not batches:
                return
            if len(batches) == 1:
                self._count(*batches[0])
                return
            rows = np.concatenate([r for r, _ in batches if r.ndim == 2])
            outputs = {
                name: np.concatenate([o[name] for _, o in batches])
                for name in batches[0][1]
                if all(name in o for _, o in batches)
            }
            self._count(rows, outputs)

    def use_baseline(self, rows: npt.NDArray[np.float64], outputs: Outputs, bins: int) -> Baseline:
        """Derive the baseline from its rows and the model's answers to them, and count
        every feature on its edges from now on."""
        summary = baselines.summarise(rows, bins, self._categorical, self._low, self._high)
        shares: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        for histogram in self.histograms:
            values = outputs.get(histogram.source)
            if values is None or values.shape[0] == 0:
                continue
            picked = values.reshape(-1) if histogram.column is None else values[:, histogram.column]
            column = np.asarray(picked, dtype=np.float64)
            column = column[~np.isnan(column)]  # as live: a NaN answer is not a prediction
            if column.size:
                cumulative = baselines.cumulative_shares(column, histogram.edges)
                shares[histogram.output] = (histogram.edges, cumulative)
        summary = dataclasses.replace(summary, prediction_share=shares)
        with self._count_lock:
            self._inputs = baselines.EdgeCounts(summary.edges)
            self.baseline = summary
        return summary

    def _count(self, rows: npt.NDArray[np.generic], outputs: Outputs) -> None:
        if rows.ndim == 2:
            self.rows_total += rows.shape[0]
        if rows.ndim == 2 and rows.shape[1] == self.missing.shape[0]:
            missing = np.zeros(rows.shape[1], dtype=np.int64)
            if self._floats:
                missing = np.count_nonzero(rows != rows, axis=0)  # NaN != NaN
                self.missing += missing
            if self._ranged:
                outside = (rows < self._low) | (rows > self._high)  # NaN is neither
                self.out_of_range += np.count_nonzero(outside, axis=0)
            if self._inputs is not None:
                self._inputs.observe(rows, missing)
        for histogram in self.histograms:
            values = outputs.get(histogram.source)
            if values is None:
                continue
            if histogram.column is None:
                histogram.observe(values.reshape(-1))
            elif values.ndim == 2 and values.shape[1] > histogram.column:
                histogram.observe(values[:, histogram.column])
        self._count_classes(outputs)

    def _count_classes(self, outputs: Outputs) -> None:
        if self._class_output is not None:
            labels = outputs.get(self._class_output)
        elif self._classes_from is not None and self._classes_from in outputs:
            labels = np.argmax(outputs[self._classes_from], axis=1)
        else:
            return
        if labels is None or labels.size == 0:
            return
        labels = labels.reshape(-1)
        if labels.dtype.kind in "iub" and labels.min() >= 0 and labels.max() < _BINCOUNT_LIMIT:
            counts = np.bincount(labels.astype(np.int64, copy=False))
            if counts.shape[0] > self.bincount_classes.shape[0]:
                grown = np.zeros(counts.shape[0], dtype=np.int64)
                grown[: self.bincount_classes.shape[0]] = self.bincount_classes
                self.bincount_classes = grown
            self.bincount_classes[: counts.shape[0]] += counts
            return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            key = int(value)
            self.class_counts[key] = self.class_counts.get(key, 0) + int(count)

    def classes(self) -> dict[int, int]:
        """Predicted-class counts so far, by class (counted up to the last flush)."""
        merged = dict(self.class_counts)
        for key, count in enumerate(self.bincount_classes.tolist()):
            if count:
                merged[key] = merged.get(key, 0) + int(count)
        return merged

    def collect(self) -> Iterator[Metric]:
        try:
            self.flush()
        except Exception:  # a scrape still answers, with the counts so far
            log.exception("counting pending predictions failed")
        keys, values = list(self.identity), list(self.identity.values())
        family = HistogramMetricFamily(
            "modelfleet_prediction",
            "Predicted values per output (probabilities on fixed edges in [0, 1], other "
            "outputs on MODELFLEET_PREDICTION_BUCKETS)",
            labels=[*keys, "output"],
        )
        for histogram in self.histograms:
            buckets, total = histogram.buckets()
            family.add_metric([*values, histogram.output], buckets, total)
        yield family
        classes = CounterMetricFamily(
            "modelfleet_predicted_class",
            "Rows by predicted class (classifiers)",
            labels=[*keys, "class"],
        )
        for key, count in sorted(self.classes().items()):
            classes.add_metric([*values, str(key)], count)
        yield classes
        missing = CounterMetricFamily(
            "modelfleet_input_missing",
            "Rows whose value of this feature is missing (NaN)",
            labels=[*keys, "feature"],
        )
        outside = CounterMetricFamily(
            "modelfleet_input_out_of_range",
            "Rows whose value of this feature lies outside the range the model was trained on",
            labels=[*keys, "feature"],
        )
        missing_counts = self.missing.tolist()
        outside_counts = self.out_of_range.tolist()
        ranged = (np.isfinite(self._low) | np.isfinite(self._high)).tolist()
        for index, name in enumerate(self.features):
            if self._floats:
                missing.add_metric([*values, name], missing_counts[index])
            if ranged[index]:
                outside.add_metric([*values, name], outside_counts[index])
        yield missing
        yield outside
        rows = CounterMetricFamily(
            "modelfleet_input_rows",
            "Rows scored (the denominator of missing and out-of-range rates)",
            labels=keys,
        )
        rows.add_metric(values, self.rows_total)
        yield rows
        if self._inputs is not None:
            with self._count_lock:  # not halfway through a flush
                snapshot = self._inputs.snapshot()
            yield self._inputs.family(self.identity, self.features, snapshot)
        yield from baselines.gauge_families(self.identity, self.features, ranged, self.baseline)
