"""What the rollout state machine reads and returns.

`RolloutInput` (spec, status, both slots as observed, the router's sizing, a manual command, the
answers of the webhook gates) goes into `machine.next_action`, a `Transition` (next status, events,
when to look again) comes out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from modelfleet.operator.api import SLOTS, ModelDeploymentSpec, ModelDeploymentStatus, Slot
from modelfleet.operator.rollout.commands import Command


@dataclass(frozen=True)
class SlotObservation:
    """One slot's Deployment as the cluster shows it (absent = revision None)."""

    revision: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    problem: str | None = None  # why pods are not Ready, from their containerStatuses
    # pods of an earlier pod template still running: a slot reused for a new revision keeps the
    # previous rollout's Ready pods (counted in readyReplicas) until its rolling update ends
    stale_replicas: int = 0

    def ready_for(self, revision: str, count: int) -> bool:
        """Enough Ready pods of `revision`, and none of an earlier template left to answer."""
        return (
            self.revision == revision
            and self.ready_replicas >= count
            and self.updated_replicas >= count
            and self.stale_replicas == 0
        )


@dataclass(frozen=True)
class GateNote:
    """What an AwaitingApproval or Approved event is about, for the notifications."""

    stage: str  # confirmStep or confirmPromotion
    gates: tuple[str, ...]  # the gates that hold (AwaitingApproval), or the one approved
    manual: bool = False  # one of them waits for `kubectl modelfleet approve`
    by: str | None = None  # Approved: who or which webhook, as the history says it


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    gate: GateNote | None = None  # the approval events' gates, which the message only names


@dataclass(frozen=True)
class GateAnswer:
    """What one gate answered this pass: a webhook's call, or the built-in smoke test."""

    gate: str  # the webhook's name, or SMOKE_GATE
    passed: bool
    detail: str  # "HTTP 200", "HTTP 403: <start of the body>", "timed out after 10 s", …


@dataclass(frozen=True)
class Refusal:
    """What the data plane cannot serve, found before a rollout begins: the condition's words."""

    reason: str  # reasons.SHADOW_REFUSED or reasons.HEADER_ROUTE_REFUSED
    message: str  # names the class and the feature it lacks


@dataclass(frozen=True)
class RolloutInput:
    """Everything `next_action` reads besides the measurement and the clock."""

    spec: ModelDeploymentSpec
    revision: str  # the spec's revision (hash of the pod shape)
    version: str  # the spec's model version
    status: ModelDeploymentStatus
    slots: dict[str, SlotObservation]
    active_replicas: int  # pods the active slot should have (spec, or the autoscaler's count)
    canary_sizer: Callable[[int, int], int]  # the router's (active pods, weight) → canary pods
    command: Command | None = None
    # why the data plane cannot serve the shadow step's mirror or the header route (None: it can,
    # or neither is pending)
    shadow_refusal: Refusal | None = None
    # the gates the reconcile asked before this call (`approvals.gates_due` says which)
    gate_answers: tuple[GateAnswer, ...] = ()


@dataclass(frozen=True)
class Transition:
    status: ModelDeploymentStatus
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


def other_slot(slot: Slot) -> Slot:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
