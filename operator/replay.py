"""The paired gate: the same rows replayed to one Ready pod of each slot, answers compared row by row.

A distribution can look the same while every single answer is wrong (a model trained with its
i.i.d. features permuted keeps the stable's output distribution and agrees on 43 % of rows), so
the gate compares answers, not histograms:

- agreement: the share of rows whose predicted class is the same in both slots (classifiers);
- score delta: per row the largest |canary − stable| over its scores (class probabilities, or the
  one value of a regressor); its mean and max over the rows. `maxScoreDelta` bounds the max.

Rows come from `replay.referenceUri` (fsspec: CSV, one row per line, or JSON `{"rows": [...]}`;
read once per URI and canary revision, a few kept in memory) or, with `replay.liveSample`, from the
stable pod's in-memory sample of recent inputs; at most `replay.rows`. They go to the server's
`POST /modelfleet/v1/replay` on its metrics port, which no ingress routes and which counts nothing.

`PairedGate.check` never raises: an unreachable pod or unreadable reference set is an `Error`
result (like an unreachable Prometheus, so `onMetricsUnavailable` decides), too few rows an
`Inconclusive` one. A fixed reference set gives the same answers at every look: no interval is
needed, only enough rows (docs/model-aware.md says what `minRows` means for the uncertainty).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import httpx

from modelfleet.operator.analysis import CheckResult, percent
from modelfleet.operator.api import AnalysisSpec, MeasurementPhase, ReplaySpec
from modelfleet.operator.builders.common import LABEL_REVISION
from modelfleet.operator.http_json import request_json
from modelfleet.operator.measurement import AnalysisTarget

REPLAY_PATH = "/modelfleet/v1/replay"
SAMPLE_PATH = "/modelfleet/v1/sample"
MAX_ROWS = 4096  # the server's limit per replay request
CACHED_REFERENCE_SETS = 8

Row = list[float | None]


class ReplayError(Exception):
    """A pod or the reference set could not be read (unreachable, refused, malformed)."""


@dataclass(frozen=True)
class ReplayAnswer:
    """One slot's answers to the replayed rows."""

    model: str
    revision: str
    kind: str  # "classifier" | "regressor"
    classes: list[Any] | None
    scores: list[list[float]]


@dataclass(frozen=True)
class Comparison:
    rows: int
    agreement: float | None  # None for regressors: no class to agree on
    delta_mean: float
    delta_max: float


@dataclass(frozen=True)
class PairedResult(CheckResult):
    comparison: Comparison | None = None

    def measured(self) -> dict[str, Any]:
        if self.comparison is None:
            return {}
        return {
            "agreement": self.comparison.agreement,
            "score_delta_mean": self.comparison.delta_mean,
            "score_delta_max": self.comparison.delta_max,
            "replayed_rows": self.comparison.rows,
        }


def parse_rows(text: str, source: str) -> list[Row]:
    """Rows from CSV (one per line, no header; empty or "nan" = missing) or JSON {"rows": [...]}."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            rows = json.loads(stripped)["rows"]
        except (ValueError, KeyError, TypeError) as error:
            raise ReplayError(f'{source}: not JSON of the form {{"rows": [...]}}') from error
        return listed_rows(rows, source)
    reader = csv.reader(io.StringIO(text))
    return [
        [_number(value, source, n) for value in line]
        for n, line in enumerate(reader, 1)
        if line and any(value.strip() for value in line)
    ]


def listed_rows(rows: Any, source: str) -> list[Row]:
    """Rows given as a JSON list of lists of numbers (null or "nan" = missing)."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ReplayError(f'{source}: "rows" must be a list of lists of numbers')
    return [[_number(value, source, n) for value in row] for n, row in enumerate(rows, 1)]


