"""Status bookkeeping: conditions in metav1.Condition form and the summary fields SREs read.

Pure functions. `set_condition` keeps `lastTransitionTime` when the condition's status does not
change (as `meta.SetStatusCondition` does), so an unchanged world produces an unchanged status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    Condition,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    SlotStatus,
)
from modelfleet.operator.builders.ratelimit import rate_limit_summary
from modelfleet.operator.request_share import not_as_weighted
from modelfleet.operator.rollout.types import Refusal, SlotObservation
from modelfleet.operator.timestamps import timestamp


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | Literal["Unknown"],
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The list with this condition set; lastTransitionTime moves only when status flips."""
    value = "Unknown" if status == "Unknown" else "True" if status else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == value
        else timestamp(now)
    )
    condition = Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=transition,
    )
    kept = [c for c in conditions if c.type != type_]
    order = [reasons.READY, reasons.PROGRESSING, reasons.DEGRADED, *reasons.MONITORING]
    merged = [*kept, condition]
    return sorted(merged, key=lambda c: order.index(c.type) if c.type in order else len(order))


def summarize(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    slots: dict[str, SlotObservation],
    planned: dict[str, int | None],
    url: str,
    generation: int | None,
    now: datetime,
    shadow_refusal: Refusal | None = None,
    route_policy_refusal: str | None = None,
) -> ModelDeploymentStatus:
    """Fill the derived fields (slots, ready, url, conditions) of a status the machine produced.

    `shadow_refusal`: why the data plane cannot serve the shadow step; when the machine acted on it
    (no canary, the refusal as the message), Progressing says so with its own reason.
    `route_policy_refusal`: why the route's timeouts and retry were not written (RoutePolicy).
    """
    out = status.model_copy(deep=True)
    out.observed_generation = generation
    out.url = url
    out.rate_limit = rate_limit_summary(spec)
    out.slots = {}
    for slot, observed in slots.items():
        desired = planned.get(slot)
        out.slots[slot] = SlotStatus(
            revision=observed.revision,
            version=_version_of(out, slot),
            replicas=observed.replicas if desired is None else desired,
            ready_replicas=observed.ready_replicas,
        )
    active = slots.get(out.active_slot) if out.active_slot else None
    wanted = out.slots[out.active_slot].replicas if out.active_slot else 0
    ready = active.ready_replicas if active else 0
    out.ready = f"{ready}/{wanted}"
    out.conditions = _conditions(out, active, wanted, generation, now)
    refused = shadow_refusal is not None and out.message == shadow_refusal.message
    if shadow_refusal is not None and out.canary is None and refused:
        out.conditions = set_condition(
            out.conditions,
            reasons.PROGRESSING,
            False,
            shadow_refusal.reason,
            shadow_refusal.message,
            generation,
            now,
        )
    out.conditions = _route_policy(out.conditions, spec, route_policy_refusal, generation, now)
    return out


def _route_policy(
    conditions: list[Condition],
    spec: ModelDeploymentSpec,
    refusal: str | None,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """RoutePolicy while the spec sets timeouts or retry: written, or refused and why."""
    gateway = spec.traffic.gateway
    if gateway is None or (gateway.timeouts is None and gateway.retry is None):
        return [c for c in conditions if c.type != reasons.ROUTE_POLICY]
    if refusal is not None:
        reason, message = reasons.ROUTE_POLICY_REFUSED, refusal
    else:
        reason, message = reasons.ROUTE_POLICY_WRITTEN, "written to every HTTPRoute rule"
    written = refusal is None
    return set_condition(
        conditions, reasons.ROUTE_POLICY, written, reason, message, generation, now
    )


def _version_of(status: ModelDeploymentStatus, slot: str) -> str | None:
    if status.active_slot == slot:
        return status.active_version
    for kept in (status.canary, status.previous, status.draining):
        if kept is not None and kept.slot == slot:
            return kept.version
    return None


def _conditions(
    status: ModelDeploymentStatus,
    active: SlotObservation | None,
    wanted: int,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    conditions = list(status.conditions)
    ready_count = active.ready_replicas if active else 0
    if wanted == 0:
        ready, reason, message = True, reasons.SCALED_TO_ZERO, "scaled to 0 replicas"
    elif active is not None and active.revision == status.active_revision and ready_count >= wanted:
        ready, reason = True, reasons.AVAILABLE
        message = f"{status.active_version}: {ready_count}/{wanted} pods ready"
    else:
        ready, reason = False, reasons.PODS_NOT_READY
        problem = f" ({active.problem})" if active and active.problem else ""
        message = f"{ready_count}/{wanted} pods ready{problem}"
    conditions = set_condition(conditions, reasons.READY, ready, reason, message, generation, now)
    progressing = status.phase == "Progressing"
    progress_reason = {
        "Progressing": reasons.ROLLOUT_IN_PROGRESS,
        "Paused": reasons.PAUSED,
        "Healthy": reasons.ROLLOUT_COMPLETE,
        "Degraded": reasons.ROLLED_BACK,
    }.get(status.phase or "", reasons.ROLLOUT_IN_PROGRESS)
    wait = status.canary.gates if status.canary is not None else None
    if progressing and wait is not None:  # the message names the gates and their answers
        confirm = wait.stage in ("confirmStep", "confirmPromotion")
        progress_reason = reasons.AWAITING_APPROVAL if confirm else reasons.RUNNING_GATES
    elif progressing and status.canary is not None:
        analysis = status.canary.analysis
        if analysis.phase == "Inconclusive" and not_as_weighted(analysis.message):
            progress_reason = reasons.TRAFFIC_NOT_AS_WEIGHTED  # the router ignores the weight
    conditions = set_condition(
        conditions,
        reasons.PROGRESSING,
        progressing,
        progress_reason,
        status.message or "",
        generation,
        now,
    )
    degraded = status.phase == "Degraded"
    degraded_reason = _degraded_reason(status) if degraded else reasons.AS_EXPECTED
    degraded_message = (status.message or "") if degraded else ""
    return set_condition(
        conditions,
        reasons.DEGRADED,
        degraded,
        degraded_reason,
        degraded_message,
        generation,
        now,
    )


def _degraded_reason(status: ModelDeploymentStatus) -> str:
    if not status.history:
        return reasons.ROLLED_BACK
    last = status.history[0]
    if last.outcome == "RolledBack" and not_as_weighted(last.message):
        return reasons.TRAFFIC_NOT_AS_WEIGHTED
    return {"Aborted": reasons.ABORTED, "RolledBack": reasons.ROLLED_BACK}.get(
        last.outcome, reasons.ROLLED_BACK
    )


def invalid_spec_status(
    status: ModelDeploymentStatus, message: str, generation: int | None, now: datetime
) -> ModelDeploymentStatus:
    """A spec the operator cannot act on: say why; nothing that serves traffic is touched."""
    out = status.model_copy(deep=True)
    out.message = f"invalid spec: {message}"
    out.conditions = set_condition(
        out.conditions, reasons.DEGRADED, True, reasons.INVALID_SPEC, out.message, generation, now
    )
    out.conditions = set_condition(
        out.conditions,
        reasons.PROGRESSING,
        False,
        reasons.INVALID_SPEC,
        out.message,
        generation,
        now,
    )
    return out
