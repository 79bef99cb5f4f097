"""The desired children of a ModelDeployment: a pure function of spec, status and settings.

`desired_state(...)` picks each slot's shape (a slot keeps the shape of the revision it runs, read
back from its Deployment's annotation), sizes it from the rollout plan, and asks the router for its
objects at the status' weight (and the header route, once the canary slot's Deployment shows Ready
pods of the canary's revision). It also names what must not exist (autoscalers of idle slots, the
objects of routers not in use, an idle canary's Ingress), so a change of traffic block or
autoscaling, and the end of a canary, clean up after themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelfleet.operator.api import (
    SLOTS,
    CanaryStatus,
    HeaderRouteSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Slot,
)
from modelfleet.operator.builders.autoscaling import build_hpa, build_scaled_object, uses_keda
from modelfleet.operator.builders.common import LABEL_REVISION, Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment, live_sample_rows
from modelfleet.operator.builders.pdb import build_pdb
from modelfleet.operator.builders.podmonitor import build_pod_monitor
from modelfleet.operator.builders.ratelimit import rate_limit_env
from modelfleet.operator.builders.service import build_slot_service, build_stable_service
from modelfleet.operator.routers import ALL_ROUTED_KINDS, Router, Routing
from modelfleet.operator.routers.ingress_nginx import canary_ingress_name
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import SHAPE_ANNOTATION, PodShape

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
POD_MONITOR = ("monitoring.coreos.com/v1", "PodMonitor")


@dataclass(frozen=True)
class Capabilities:
    """Optional APIs the cluster serves (looked up by the reconcile)."""

    keda: bool = False
    pod_monitor: bool = False
    gateway: bool = False


@dataclass
class DesiredState:
    workloads: list[dict[str, Any]] = field(default_factory=list)  # Deployments, Services, PDBs…
    traffic: list[dict[str, Any]] = field(default_factory=list)  # stable Service + router objects
    absent: list[tuple[str, str, str]] = field(default_factory=list)  # (apiVersion, kind, name)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the routing does, for status.message


def routing_of(
    status: ModelDeploymentStatus,
    header_route: HeaderRouteSpec | None = None,
    canary_deployment: dict[str, Any] | None = None,
) -> Routing:
    """The routing for this status; the header route only while the canary can answer it."""
    assert status.active_slot is not None
    canary = status.canary
    if canary is None:
        return Routing(active_slot=status.active_slot)
    serving = canary_serving(canary, canary_deployment)
    header = header_route if serving else None
    return Routing(status.active_slot, canary.slot, canary.weight, canary.mirror, header)


def canary_serving(canary: CanaryStatus, deployment: dict[str, Any] | None) -> bool:
    """Whether the canary slot has Ready pods of the canary's revision and none of an older one.

    A weight or a mirror is only ever set once they are; before that (weight 0) the slot's
    Deployment as last seen says so: its revision label, a status of its current generation.
    """
    if canary.weight > 0 or canary.mirror > 0:
        return True
    if deployment is None:
        return False
    meta, status = deployment.get("metadata", {}), deployment.get("status", {})
    if meta.get("labels", {}).get(LABEL_REVISION) != canary.revision:
        return False
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    updated: int = status.get("updatedReplicas", 0)
    ready: int = status.get("readyReplicas", 0)
    stale: int = status.get("replicas", 0) - updated  # pods of the previous template still running
    return min(ready, updated) >= 1 and stale <= 0


HEADER_ROUTE_NOTE = "header route live: "


def header_route_note(router: Router, routing: Routing, version: str | None) -> str | None:
    """What status says while the router's objects send the header to the canary."""
    header = routing.header_route
    if header is None or not router.header_route_live(routing):
        return None
    slot = routing.canary_slot
    return (
        f"{HEADER_ROUTE_NOTE}requests with {header.name}: {header.value} go to {version} ({slot})"
    )


def with_notes(message: str | None, desired: DesiredState) -> str | None:
    """The machine's message with this reconcile's notes and warnings, each said once: the machine
    leaves its message alone while nothing happens, so the last reconcile's are in it already
    (and a header-route note that no longer holds is dropped)."""
    parts = [p for p in (message or "").split("; ") if p and not p.startswith(HEADER_ROUTE_NOTE)]
    parts += [told for told in [*desired.notes, *desired.warnings] if told not in parts]
    return "; ".join(parts) or message


def slot_revision(status: ModelDeploymentStatus, slot: Slot) -> str | None:
    """The revision a slot must run; None for an idle slot (it keeps whatever it has, at 0 pods)."""
    if status.active_slot == slot:
        return status.active_revision
    for kept in (status.canary, status.previous, status.draining):
        if kept is not None and kept.slot == slot:
            return kept.revision
    return None


