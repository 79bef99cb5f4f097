"""One idempotent reconcile: read, compute the desired state, apply, write status.

Create, update, resume and the periodic timer all call `reconcile(...)`; nothing depends on which
event fired. The rollout machine decides the next status, the pure builders turn that status into
children, and only what changed is written: an unchanged object costs reads and no-op applies, and
no resourceVersion moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    API_VERSION,
    CHECK_RULES,
    CROSS_FIELD_ERROR,
    KIND,
    MAX_NAME_LENGTH,
    SLOTS,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Slot,
)
from modelfleet.operator.builders.common import Owner, selector
from modelfleet.operator.desired import (
    POD_MONITOR,
    SCALED_OBJECT,
    Capabilities,
    DesiredState,
    desired_state,
    with_notes,
)
from modelfleet.operator.gateway_features import GatewayFeatures
from modelfleet.operator.kube import KubeClient, merge_patch
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.measurement import AnalysisTarget, Analyzer, Measurement
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.notifier import Notifier
from modelfleet.operator.replay import paired_gate_enabled, ready_pod_address
from modelfleet.operator.rollout.commands import COMMAND_ANNOTATION, Command
from modelfleet.operator.rollout.machine import next_action
from modelfleet.operator.rollout.steps import analysis_due, in_shadow, plan_replicas
from modelfleet.operator.rollout.types import RolloutInput, SlotObservation
from modelfleet.operator.routers import Router, router_for
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from modelfleet.operator.status import invalid_spec_status, summarize
from modelfleet.operator.timestamps import parse_timestamp


class InvalidSpecError(Exception):
    """The spec cannot be acted on; retrying will not help until it changes."""


class AppliedCache:
    """What this process last applied per child, so an unchanged child costs no request.

    An entry older than `max_age` is applied again, so drift made by someone else is corrected
    within that time (a slot Deployment's drift sooner: the watch on it forgets its entry). Only
    a digest of each child is kept, not the child, with the uid of the ModelDeployment it was
    applied for, so that a deleted owner's entries go with it (`forget_owner`).
    """

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._entries: dict[tuple[str, ...], tuple[bytes, float, str]] = {}

    @staticmethod
    def key(obj: Mapping[str, Any]) -> tuple[str, ...]:
        meta = obj["metadata"]
        return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def fresh(self, key: tuple[str, ...], content: bytes) -> bool:
        entry = self._entries.get(key)
        return (
            entry is not None
            and entry[0] == _digest(content)
            and time.monotonic() - entry[1] < self.max_age
        )

    def remember(self, key: tuple[str, ...], content: bytes, owner_uid: str) -> None:
        self._entries[key] = (_digest(content), time.monotonic(), owner_uid)

    def forget(self, key: tuple[str, ...]) -> None:
        self._entries.pop(key, None)

    def forget_owner(self, owner_uid: str) -> None:
        """Drop the entries of one ModelDeployment's children, by its uid (not by a name prefix:
        `fraud-v2-blue` is no child of `fraud`), once this process stops reconciling it."""
        for key in [key for key, entry in self._entries.items() if entry[2] == owner_uid]:
            del self._entries[key]


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=16).digest()


@dataclass(frozen=True)
class Context:
    kube: KubeClient
    settings: OperatorSettings
    analyzer: Analyzer
    metrics: OperatorMetrics | None = None
    applied: AppliedCache | None = None
    deployments: LiveDeployments | None = None  # what the watch and our applies last saw
    gateway_features: GatewayFeatures = dataclasses.field(default_factory=GatewayFeatures)
    notifier: Notifier | None = None  # rollout notifications (spec.rollout.notify)


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None
    status_written: bool
    children: int
    written: dict[str, Any] | None = None  # the object as the status write left it


def parse_spec(body: Mapping[str, Any]) -> ModelDeploymentSpec:
    """The spec, refused with a message naming its field; the CRD's CEL rules are checked too (the
    models carry their Python twins: an older API server must not let a bad spec through)."""
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {}, context=CHECK_RULES)
    except ValidationError as error:
        raise InvalidSpecError(_field_message(error.errors()[0])) from error
    if len(body["metadata"]["name"]) > MAX_NAME_LENGTH:
        raise InvalidSpecError(f"metadata.name is longer than {MAX_NAME_LENGTH} characters")
    return spec


def _field_message(error: ErrorDetails) -> str:
    """`spec.<field>: <message>`, or `spec.<message>` when a rule's message starts with its field's
    path (as `autoscaling.minReplicas must be …` does), the way the API server names a field."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    if error["type"] == CROSS_FIELD_ERROR:
        path += error.get("ctx", {}).get("field_path", "")
    segments = path.lstrip(".").split(".") if path else []
    for start in range(len(segments)):
        tail = ".".join(segments[start:])
        if error["msg"].startswith(tail) and error["msg"][len(tail) : len(tail) + 1] in (" ", ":"):
            return ".".join(["spec", *segments[:start], error["msg"]])
    return f"spec{path}: {error['msg']}"


