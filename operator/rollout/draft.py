"""The status a rollout step is writing, the events it posts and when it wants to look again.

`Draft` holds what every part of the machine writes through: a deep copy of the status, the events,
the requeue, and the moves that end a canary (drain, roll back, pause). `canary.CanaryFlight` and
`machine.Machine` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelfleet.operator.analysis import advisory_summary
from modelfleet.operator.api import (
    HISTORY_LIMIT,
    CanaryStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    PreviousStatus,
    as_json,
    parse_duration,
)
from modelfleet.operator.rollout.types import Event, GateNote, RolloutInput, SlotObservation
from modelfleet.operator.timestamps import timestamp

POD_WAIT_REQUEUE = 5.0


@dataclass
class Draft:
    inp: RolloutInput
    now: datetime
    status: ModelDeploymentStatus = field(init=False)
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None

    def __post_init__(self) -> None:
        self.status = self.inp.status.model_copy(deep=True)

    def _event(
        self,
        kind: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        gate: GateNote | None = None,
    ) -> None:
        self.events.append(Event(kind, reason, message, gate))

    def _wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.5)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def _seconds(self, duration: str) -> float:
        return parse_duration(duration)

    def _until(self, duration: str) -> str:
        return timestamp(self.now + timedelta(seconds=self._seconds(duration)))

    def _history(self, revision: str, version: str, outcome: str, message: str) -> None:
        canary = self.status.canary
        advisory = canary.advisory if canary else []
        if summary := advisory_summary(advisory):  # dryRun gates: how often they would have failed
            message = f"{message} ({summary})"
        entry = HistoryEntry.model_validate(
            {
                "revision": revision,
                "version": version,
                "outcome": outcome,
                "message": message,
                "startedAt": canary.started_at if canary else None,
                "finishedAt": timestamp(self.now),
                "advisory": [as_json(tally) for tally in advisory],
            }
        )
        self.status.history = [entry, *self.status.history][:HISTORY_LIMIT]

    def _drain(self, canary: CanaryStatus) -> None:
        self.status.canary = None
        self.status.draining = PreviousStatus(
            slot=canary.slot,
            revision=canary.revision,
            version=canary.version,
            until=self._until(self.inp.spec.rollout.scale_down_delay),
        )
        self._wake_in(self._seconds(self.inp.spec.rollout.scale_down_delay))

    def _rollback(self, outcome: str, reason: str, message: str) -> None:
        canary = self.status.canary
        assert canary is not None
        self._history(canary.revision, canary.version, outcome, message)
        self.status.held_revision = canary.revision
        self._drain(canary)
        self.status.phase = "Degraded"
        self.status.message = message
        self._event("Warning", reason, message)

    def _pause(self, reason: str, message: str) -> None:
        self.status.phase = "Paused"
        self.status.message = message
        self._event("Warning", reason, message)


def waiting(observed: SlotObservation, needed: int, role: str) -> str:
    text = f"waiting for {role} pods: {observed.ready_replicas}/{needed} ready"
    if observed.stale_replicas:
        text += f", {observed.stale_replicas} of the previous template still running"
    return f"{text} ({observed.problem})" if observed.problem else text
