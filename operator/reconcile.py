"""One idempotent reconcile: read, compute the desired state, apply, write status.

Create, update, resume and the periodic timer all call `reconcile(...)`; nothing depends on which
event fired. `observe` reads the slots (from the live cache where it can), the rollout machine
decides the next status, the pure builders turn that status into children, and `apply` writes
only what changed: a child this process applied recently with the same content costs no request,
and an unchanged status is not written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from modelfleet.operator import apply, observe, reasons
from modelfleet.operator.api import (
    CHECK_RULES,
    CROSS_FIELD_ERROR,
    NAME_RULES,
    SLOTS,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelfleet.operator.apply import AppliedCache
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.desired import desired_state, with_notes
from modelfleet.operator.gates import GateAsker
from modelfleet.operator.gateway_features import GatewayFeatures
from modelfleet.operator.kube import KubeClient
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.measurement import AnalysisTarget, Analyzer, Measurement
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.notifier import Notifier
from modelfleet.operator.replay import paired_gate_enabled
from modelfleet.operator.rollout.approvals import SMOKE_GATE, DueGates, gates_due
from modelfleet.operator.rollout.commands import COMMAND_ANNOTATION, Command
from modelfleet.operator.rollout.machine import next_action
from modelfleet.operator.rollout.steps import analysis_due, plan_replicas
from modelfleet.operator.rollout.types import GateAnswer, RolloutInput, SlotObservation
from modelfleet.operator.routers import Router, router_for
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from modelfleet.operator.status import invalid_spec_status, summarize
from modelfleet.operator.timestamps import parse_timestamp


class InvalidSpecError(Exception):
    """The spec cannot be acted on; retrying will not help until it changes."""


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
    gates: GateAsker | None = None  # rollout.webhooks and rollout.smoke


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
    name = body["metadata"]["name"]
    for rule in NAME_RULES:
        if not rule.holds(name):
            raise InvalidSpecError(rule.message)
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
        if await apply.write_status(ctx.kube, body, invalid):
            await ctx.kube.post_event(
                apply.object_ref(body), "Warning", reasons.INVALID_SPEC, str(error)
            )
        raise
    shape = shape_of(spec, ctx.settings)
    revision = revision_of(shape)
    first = old_status.observed_generation is None
    found = await asyncio.gather(
        *(observe.slot_deployment(ctx.kube, ctx.deployments, owner, slot, first) for slot in SLOTS)
    )
    live: dict[str, dict[str, Any] | None] = dict(zip(SLOTS, found, strict=True))
    observations = await asyncio.gather(
        *(observe.observe_slot(ctx.kube, owner, slot, live[slot], now) for slot in SLOTS)
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
        shadow_refusal=await observe.shadow_refusal(
            ctx.kube, ctx.gateway_features, owner, spec, old_status, revision, generation
        ),
        gate_answers=await _ask_gates(
            ctx, owner, spec, old_status, gates_due(spec, old_status, now)
        ),
    )
    policy_refusal = await observe.route_policy_refusal(
        ctx.kube, ctx.gateway_features, owner, spec, old_status, generation
    )
    expected_share = _expected_share(router, old_status, observed)
    measurement = await _measure(
        ctx, owner, spec, old_status, now, expected_share, router.splits_by_weight
    )
    transition = next_action(inp, measurement, now)
    new_status = transition.status
    plan = plan_replicas(inp, new_status)
    capabilities = await observe.capabilities(ctx.kube, ctx.settings)
    served = _servable(spec, policy_refusal)
    desired = desired_state(
        owner, served, new_status, (shape, revision), plan, live, router, ctx.settings, capabilities
    )
    if (
        old_status.observed_generation in (None, generation)
        and old_status.active_slot in (None, new_status.active_slot)
        and _live_canary(old_status) == _live_canary(new_status)
    ):
        # nothing that decides which children exist changed since the last reconcile wrote its
        # status (never reconciled: nothing of ours can exist yet): what must be absent already is
        desired.absent.clear()
    traffic_first = _traffic_moves_away(old_status, new_status)
    await apply.apply_desired(ctx.kube, ctx.applied, ctx.deployments, owner, desired, traffic_first)
    url = _url(owner, spec)
    summary = summarize(
        spec, new_status, observed, plan, url, generation, now, inp.shadow_refusal, policy_refusal
    )
    summary.message = with_notes(summary.message, desired)
    written = await apply.write_status(ctx.kube, body, summary)
    if transition.events:
        await apply.post_events(ctx.kube, body, transition.events, now)
        if ctx.notifier is not None:  # queued only: delivery never holds up the reconcile
            ctx.notifier.notify(owner, spec.rollout, old_status, transition, measurement, now)
    children = len(desired.workloads) + len(desired.traffic)
    _record(ctx, owner, children, transition.status, old_status, measurement)
    return Outcome(transition.requeue_after, written is not None, children, written)


def _servable(spec: ModelDeploymentSpec, policy_refusal: str | None) -> ModelDeploymentSpec:
    """The spec the children are built from: without the route's timeouts and retry when the
    Gateway's class cannot serve them (never write what the data plane would ignore)."""
    gateway = spec.traffic.gateway
    if policy_refusal is None or gateway is None:
        return spec
    bare = gateway.model_copy(update={"timeouts": None, "retry": None})
    traffic = spec.traffic.model_copy(update={"gateway": bare})
    return spec.model_copy(update={"traffic": traffic})


def _active_replicas(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    observed: dict[str, SlotObservation],
) -> int:
    if spec.autoscaling is None:
        return spec.replicas
    current = observed[status.active_slot].replicas if status.active_slot else 0
    return min(max(current, spec.autoscaling.min_replicas), spec.autoscaling.max_replicas)


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
        rate_limited=spec.rate_limit is not None,
    )
    analysis = spec.rollout.analysis
    if paired_gate_enabled(analysis) and status.active_slot is not None:
        target = await observe.with_pod_addresses(
            ctx.kube,
            ctx.settings.pod_address_annotation,
            owner,
            target,
            canary.slot,
            status.active_slot,
        )
    if analysis.prometheus_url is None:
        analysis = analysis.model_copy(update={"prometheus_url": ctx.settings.prometheus_url})
    return await ctx.analyzer.measure(target, analysis, now)


async def _ask_gates(
    ctx: Context,
    owner: Owner,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    due: DueGates,
) -> tuple[GateAnswer, ...]:
    """The answers of the gates the status's open wait asks for (calls bounded by each gate's
    timeout, at most 60 s, made at the same time); none when nothing is due."""
    if not due:
        return ()
    if ctx.gates is None:  # a wiring mistake: say so through the gates rather than wait forever
        names = [hook.name for hook in due.webhooks] + ([SMOKE_GATE] if due.smoke else [])
        return tuple(GateAnswer(name, False, "the operator has no gate client") for name in names)
    smoke_address = None
    if due.smoke and status.canary is not None:
        smoke_address = await observe.smoke_address(
            ctx.kube, ctx.settings.pod_address_annotation, owner, status.canary
        )
    return await ctx.gates.ask(owner, spec, status, due, smoke_address)


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
    finished = new.history and new.history[0].outcome != "Approved"  # an approval ends nothing
    if finished and (not old.history or new.history[0] != old.history[0]):
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