async def reconcile(body: Mapping[str, Any], ctx: Context, now: datetime | None = None) -> Outcome:
    started = time.perf_counter()
    try:
        return await _reconcile(body, ctx, now or datetime.now(UTC))
    except InvalidSpecError:
        _count_error(ctx, reasons.INVALID_SPEC)
        raise
    except Exception:
        _count_error(ctx, reasons.RECONCILE_ERROR)
        raise
    finally:
        if ctx.metrics is not None:
            ctx.metrics.reconcile_duration.observe(time.perf_counter() - started)


def _count_error(ctx: Context, reason: str) -> None:
    if ctx.metrics is not None:
        ctx.metrics.reconcile_errors.labels(reason).inc()


async def _reconcile(body: Mapping[str, Any], ctx: Context, now: datetime) -> Outcome:
    meta = body["metadata"]
    owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    generation = meta.get("generation")
    old_status = ModelDeploymentStatus.model_validate(body.get("status") or {})
    try:
        spec = parse_spec(body)
    except InvalidSpecError as error:
        invalid = invalid_spec_status(old_status, str(error), generation, now)
        if await _write_status(ctx, body, invalid):
            await ctx.kube.post_event(_ref(body), "Warning", reasons.INVALID_SPEC, str(error))
        raise
    shape = shape_of(spec, ctx.settings)
    revision = revision_of(shape)
    first = old_status.observed_generation is None
    found = await asyncio.gather(*(_slot_deployment(ctx, owner, slot, first) for slot in SLOTS))
    live: dict[str, dict[str, Any] | None] = dict(zip(SLOTS, found, strict=True))
    observations = await asyncio.gather(
        *(_observe(ctx.kube, owner, slot, live[slot], now) for slot in SLOTS)
    )
    observed: dict[str, SlotObservation] = dict(zip(SLOTS, observations, strict=True))
    router = router_for(spec.traffic)
    inp = RolloutInput(
        spec=spec,
        revision=revision,
        version=shape.version,
        status=old_status,
        slots=observed,
        active_replicas=_active_replicas(spec, old_status, observed),
        canary_sizer=router.canary_replicas,
        command=Command.parse(meta.get("annotations", {}).get(COMMAND_ANNOTATION)),
        shadow_refusal=await _shadow_refusal(ctx, owner, spec, old_status, revision, generation),
    )
    expected_share = _expected_share(router, old_status, observed)
    measurement = await _measure(
        ctx, owner, spec, old_status, now, expected_share, router.splits_by_weight
    )
    transition = next_action(inp, measurement, now)
    new_status = transition.status
    plan = plan_replicas(inp, new_status)
    capabilities = await _capabilities(ctx)
    desired = desired_state(
        owner, spec, new_status, (shape, revision), plan, live, router, ctx.settings, capabilities
    )
    if (
        old_status.observed_generation in (None, generation)
        and old_status.active_slot in (None, new_status.active_slot)
        and _live_canary(old_status) == _live_canary(new_status)
    ):
        # nothing that decides which children exist changed since the last reconcile wrote its
        # status (never reconciled: nothing of ours can exist yet): what must be absent already is
        desired.absent.clear()
    await _apply(ctx, owner, desired, traffic_first=_traffic_moves_away(old_status, new_status))
    summary = summarize(
        spec, new_status, observed, plan, _url(owner, spec), generation, now, inp.shadow_refusal
    )
    summary.message = with_notes(summary.message, desired)
    written = await _write_status(ctx, body, summary)
    if transition.events:
        await asyncio.gather(
            *(
                ctx.kube.post_event(_ref(body), event.type, event.reason, event.message, now)
                for event in transition.events
            )
        )
        if ctx.notifier is not None:  # queued only: delivery never holds up the reconcile
            ctx.notifier.notify(owner, spec.rollout, old_status, transition, measurement, now)
    children = len(desired.workloads) + len(desired.traffic)
    _record(ctx, owner, children, transition.status, old_status, measurement)
    return Outcome(transition.requeue_after, written is not None, children, written)


