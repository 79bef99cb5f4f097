"""Ground truth for answered requests: labels that arrive later become counters, never payloads.

Each inference answer carries an `x-request-id` (the client's, or one the server made up). After
answering, the server keeps, per request id, only what scoring a label needs later: the class
probabilities of each row (classifiers: the predicted class and the log loss both come from them)
or the predicted value (regressors). Never the inputs. The map is bounded by rows
(MODELFLEET_FEEDBACK_ROWS, default 50,000; 0 turns it off) and by age
(MODELFLEET_FEEDBACK_TTL_SECONDS, default 3,600): the oldest answers go first. About 320 bytes per
one-row answer of a binary classifier (~16 MB at the default) and 2.5 µs to keep it.

    POST /modelfleet/v1/feedback   {"labels": [{"id": "<x-request-id>", "label": <label>}, ...]}

on the metrics port. A label is the class index (0 … classes − 1) for a classifier, a number for
a regressor; a list of them, one per row, for a request of several rows. A request id is labelled
once: its answer is dropped when scored. Ids the map does not hold (never answered by this pod,
already labelled, evicted, expired) are counted and listed back, never an error; a malformed
batch is a 400 naming the entry and nothing of it is counted. The answer:
`{"labelled": ids, "rows": rows, "unknown": count, "unknownIds": [first 20]}`.

Counters (the request metrics' identity labels): `modelfleet_feedback_rows_total` (labelled rows),
`modelfleet_feedback_correct_total` (classifiers: argmax of the probabilities equals the label),
the summaries `modelfleet_feedback_log_loss` (classifiers: −ln p(true class), p clipped at 1e-15)
and `modelfleet_feedback_abs_error` (regressors: |value − label|), whose `_sum` over `_count` is the
mean; `modelfleet_feedback_unknown_ids_total`; the gauge `modelfleet_feedback_stored_rows`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from modelfleet.server.errors import InvalidInputError, MalformedRequestError
from modelfleet.server.runtimes.base import ModelMetadata, Outputs

DEFAULT_ROWS = 50_000
DEFAULT_TTL_S = 3600.0
MAX_LABELS = 10_000  # entries per POST
LISTED_UNKNOWN = 20  # unknown ids named back in the answer
PROBABILITY_FLOOR = 1e-15  # log loss of a confident wrong answer stays finite (as scikit-learn's)


@dataclass(frozen=True)
class _Label:
    request_id: bytes
    values: list[float]  # one per row


class FeedbackStore(Collector):
    """The bounded map of recent answers and the counters the labels fill."""

    def __init__(
        self,
        identity: dict[str, str],
        metadata: ModelMetadata,
        max_rows: int = DEFAULT_ROWS,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.max_rows, self.ttl_s = max_rows, ttl_s
        self._clock = clock
        self.classes = metadata.classes if metadata.task in ("binary", "multiclass") else 0
        self._source = _score_output(metadata)
        self._answers: OrderedDict[bytes, tuple[float, npt.NDArray[np.float32]]] = OrderedDict()
        self.stored_rows = 0
        self._lock = threading.Lock()  # the event loop remembers, the metrics port labels
        self.rows = 0
        self.correct = 0
        self.log_loss = 0.0
        self.abs_error = 0.0
        self.unknown = 0

    @property
    def classifier(self) -> bool:
        return self.classes > 0

    def remember(self, request_id: bytes, outputs: Outputs) -> None:
        """Keep what a later label of this answer needs (a copy; at most `max_rows` rows)."""
        scores = outputs.get(self._source)
        if scores is None:
            return
        scores = np.asarray(scores)
        rows = scores.shape[0] if scores.ndim else 1
        if rows == 0 or rows > self.max_rows:
            return
        kept = scores.reshape(rows, -1).astype(np.float32)
        if not self.classifier:
            kept = kept[:, 0]  # one value per row: the first, for a multi-output regressor
        now = self._clock()
        with self._lock:
            old = self._answers.pop(request_id, None)  # a reused id: the newest answer counts
            if old is not None:
                self.stored_rows -= old[1].shape[0]
            self._answers[request_id] = (now, kept)
            self.stored_rows += rows
            self._evict(now)

    def _evict(self, now: float) -> None:
        answers, oldest = self._answers, now - self.ttl_s
        while answers:
            request_id, (stamp, kept) = next(iter(answers.items()))
            if stamp >= oldest and self.stored_rows <= self.max_rows:
                return
            del answers[request_id]
            self.stored_rows -= kept.shape[0]

    def label(self, body: bytes) -> bytes:
        """Score one POSTed batch of labels; the JSON answer. Raises a 4xx error on a bad batch."""
        labels = _parse(body)
        with self._lock:
            self._evict(self._clock())
            found = [(label, self._answers.get(label.request_id)) for label in labels]
            for index, (label, answer) in enumerate(found):
                if answer is not None:
                    self._check(index, label, answer[1])
            unknown, rows = [], 0
            for label, answer in found:
                if answer is None or self._answers.pop(label.request_id, None) is None:
                    unknown.append(label.request_id)  # not held, or twice in this batch
                    continue
                self.stored_rows -= answer[1].shape[0]
                rows += self._score(label.values, answer[1])
            self.unknown += len(unknown)
        return orjson.dumps(
            {
                "labelled": len(labels) - len(unknown),
                "rows": rows,
                "unknown": len(unknown),
                "unknownIds": [i.decode() for i in unknown[:LISTED_UNKNOWN]],
            }
        )

    def _check(self, index: int, label: _Label, kept: npt.NDArray[np.float32]) -> None:
        where = f"labels[{index}] (id {label.request_id.decode()!r})"
        if len(label.values) != kept.shape[0]:
            raise InvalidInputError(
                f"{where} has {len(label.values)} label(s) for an answer of {kept.shape[0]} rows: "
                "send one label per row (a list for several rows)"
            )
        for value in label.values:
            if self.classifier and not (value.is_integer() and 0 <= value < self.classes):
                raise InvalidInputError(
                    f"{where}: {value:g} is not a class of this model; send the class index, "
                    f"an integer from 0 to {self.classes - 1}"
                )

    def _score(self, values: list[float], kept: npt.NDArray[np.float32]) -> int:
        truth = np.asarray(values, dtype=np.float64)
        if self.classifier:
            classes = truth.astype(np.int64)
            probabilities = kept if kept.shape[1] > 1 else np.hstack([1 - kept, kept])
            chosen = probabilities[np.arange(len(classes)), classes].astype(np.float64)
            self.correct += int((probabilities.argmax(axis=1) == classes).sum())
            self.log_loss += float(-np.log(np.clip(chosen, PROBABILITY_FLOOR, 1.0)).sum())
        else:
            self.abs_error += float(np.abs(kept.astype(np.float64) - truth).sum())
        self.rows += len(values)
        return len(values)

    def collect(self) -> Iterator[Metric]:
        names, values = list(self.identity), list(self.identity.values())

        def counter(name: str, help_text: str, value: float) -> Metric:
            family = CounterMetricFamily(name, help_text, labels=names)
            family.add_metric(values, value)
            return family

        yield counter("modelfleet_feedback_rows", "Rows whose true label arrived", self.rows)
        yield counter(
            "modelfleet_feedback_unknown_ids",
            "Labelled request ids not held here (never answered, labelled, evicted or expired)",
            self.unknown,
        )
        if self.classifier:
            yield counter(
                "modelfleet_feedback_correct",
                "Labelled rows whose predicted class was the true one",
                self.correct,
            )
            loss = SummaryMetricFamily(
                "modelfleet_feedback_log_loss",
                "Log loss of labelled rows (−ln p of the true class): _sum / _count is the mean",
                labels=names,
            )
            loss.add_metric(values, self.rows, self.log_loss)
            yield loss
        else:
            error = SummaryMetricFamily(
                "modelfleet_feedback_abs_error",
                "Absolute error of labelled rows: _sum / _count is the MAE",
                labels=names,
            )
            error.add_metric(values, self.rows, self.abs_error)
            yield error
        stored = GaugeMetricFamily(
            "modelfleet_feedback_stored_rows", "Answered rows kept for labels", labels=names
        )
        stored.add_metric(values, self.stored_rows)
        yield stored


def _score_output(metadata: ModelMetadata) -> str:
    """The output a label is scored against: the class probabilities, else the primary one."""
    if metadata.task in ("binary", "multiclass"):
        for spec in metadata.outputs:
            columns = spec.shape[1] if len(spec.shape) == 2 else 0
            if spec.datatype.startswith("FP") and columns in (metadata.classes, 1):
                return spec.name
    return metadata.primary_output


def _parse(body: bytes) -> list[_Label]:
    """The POSTed batch; every mistake names the entry and what to send instead."""
    try:
        request: Any = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequestError(f"the body is not JSON: {error}") from error
    entries = request.get("labels") if isinstance(request, dict) else None
    if not isinstance(entries, list) or not entries:
        raise MalformedRequestError(
            'the body must be a JSON object {"labels": [{"id": "<x-request-id>", "label": <class '
            "index or value>}, ...]} with at least one entry"
        )
    if len(entries) > MAX_LABELS:
        raise InvalidInputError(f"{len(entries)} labels; send at most {MAX_LABELS} per request")
    labels = []
    for index, entry in enumerate(entries):
        request_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
            raise InvalidInputError(
                f'labels[{index}] needs "id": the x-request-id of the answer (1-128 characters)'
            )
        value = entry.get("label")
        raw: list[Any] = value if isinstance(value, list) else [value]
        if not raw or not all(_is_number(v) for v in raw):
            raise InvalidInputError(
                f'labels[{index}] needs "label": a number (class index or value), or a list of '
                f"them, one per row of the request; got {value!r}"
            )
        labels.append(_Label(request_id.encode(), [float(v) for v in raw]))
    return labels


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
