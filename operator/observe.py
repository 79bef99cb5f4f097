"""Observing the world for one reconcile: the slots' Deployments (from the live cache, else the API
server), what their pods say when they are not Ready, which optional APIs the cluster serves, what
the Gateway can do (a shadow step, a header route, the route's timeouts and retry), and which pods
the paired gate replays to.

Reads only; everything here is given its client.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any

from modelfleet.operator import reasons
from modelfleet.operator.api import CanaryStatus, ModelDeploymentSpec, ModelDeploymentStatus, Slot
from modelfleet.operator.builders.common import METRICS_PORT, Owner, selector
from modelfleet.operator.desired import POD_MONITOR, SCALED_OBJECT, Capabilities
from modelfleet.operator.gateway_features import GatewayFeatures
from modelfleet.operator.kube import KubeClient
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.measurement import AnalysisTarget
from modelfleet.operator.replay import ready_pod_address
from modelfleet.operator.rollout.steps import in_shadow
from modelfleet.operator.rollout.types import Refusal, SlotObservation
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.timestamps import parse_timestamp


async def slot_deployment(
    kube: KubeClient,
    deployments: LiveDeployments | None,
    owner: Owner,
    slot: Slot,
    first: bool,
) -> dict[str, Any] | None:
    """A slot's Deployment: as the watch or our last apply saw it, else from the API server
    (not asked on the first reconcile, when the ModelDeployment has no status of ours yet: a
    slot it finds there gets the spec's shape, which is what a first reconcile applies anyway)."""
    name = owner.slot_name(slot)
    known = deployments.get(owner.namespace, name) if deployments is not None else None
    if known is not None or first:
        return known
    found = await kube.get("apps/v1", "Deployment", owner.namespace, name)
    if found is not None and deployments is not None:
        deployments.update(found)
    return found


# pods that are not Ready this long after their Deployment last progressed are asked why; younger
# ones are most likely still starting, and listing them for every reconcile costs a request each
POD_PROBLEM_AFTER_SECONDS = 5.0


async def observe_slot(
    kube: KubeClient, owner: Owner, slot: Slot, live: dict[str, Any] | None, now: datetime
) -> SlotObservation:
    """What a slot's Deployment says of its pods (and, once they have been starting a while, why
    they are not Ready)."""
    if live is None:
        return SlotObservation()
    meta, spec, status = live["metadata"], live.get("spec", {}), live.get("status", {})
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    replicas = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0) if current else 0
    updated = status.get("updatedReplicas", 0) if current else 0
    # status.replicas counts the non-terminated pods of every ReplicaSet, old templates too
    stale = max(status.get("replicas", 0) - updated, 0) if current else 0
    problem = None
    if ready < replicas and _starting_for(live, now) >= POD_PROBLEM_AFTER_SECONDS:
        pods = await kube.list("v1", "Pod", owner.namespace, selector(owner, slot))
        problem = pod_problem(pods)
    return SlotObservation(
        revision=meta.get("labels", {}).get("modelfleet.io/revision"),
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=updated,
        problem=problem,
        stale_replicas=stale,
    )


def _starting_for(live: dict[str, Any], now: datetime) -> float:
    """Seconds since the Deployment was created or last progressed (a new ReplicaSet, a pod)."""
    stamps = [
        live.get("status", {}).get("progressedAt"),
        live.get("metadata", {}).get("creationTimestamp"),
    ]
    for condition in live.get("status", {}).get("conditions", []):
        if condition.get("type") == "Progressing":
            stamps.append(condition.get("lastUpdateTime"))
    parsed = [parse_timestamp(stamp) for stamp in stamps if stamp]
    return (now - max(parsed)).total_seconds() if parsed else float("inf")


def pod_problem(pods: list[dict[str, Any]]) -> str | None:
    """Why pods are not Ready, from their containerStatuses and conditions (first reason found)."""
    for pod in pods:
        status = pod.get("status", {})
        for container in status.get("containerStatuses", []):
            for key in ("state", "lastState"):
                for phase in ("waiting", "terminated"):
                    detail = container.get(key, {}).get(phase)
                    if detail and detail.get("reason") not in (
                        None,
                        "ContainerCreating",
                        "Completed",
                    ):
                        message = detail.get("message", "")
                        return f"{detail['reason']}: {message}".rstrip(": ")
        for condition in status.get("conditions", []):
            failing = condition.get("status") == "False" and condition.get("reason")
            if failing and condition["type"] in ("PodScheduled", "Ready"):
                message = condition.get("message", "")
                return f"{condition['reason']}: {message}".rstrip(": ")
    return None