def _number(value: Any, source: str, line: int) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "nan", "null")):
        return None
    if isinstance(value, bool):
        raise ReplayError(f"{source}: row {line}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ReplayError(f"{source}: row {line}: {value!r} is not a number") from error
    return None if math.isnan(number) else number


class ReferenceRows:
    """Reference sets read through fsspec, kept per (URI, revision); the oldest entries go first."""

    def __init__(self, capacity: int = CACHED_REFERENCE_SETS) -> None:
        self._capacity = capacity
        self._cache: OrderedDict[tuple[str, str], list[Row]] = OrderedDict()

    async def rows(self, uri: str, revision: str) -> list[Row]:
        key = (uri, revision)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        rows = await asyncio.to_thread(self._read, uri)
        self._cache[key] = rows
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return rows

    @staticmethod
    def _read(uri: str) -> list[Row]:
        try:
            with fsspec.open(uri, "rt", encoding="utf-8") as stream:
                text = stream.read()
        except (OSError, ValueError, ImportError) as error:  # missing file, bad scheme or driver
            raise ReplayError(
                f"reference rows at {uri}: {type(error).__name__}: {error}"
            ) from error
        return parse_rows(text, uri)[:MAX_ROWS]


class ReplayClient:
    """The server's admin endpoints over a passed-in httpx client; failures are `ReplayError`s."""

    def __init__(self, client: httpx.AsyncClient, timeout_s: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout_s

    async def replay(self, address: str, rows: Sequence[Row]) -> ReplayAnswer:
        body = await self._call("POST", address, REPLAY_PATH, json={"rows": list(rows)})
        try:
            answer = ReplayAnswer(
                model=str(body["model"]),
                revision=str(body["revision"]),
                kind=str(body["kind"]),
                classes=body["classes"],
                scores=[[float(score) for score in row] for row in body["scores"]],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ReplayError(f"{address}: unexpected replay answer ({error!r})") from error
        if len(answer.scores) != len(rows) or (
            answer.classes is not None and len(answer.classes) != len(rows)
        ):
            raise ReplayError(f"{address}: answered {len(answer.scores)} rows for {len(rows)}")
        return answer

    async def sample(self, address: str, limit: int) -> list[Row] | None:
        """The pod's live sample, or None when the pod keeps none (404)."""
        try:
            body = await self._call("GET", address, SAMPLE_PATH, params={"limit": limit})
        except _NotFoundError:
            return None
        if "rows" not in body:
            raise ReplayError(f'{address}: live sample without "rows"')
        return listed_rows(body["rows"], f"live sample of {address}")[:limit]

    async def _call(self, method: str, address: str, path: str, **kwargs: Any) -> dict[str, Any]:
        code, body = await request_json(
            self._client,
            method,
            f"http://{address}{path}",
            timeout_s=self._timeout,
            error=lambda reason: ReplayError(f"{address}: {reason}"),
            **kwargs,
        )
        if code == 404 and path == SAMPLE_PATH:
            raise _NotFoundError
        if code != 200 or not isinstance(body, dict):
            detail = body.get("error") if isinstance(body, dict) else None
            raise ReplayError(f"{address}{path}: HTTP {code}: {detail}")
        return body


class _NotFoundError(Exception):
    pass


def compare(stable: ReplayAnswer, canary: ReplayAnswer) -> Comparison | str:
    """Row-by-row comparison, or why the two slots' answers cannot be compared (a Fail)."""
    if stable.kind != canary.kind:
        return f"canary answers as a {canary.kind}, stable as a {stable.kind}"
    widths = {len(row) for row in stable.scores} | {len(row) for row in canary.scores}
    if len(widths) > 1:
        return f"canary and stable answer different numbers of scores per row ({sorted(widths)})"
    deltas = [
        max((abs(c - s) for c, s in zip(crow, srow, strict=True)), default=0.0)
        for crow, srow in zip(canary.scores, stable.scores, strict=True)
    ]
    rows = len(deltas)
    agreement = None
    if stable.classes is not None and canary.classes is not None and rows:
        same = sum(c == s for c, s in zip(canary.classes, stable.classes, strict=True))
        agreement = same / rows
    return Comparison(
        rows=rows,
        agreement=agreement,
        delta_mean=sum(deltas) / rows if rows else 0.0,
        delta_max=max(deltas, default=0.0),
    )


def judge_paired(comparison: Comparison, spec: AnalysisSpec) -> list[PairedResult]:
    """One result per configured check: agreement ≥ minAgreement, max delta ≤ maxScoreDelta."""
    rows = f"over {comparison.rows:,} replayed rows"
    results: list[PairedResult] = []
    phase: MeasurementPhase
    if spec.min_agreement is not None and comparison.agreement is None:
        message = "agreement needs predicted classes: the model is a regressor (use maxScoreDelta)"
        results.append(PairedResult("agreement", "Inconclusive", message, comparison))
    elif spec.min_agreement is not None and comparison.agreement is not None:
        below = comparison.agreement < spec.min_agreement
        phase, sign = ("Fail", "<") if below else ("Pass", "≥")
        seen = f"agreement {percent(comparison.agreement)} {sign} {_share(spec.min_agreement)}"
        results.append(PairedResult("agreement", phase, f"{seen} {rows}", comparison))
    if spec.max_score_delta is not None:
        above = comparison.delta_max > spec.max_score_delta
        phase, sign = ("Fail", ">") if above else ("Pass", "≤")
        seen = f"score delta max {comparison.delta_max:.3f} (mean {comparison.delta_mean:.3f})"
        message = f"{seen} {sign} {spec.max_score_delta:g} {rows}"
        results.append(PairedResult("score delta", phase, message, comparison))
    return results


def paired_gate_enabled(spec: AnalysisSpec) -> bool:
    return spec.min_agreement is not None or spec.max_score_delta is not None


class PairedGate:
    """Replays rows to both slots and judges the answers; `check` never raises."""

    def __init__(self, client: ReplayClient, reference: ReferenceRows | None = None) -> None:
        self._client = client
        self._reference = reference or ReferenceRows()

    async def check(self, target: AnalysisTarget, spec: AnalysisSpec) -> list[CheckResult]:
        if not paired_gate_enabled(spec):
            return []
        replay = spec.replay or ReplaySpec()
        if target.stable_address is None or target.canary_address is None:
            which = "stable" if target.stable_address is None else "canary"
            return [PairedResult("replay", "Inconclusive", f"no Ready {which} pod to replay to")]
        try:
            rows = await self._rows(target, replay)
            if isinstance(rows, str):
                return [PairedResult("replay", "Inconclusive", rows)]
            if len(rows) < replay.min_rows:
                message = f"only {len(rows):,} rows to replay (fewer than {replay.min_rows:,})"
                return [PairedResult("replay", "Inconclusive", message)]
            stable, canary = await asyncio.gather(
                self._client.replay(target.stable_address, rows),
                self._client.replay(target.canary_address, rows),
            )
        except ReplayError as error:
            return [PairedResult("replay", "Error", f"replay: {error}")]
        comparison = compare(stable, canary)
        if isinstance(comparison, str):
            return [
                PairedResult("replay", "Fail", f"{comparison} over {len(rows):,} replayed rows")
            ]
        return list(judge_paired(comparison, spec))

    async def _rows(self, target: AnalysisTarget, replay: ReplaySpec) -> list[Row] | str:
        """The rows to replay: the reference set first, then the live sample up to `rows`;
        a string says why there are none yet (Inconclusive: the stable pods restart to keep a
        sample once liveSample is switched on)."""
        rows: list[Row] = []
        if replay.reference_uri is not None:
            reference = await self._reference.rows(replay.reference_uri, target.canary_revision)
            rows = reference[: replay.rows]
        if replay.live_sample and len(rows) < replay.rows:
            assert target.stable_address is not None
            sample = await self._client.sample(target.stable_address, replay.rows - len(rows))
            if sample is None and not rows:
                return f"the stable pod {target.stable_address} keeps no live sample (yet)"
            rows += sample or []
        return rows


def _share(value: float) -> str:
    """0.9 → "90 %", 0.995 → "99.5 %"."""
    return f"{value * 100:g} %"


def ready_pod_address(
    pods: Sequence[Mapping[str, Any]], revision: str | None, annotation: str | None = None
) -> str | None:
    """host:port of the metrics port of one Ready pod of `revision` (the first by name), or None.

    The pod IP and the container port named "metrics"; with `annotation` (operator setting
    MODELFLEET_OPERATOR_POD_ADDRESS_ANNOTATION) a pod carrying it is reached at its value instead
    (the local cluster's pods are processes on loopback, with a fake pod IP).
    """
    candidates = sorted(
        (pod for pod in pods if _ready(pod) and _labels(pod).get(LABEL_REVISION) == revision),
        key=lambda pod: str(pod.get("metadata", {}).get("name", "")),
    )
    for pod in candidates:
        annotations = pod.get("metadata", {}).get("annotations") or {}
        if annotation and annotations.get(annotation):
            return str(annotations[annotation])
        ip, port = pod.get("status", {}).get("podIP"), _metrics_port(pod)
        if ip and port:
            return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return None


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return pod.get("metadata", {}).get("labels") or {}


def _ready(pod: Mapping[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _metrics_port(pod: Mapping[str, Any]) -> int | None:
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "metrics":
                return int(port["containerPort"])
    return None
