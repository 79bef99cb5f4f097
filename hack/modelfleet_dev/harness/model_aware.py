"""Model-aware rollouts in the harness: varied rows for the traffic driver, the gates' spec, and a
record of every analysis the operator wrote.

- `VariedRowsDriver`: the traffic driver, but each request carries another batch of rows drawn from
  the example models' input distribution (i.i.d. standard normal features). The prediction-drift gate
  compares the canary's and the stable slot's prediction histograms: with one repeated payload both
  slots see the same few rows, and the PSI measures how two models differ on those rows, not on the
  traffic (an honest retrain scores PSI 0.14 on one fixed 256-row batch, 0.007 on 20,000 fresh rows).
- `model_aware_analysis(...)`: the `rollout.analysis` block with the drift and paired gates.
- `AnalysisRecorder`: every distinct `canary.analysis` (by measuredAt), with the canary's version,
  revision, weight and mirror at that moment: what the scenarios assert the gates measured.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cluster import Cluster
from .driver import TrafficDriver
from .rollout import read_status
from .stack import MODELS

FEATURES = 16  # examples/train_models.py's default
ROWS_PER_REQUEST = 32
REFERENCE = MODELS / "reference.csv"
POD_ADDRESS_ANNOTATION = {
    # the operator replays rows to a pod's metrics port; here pods are local processes whose real
    # address the process runner writes into this annotation
    "MODELFLEET_OPERATOR_POD_ADDRESS_ANNOTATION": "modelfleet.io/local-metrics-address"
}


def row_payloads(
    batches: int = 512, rows: int = ROWS_PER_REQUEST, seed: int = 11
) -> list[dict[str, Any]]:
    """Open Inference Protocol v2 bodies of `rows` rows each, features ~ N(0, 1) as in training."""
    generator = np.random.default_rng(seed)
    values = np.round(generator.normal(size=(batches, rows, FEATURES)), 6)
    return [
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [rows, FEATURES],
                    "data": batch.ravel().tolist(),
                }
            ]
        }
        for batch in values
    ]


class VariedRowsDriver(TrafficDriver):
    """A TrafficDriver whose every request body is a batch picked at random from a pool."""

    def __init__(
        self, *args: Any, payloads: list[dict[str, Any]], seed: int = 3, **kw: Any
    ) -> None:
        self._pool = payloads
        self._picker = random.Random(seed)
        super().__init__(*args, payload=payloads[0], **kw)

    @property
    def _payload(self) -> Any:  # read once per request by TrafficDriver._send
        return self._pool[self._picker.randrange(len(self._pool))]

    @_payload.setter
    def _payload(self, value: Any) -> None:
        pass  # the pool is the payload


def model_aware_analysis(
    *,
    max_prediction_drift: float | None = 0.2,
    min_drift_samples: int = 1000,
    min_agreement: float | None = 0.9,
    max_score_delta: float | None = None,
    reference_uri: str | None = None,
) -> dict[str, Any]:
    """The `rollout.analysis` additions for the model-aware gates (None leaves a gate off)."""
    analysis: dict[str, Any] = {}
    if max_prediction_drift is not None:
        analysis["maxPredictionDrift"] = max_prediction_drift
        analysis["minDriftSamples"] = min_drift_samples
    if min_agreement is not None:
        analysis["minAgreement"] = min_agreement
    if max_score_delta is not None:
        analysis["maxScoreDelta"] = max_score_delta
    if min_agreement is not None or max_score_delta is not None:
        analysis["replay"] = {"referenceUri": reference_uri or REFERENCE.resolve().as_uri()}
    return analysis


@dataclass(frozen=True)
class Analysed:
    at: float  # wall-clock time the recorder saw it
    version: str
    revision: str
    weight: int
    mirror: int
    analysis: Mapping[str, Any]

    @property
    def phase(self) -> str | None:
        return self.analysis.get("phase")


@dataclass
class AnalysisRecorder:
    """Polls `.status` in a thread; keeps each new canary measurement once."""

    cluster: Cluster
    namespace: str
    name: str
    period_s: float = 0.3
    seen: list[Analysed] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> AnalysisRecorder:
        self._thread = threading.Thread(target=self._loop, name="analysis-recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        last: tuple[str, str] | None = None
        while not self._stop.is_set():
            try:
                status = read_status(self.cluster, self.namespace, self.name)
            except Exception:  # an API hiccup: look again next period
                status = {}
            canary = status.get("canary") or {}
            analysis = canary.get("analysis") or {}
            key = (str(canary.get("revision")), str(analysis.get("measuredAt")))
            if analysis.get("measuredAt") and key != last:
                last = key
                with self._lock:
                    self.seen.append(
                        Analysed(
                            time.time(),
                            str(canary.get("version")),
                            str(canary.get("revision")),
                            int(canary.get("weight") or 0),
                            int(canary.get("mirror") or 0),
                            dict(analysis),
                        )
                    )
            self._stop.wait(self.period_s)

    def of(self, version: str) -> list[Analysed]:
        with self._lock:
            return [a for a in self.seen if a.version == version]