async def shadow_refusal(
    kube: KubeClient,
    features: GatewayFeatures,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    revision: str,
    generation: int | None,
) -> Refusal | None:
    """Why the Gateway cannot serve the shadow step's mirror (or the header route), with the
    condition's reason; asked only while one is pending (a new revision about to start, or a canary
    before or in its shadow step)."""
    shadow, gateway, canary = spec.rollout.shadow, spec.traffic.gateway, status.canary
    header_route = spec.rollout.header_route
    if (shadow is None and header_route is None) or gateway is None or status.active_slot is None:
        return None
    if revision == status.active_revision:
        return None
    if canary is not None and canary.revision == revision and not in_shadow(spec, canary):
        return None
    fresh = generation != status.observed_generation
    if header_route is not None:
        refusal = await features.header_refusal(kube, owner.namespace, gateway, fresh=fresh)
        if refusal is not None:
            return Refusal(reasons.HEADER_ROUTE_REFUSED, refusal)
    if shadow is not None:
        refusal = await features.mirror_refusal(
            kube, owner.namespace, gateway, shadow.percent, fresh=fresh
        )
        if refusal is not None:
            return Refusal(reasons.SHADOW_REFUSED, refusal)
    return None


async def route_policy_refusal(
    kube: KubeClient,
    features: GatewayFeatures,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    generation: int | None,
) -> str | None:
    """Why the Gateway cannot serve the route's timeouts and retry (None when neither is set)."""
    gateway = spec.traffic.gateway
    if gateway is None:
        return None
    fresh = generation != status.observed_generation
    return await features.policy_refusal(kube, owner.namespace, gateway, fresh=fresh)


async def with_pod_addresses(
    kube: KubeClient,
    annotation: str | None,
    owner: Owner,
    target: AnalysisTarget,
    canary_slot: Slot,
    stable_slot: Slot,
) -> AnalysisTarget:
    """The target with one Ready pod's metrics address per slot, for the paired replay gate."""
    canary_pods, stable_pods = await asyncio.gather(
        kube.list("v1", "Pod", owner.namespace, selector(owner, canary_slot)),
        kube.list("v1", "Pod", owner.namespace, selector(owner, stable_slot)),
    )
    return dataclasses.replace(
        target,
        canary_address=ready_pod_address(canary_pods, target.canary_revision, annotation),
        stable_address=ready_pod_address(stable_pods, target.stable_revision, annotation),
    )


async def smoke_address(
    kube: KubeClient, annotation: str | None, owner: Owner, canary: CanaryStatus
) -> str | None:
    """Where the smoke test reaches the canary: its slot Service's cluster IP and metrics port (any
    Ready pod of the slot answers; the IP, not the DNS name, so no cluster DNS is needed); with
    `annotation` (the local cluster, whose Services route nowhere) one Ready pod's address from
    that annotation. None while there is none (the smoke test is then run at the next look)."""
    if annotation:
        pods = await kube.list("v1", "Pod", owner.namespace, selector(owner, canary.slot))
        return ready_pod_address(pods, canary.revision, annotation)
    service = await kube.get("v1", "Service", owner.namespace, owner.slot_name(canary.slot))
    ip = ((service or {}).get("spec") or {}).get("clusterIP")
    if not ip or ip == "None":
        return None
    return f"[{ip}]:{METRICS_PORT}" if ":" in ip else f"{ip}:{METRICS_PORT}"


async def capabilities(kube: KubeClient, settings: OperatorSettings) -> Capabilities:
    """Which optional APIs the cluster serves (KEDA, prometheus-operator, Gateway API)."""
    check = settings.scaled_object_check
    return Capabilities(
        keda=check and await kube.has_api(*SCALED_OBJECT),
        pod_monitor=check and await kube.has_api(*POD_MONITOR),
        gateway=await kube.has_api("gateway.networking.k8s.io/v1", "HTTPRoute"),
    )
