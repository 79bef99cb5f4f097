"""What one rollout went through, step by step, from snapshots of the ModelDeployment's status.

Pure: `RolloutWatch.observe(status, now)` takes each status the demo polls and returns the events
worth a line (a new weight, a new measurement, a phase change); the step records feed the summary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Status = Mapping[str, Any]
_RATE = re.compile(r"error rate ([0-9.]+) %")
_REASON = re.compile(r"\(([^()]+)\)")


@dataclass
class Step:
    weight: int
    started: float
    ended: float | None = None
    analysis: dict[str, Any] = field(default_factory=dict)  # the step's last measurement
    measurements: int = 0

    def seconds(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started


@dataclass
class RolloutWatch:
    """Follows the canary of `version` (weights > 0 are steps; weight 0 is warm-up)."""

    version: str
    started: float
    steps: list[Step] = field(default_factory=list)
    phase: str | None = None
    finished: float | None = None
    revision: str | None = None
    _measured_at: str | None = None

    def observe(self, status: Status, now: float) -> list[str]:
        events: list[str] = []
        phase = status.get("phase")
        if phase != self.phase:
            self.phase = phase
            events.append(f"phase {phase}: {status.get('message') or ''}".rstrip(": "))
        canary = status.get("canary") or {}
        if canary.get("version") == self.version:
            self.revision = canary.get("revision") or self.revision
            events += self._observe_canary(canary, now)
        return events

    def _observe_canary(self, canary: Mapping[str, Any], now: float) -> list[str]:
        events = []
        weight = int(canary.get("weight") or 0)
        current = self.steps[-1] if self.steps else None
        if weight > 0 and (current is None or current.weight != weight):
            if current is not None and current.ended is None:
                current.ended = now
            self.steps.append(Step(weight, now))
            events.append(f"weight {weight} % (step {len(self.steps)})")
        analysis = dict(canary.get("analysis") or {})
        measured_at = analysis.get("measuredAt")
        if measured_at and measured_at != self._measured_at and self.steps and weight > 0:
            self._measured_at = measured_at
            self.steps[-1].analysis = analysis
            self.steps[-1].measurements += 1
            events.append(f"analysis {describe(analysis)}")
        return events

    def finish(self, now: float) -> None:
        self.finished = now
        if self.steps and self.steps[-1].ended is None:
            self.steps[-1].ended = now

    def steps_seconds(self) -> float:
        """From the first live weight to the end (warm-up before it not counted)."""
        if not self.steps or self.finished is None:
            return 0.0
        return self.finished - self.steps[0].started

    def weights(self) -> list[int]:
        return [step.weight for step in self.steps]


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def describe(analysis: Mapping[str, Any]) -> str:
    """'Pass: error rate 0.0 % [0.0–1.2 %], p99 4.1 ms, 812 requests'."""
    parts = [str(analysis.get("phase") or "…")]
    rate = analysis.get("errorRate")
    if rate is not None:
        lower, upper = analysis.get("errorRateLower"), analysis.get("errorRateUpper")
        interval = ""
        if lower is not None and upper is not None:
            interval = f" [{lower * 100:.1f}–{upper * 100:.1f} %]"
        parts.append(f"error rate {percent(rate)}{interval}")
    if analysis.get("p99Ms") is not None:
        parts.append(f"p99 {analysis['p99Ms']:.1f} ms")
    if analysis.get("requests") is not None:
        parts.append(f"{analysis['requests']:,} requests")
    gates = describe_gates(analysis)
    if gates != "–":
        parts.append(gates)
    text = parts[0] + ": " + ", ".join(parts[1:]) if len(parts) > 1 else parts[0]
    message = str(analysis.get("message") or "")
    if analysis.get("phase") not in ("Pass", None) and message:
        # The operator's message repeats the numbers: keep only its reason when it has one.
        reason = _REASON.search(message) if len(parts) > 1 else None
        text += f" ({reason.group(1) if reason else message})"
    return text


def condition(status: Status, kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def measured_error_rate(message: str) -> float | None:
    """The share in an operator message like 'error rate 4.2 % [3.4–5.1 %] > 1.0 % over …'."""
    found = _RATE.search(message)
    return float(found.group(1)) / 100 if found else None


def describe_gates(analysis: Mapping[str, Any]) -> str:
    """The model-aware values of a measurement: 'PSI 0.04 on `probabilities[1]`, agreement 91.0 %
    of 512 rows (score delta mean 0.08, max 0.61)'; '–' when neither gate measured anything."""
    parts = []
    drift = analysis.get("predictionDrift")
    if drift is not None:
        output = analysis.get("driftOutput")
        parts.append(f"PSI {drift:.2f}" + (f" on `{output}`" if output else ""))
    agreement = analysis.get("agreement")
    if agreement is not None:
        rows = analysis.get("replayedRows")
        text = f"agreement {percent(agreement)}" + (f" of {rows:,} rows" if rows else "")
        mean, most = analysis.get("scoreDeltaMean"), analysis.get("scoreDeltaMax")
        if mean is not None and most is not None:
            text += f" (score delta mean {mean:.2f}, max {most:.2f})"
        parts.append(text)
    return ", ".join(parts) or "–"


def gates_text(analyses: list[Mapping[str, Any]], rollback_agreement: float | None) -> str:
    """The summary cell: the largest PSI and the lowest agreement measured over the steps."""
    drifts = [a["predictionDrift"] for a in analyses if a.get("predictionDrift") is not None]
    agreements = [a["agreement"] for a in analyses if a.get("agreement") is not None]
    if rollback_agreement is not None:
        agreements.append(rollback_agreement)
    parts = []
    if drifts:
        parts.append(f"PSI ≤ {max(drifts):.2f}")
    if agreements:
        parts.append(f"agreement {percent(min(agreements))}")
    return " · ".join(parts) or "–"