async def _slot_deployment(
    ctx: Context, owner: Owner, slot: Slot, first: bool
) -> dict[str, Any] | None:
    """A slot's Deployment: as the watch or our last apply saw it, else from the API server
    (not asked on the first reconcile, when the ModelDeployment has no status of ours yet: a
    slot it finds there gets the spec's shape, which is what a first reconcile applies anyway)."""
    name = owner.slot_name(slot)
    known = ctx.deployments.get(owner.namespace, name) if ctx.deployments is not None else None
    if known is not None or first:
        return known
    found = await ctx.kube.get("apps/v1", "Deployment", owner.namespace, name)
    if found is not None and ctx.deployments is not None:
        ctx.deployments.update(found)
    return found


def _ref(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": body["metadata"]}


def _active_replicas(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    observed: dict[str, SlotObservation],
) -> int:
    if spec.autoscaling is None:
        return spec.replicas
    current = observed[status.active_slot].replicas if status.active_slot else 0
    return min(max(current, spec.autoscaling.min_replicas), spec.autoscaling.max_replicas)


# pods that are not Ready this long after their Deployment last progressed are asked why; younger
# ones are most likely still starting, and listing them for every reconcile costs a request each
POD_PROBLEM_AFTER_SECONDS = 5.0


async def _observe(
    kube: KubeClient, owner: Owner, slot: Slot, live: dict[str, Any] | None, now: datetime
) -> SlotObservation:
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


async def _measure(
    ctx: Context,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    now: datetime,
    expected_share: float | None,
    splits_by_weight: bool,
) -> Measurement | None:
    canary = status.canary
    if canary is None or not analysis_due(spec, status, now):
        return None
    assert canary.step_started_at is not None
    target = AnalysisTarget(
        namespace=owner.namespace,
        name=owner.name,
        canary_slot=canary.slot,
        canary_revision=canary.revision,
        stable_slot=status.active_slot,
        stable_revision=status.active_revision,
        weight=canary.weight,
        since=parse_timestamp(canary.step_started_at),
        expected_share=expected_share,
        splits_by_weight=splits_by_weight,
    )
    analysis = spec.rollout.analysis
    if paired_gate_enabled(analysis) and status.active_slot is not None:
        target = await _with_pod_addresses(ctx, owner, target, canary.slot, status.active_slot)
    if analysis.prometheus_url is None:
        analysis = analysis.model_copy(update={"prometheus_url": ctx.settings.prometheus_url})
    return await ctx.analyzer.measure(target, analysis, now)


def _expected_share(
    router: Router, status: ModelDeploymentStatus, observed: dict[str, SlotObservation]
) -> float | None:
    """The canary's share of live requests by its router; None in shadow (weight 0: it gets
    copies only, so its share of live requests is not checked)."""
    canary = status.canary
    if canary is None or canary.weight == 0:
        return None
    active = observed[status.active_slot].ready_replicas if status.active_slot else 0
    return router.expected_share(canary.weight, observed[canary.slot].ready_replicas, active)


async def _shadow_refusal(
    ctx: Context,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    revision: str,
    generation: int | None,
) -> str | None:
    """Why the Gateway cannot serve the shadow step's mirror (or the header route); asked only
    while one is pending (a new revision about to start, or a canary before or in its shadow step)."""
    shadow, gateway, canary = spec.rollout.shadow, spec.traffic.gateway, status.canary
    header_route = spec.rollout.header_route
    if (shadow is None and header_route is None) or gateway is None or status.active_slot is None:
        return None
    if revision == status.active_revision:
        return None
    if canary is not None and canary.revision == revision and not in_shadow(spec, canary):
        return None
    fresh = generation != status.observed_generation
    features = ctx.gateway_features
    refusal = None
    if header_route is not None:
        refusal = await features.header_refusal(ctx.kube, owner.namespace, gateway, fresh=fresh)
    if refusal is None and shadow is not None:
        refusal = await features.mirror_refusal(
            ctx.kube, owner.namespace, gateway, shadow.percent, fresh=fresh
        )
    return refusal


async def _with_pod_addresses(
    ctx: Context, owner: Owner, target: AnalysisTarget, canary_slot: Slot, stable_slot: Slot
) -> AnalysisTarget:
    """The target with one Ready pod's metrics address per slot, for the paired replay gate."""
    canary_pods, stable_pods = await asyncio.gather(
        ctx.kube.list("v1", "Pod", owner.namespace, selector(owner, canary_slot)),
        ctx.kube.list("v1", "Pod", owner.namespace, selector(owner, stable_slot)),
    )
    annotation = ctx.settings.pod_address_annotation
    return dataclasses.replace(
        target,
        canary_address=ready_pod_address(canary_pods, target.canary_revision, annotation),
        stable_address=ready_pod_address(stable_pods, target.stable_revision, annotation),
    )


async def _capabilities(ctx: Context) -> Capabilities:
    check = ctx.settings.scaled_object_check
    return Capabilities(
        keda=check and await ctx.kube.has_api(*SCALED_OBJECT),
        pod_monitor=check and await ctx.kube.has_api(*POD_MONITOR),
        gateway=await ctx.kube.has_api("gateway.networking.k8s.io/v1", "HTTPRoute"),
    )


async def _apply(ctx: Context, owner: Owner, desired: DesiredState, traffic_first: bool) -> None:
    """Apply in an order that never sends traffic to pods that are not there yet; the objects
    within one group are independent and go out concurrently."""
    groups = (
        [desired.traffic, desired.workloads]
        if traffic_first
        else [desired.workloads, desired.traffic]
    )
    for group in groups:
        await asyncio.gather(*(_apply_one(ctx, owner, obj) for obj in group))
    await asyncio.gather(*(_delete_one(ctx, owner, *absent) for absent in desired.absent))


async def _apply_one(ctx: Context, owner: Owner, obj: dict[str, Any]) -> None:
    cache = ctx.applied
    key, content = AppliedCache.key(obj), orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    if cache is not None and cache.fresh(key, content):
        return
    result = await ctx.kube.apply(obj)
    if cache is not None:
        cache.remember(key, content, owner.uid)
    if ctx.deployments is not None and obj["kind"] == "Deployment":
        ctx.deployments.update(result)


async def _delete_one(ctx: Context, owner: Owner, api_version: str, kind: str, name: str) -> None:
    cache, key = ctx.applied, (api_version, kind, owner.namespace, name)
    if cache is not None and cache.fresh(key, b"absent"):
        return
    await ctx.kube.delete(api_version, kind, owner.namespace, name)
    if cache is not None:
        cache.remember(key, b"absent", owner.uid)


def _live_canary(status: ModelDeploymentStatus) -> bool:
    """Whether a canary takes live traffic (the ingress router writes its canary Ingress then)."""
    return status.canary is not None and status.canary.weight > 0


def _traffic_moves_away(old: ModelDeploymentStatus, new: ModelDeploymentStatus) -> bool:
    """True when traffic leaves a slot (weight down, rollback, supersede): route first."""
    old_weight = old.canary.weight if old.canary else 0
    new_weight = new.canary.weight if new.canary else 0
    changed_canary = (old.canary is not None) and (
        new.canary is None or new.canary.revision != old.canary.revision
    )
    return new_weight < old_weight or changed_canary or old.active_slot != new.active_slot


def _url(owner: Owner, spec: ModelDeploymentSpec) -> str:
    ingress, gateway = spec.traffic.ingress, spec.traffic.gateway
    if ingress is not None:
        scheme = "https" if ingress.tls else "http"
        return f"{scheme}://{ingress.host}{ingress.path}"
    if gateway is not None and gateway.hostnames:
        return f"http://{gateway.hostnames[0]}{gateway.path}"
    return f"http://{owner.name}.{owner.namespace}.svc.cluster.local"


def status_dict(status: ModelDeploymentStatus) -> dict[str, Any]:
    dumped: dict[str, Any] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped


async def _write_status(
    ctx: Context, body: Mapping[str, Any], status: ModelDeploymentStatus
) -> dict[str, Any] | None:
    """Patch only our own status fields, only when they changed; the object as written, or None
    when nothing was written (or the object is gone)."""
    live = dict(body.get("status") or {})
    ours = set(ModelDeploymentStatus.model_fields) | {
        field.alias for field in ModelDeploymentStatus.model_fields.values() if field.alias
    }
    old = {key: value for key, value in live.items() if key in ours}
    patch = merge_patch(old, status_dict(status))
    if not patch:
        return None
    meta = body["metadata"]
    return await ctx.kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], patch)


def _record(
    ctx: Context,
    owner: Owner,
    children: int,
    new: ModelDeploymentStatus,
    old: ModelDeploymentStatus,
    measurement: Measurement | None,
) -> None:
    metrics = ctx.metrics
    if metrics is None:
        return
    labels = (owner.namespace, owner.name)
    metrics.managed.labels(*labels).set(children)
    metrics.canary_weight.labels(*labels).set(new.canary.weight if new.canary else 0)
    if new.history and (not old.history or new.history[0] != old.history[0]):
        metrics.rollout_outcomes.labels(*labels, new.history[0].outcome).inc()
    if measurement is not None:
        for gauge, value in (
            (metrics.analysis_error_rate, measurement.error_rate),
            (metrics.analysis_p99_ms, measurement.p99_ms),
            (metrics.analysis_requests, measurement.requests),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)
        if old.canary is not None:
            metrics.record_gates(*labels, old.canary.revision, measurement)
    if new.canary is None and old.canary is not None:
        metrics.forget_gates(*labels)  # the rollout is over: no stale drift or agreement alert