def slot_shape(
    wanted: str | None,
    spec_shape: PodShape,
    spec_revision: str,
    live: dict[str, Any] | None,
) -> tuple[PodShape, str]:
    """The shape and revision for a slot: the spec's, or the one its Deployment already runs."""
    live_revision, live_shape = _live_shape(live)
    if wanted == spec_revision:
        return spec_shape, spec_revision
    if live_shape is not None and live_revision is not None and wanted in (None, live_revision):
        return live_shape, live_revision
    # the slot's Deployment is gone: rebuild it from the spec (its revision will show that)
    return spec_shape, spec_revision


def _live_shape(live: dict[str, Any] | None) -> tuple[str | None, PodShape | None]:
    if live is None:
        return None, None
    meta = live.get("metadata", {})
    text = meta.get("annotations", {}).get(SHAPE_ANNOTATION)
    revision = meta.get("labels", {}).get(LABEL_REVISION)
    if text is None or revision is None:
        return None, None
    try:
        return revision, PodShape.from_annotation(text)
    except ValueError:
        return None, None


def desired_state(
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    spec_shape: tuple[PodShape, str],
    plan: dict[str, int | None],
    live: dict[str, dict[str, Any] | None],
    router: Router,
    settings: OperatorSettings,
    capabilities: Capabilities,
) -> DesiredState:
    """Every child of this ModelDeployment for this status; `plan` sizes the slots."""
    assert status.active_slot is not None
    state = DesiredState()
    autoscaler = _autoscaler(owner, spec, status.active_slot, settings, capabilities, state)
    for slot in SLOTS:
        shape, revision = slot_shape(slot_revision(status, slot), *spec_shape, live.get(slot))
        replicas = plan.get(slot, 0)
        if replicas is None and autoscaler is None:  # no autoscaler after all: fixed size
            replicas = spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas
        plan_for_slot = SlotPlan(
            slot=slot,
            shape=shape,
            revision=revision,
            replicas=replicas,
            live_sample_rows=live_sample_rows(spec),
            rate_limit_env=rate_limit_env(owner, spec),
        )
        state.workloads.append(build_deployment(owner, plan_for_slot, settings))
        state.workloads.append(build_slot_service(owner, slot))
        state.workloads.append(build_pdb(owner, slot))
    if autoscaler is not None:
        state.workloads.append(autoscaler)
    if capabilities.pod_monitor:
        state.workloads.append(build_pod_monitor(owner))
    canary = status.canary
    canary_live = live.get(canary.slot) if canary is not None else None
    routing = routing_of(status, spec.rollout.header_route, canary_live)
    note = header_route_note(router, routing, canary.version if canary is not None else None)
    if note is not None:
        state.notes.append(note)
    state.traffic.append(build_stable_service(owner, router.stable_selector_slot(routing)))
    state.traffic.extend(router.build(owner, spec.traffic, routing))
    state.absent.extend(_absent(owner, status.active_slot, autoscaler, capabilities))
    state.absent.extend(_unrouted(owner, state.traffic, capabilities))
    return state


def _autoscaler(
    owner: Owner,
    spec: ModelDeploymentSpec,
    active: Slot,
    settings: OperatorSettings,
    capabilities: Capabilities,
    state: DesiredState,
) -> dict[str, Any] | None:
    autoscaling = spec.autoscaling
    if autoscaling is None:
        return None
    if not uses_keda(autoscaling):
        return build_hpa(owner, active, autoscaling)
    if not capabilities.keda:
        state.warnings.append(
            f"autoscaling.metric {autoscaling.metric} needs KEDA, whose ScaledObject CRD is not "
            f"installed: running {autoscaling.min_replicas} replicas without autoscaling"
        )
        return None
    url = spec.rollout.analysis.prometheus_url or settings.prometheus_url
    return build_scaled_object(owner, active, autoscaling, url)


def _absent(
    owner: Owner,
    active: Slot,
    autoscaler: dict[str, Any] | None,
    capabilities: Capabilities,
) -> list[tuple[str, str, str]]:
    absent: list[tuple[str, str, str]] = []
    kept = (autoscaler["apiVersion"], autoscaler["kind"]) if autoscaler else None
    for slot in SLOTS:
        for kind in (HPA, SCALED_OBJECT):
            if kind == SCALED_OBJECT and not capabilities.keda:
                continue
            if slot != active or kind != kept:
                absent.append((*kind, owner.slot_name(slot)))
    return absent


def _unrouted(
    owner: Owner, traffic: list[dict[str, Any]], capabilities: Capabilities
) -> list[tuple[str, str, str]]:
    """Every router object this routing does not write: another router's, or an idle canary's."""
    written = {(obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) for obj in traffic}
    absent: list[tuple[str, str, str]] = []
    for kind in ALL_ROUTED_KINDS:
        if kind[1] == "HTTPRoute" and not capabilities.gateway:
            continue
        names = [owner.name]
        if kind[1] == "Ingress":
            names.append(canary_ingress_name(owner))
        absent.extend((*kind, name) for name in names if (*kind, name) not in written)
    return absent
