"""Random ModelDeployment specs through the whole pure reconcile (hypothesis, derandomized).

A spec the operator refuses must be refused as an invalid spec that names its field (a
`PermanentError`, never retried); any other exception would be retried for ever, a crash loop in
all but name. A spec it accepts must be reconciled without an exception from its first deploy
through a rollout of a new model version: parse, state machine, builders, status.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from modelfleet.operator import reasons
from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.reconcile import InvalidSpecError, parse_spec, reconcile
from tests.spec_strategies import md_names, model_deployment_spec
from tests.unit.operator.test_reconcile import T0, FakeKube, _context


def _body(md_name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": md_name, "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": spec,
    }


def _refusal(body: dict[str, Any]) -> str | None:
    """Why the operator refuses this object, or None when it accepts it."""
    try:
        parse_spec(body)
    except InvalidSpecError as error:
        return str(error)
    return None


AUTOSCALERS = (("HorizontalPodAutoscaler", "minReplicas"), ("ScaledObject", "minReplicaCount"))


def _autoscale(kube: FakeKube) -> None:
    """What an HPA or ScaledObject does to a Deployment applied without replicas: at least its
    minReplicas, all Ready (the fake API server has no autoscaling controller of its own)."""
    for (kind, namespace, name), deployment in kube.objects.items():
        if kind != "Deployment" or "replicas" in deployment["spec"]:
            continue
        for scaler_kind, field in AUTOSCALERS:
            scaler = kube.objects.get((scaler_kind, namespace, name))
            if scaler is not None:
                count = max(deployment["status"]["readyReplicas"], scaler["spec"][field])
                deployment["status"].update(readyReplicas=count, updatedReplicas=count)


def _reconcile_for(kube: FakeKube, key: tuple[str, str, str], seconds: float) -> None:
    """Reconcile the object as the operator would while `seconds` pass."""
    ctx, at = _context(kube), T0
    while at <= T0 + timedelta(seconds=seconds):
        asyncio.run(reconcile(kube.objects[key], ctx, at))
        _autoscale(kube)
        at += timedelta(seconds=10)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=model_deployment_spec(), md_name=md_names())
def test_every_spec_is_refused_naming_its_field_or_reconciled_without_an_exception(
    spec: dict[str, Any], md_name: str
) -> None:
    body, key = _body(md_name, spec), ("ModelDeployment", "ml", md_name)
    kube = FakeKube()
    kube.objects[key] = body
    refusal = _refusal(body)
    if refusal is not None:
        event("refused")
        assert refusal.startswith(("spec.", "metadata.name")), refusal
        with pytest.raises(InvalidSpecError):
            asyncio.run(reconcile(body, _context(kube), T0))
        status = ModelDeploymentStatus.model_validate(kube.objects[key]["status"])
        degraded = next(c for c in status.conditions if c.type == reasons.DEGRADED)
        assert (degraded.status, degraded.reason) == ("True", reasons.INVALID_SPEC)
        assert refusal in degraded.message
        return
    event("accepted")
    _reconcile_for(kube, key, 30)  # first deploy: its pods come up Ready
    assert kube.objects[key]["status"]["phase"] == "Healthy"
    edited = copy.deepcopy(spec)
    edited["model"]["version"] = "v-next"  # a new revision: a rollout through every step
    kube.objects[key] = {**kube.objects[key], "spec": edited}
    _reconcile_for(kube, key, 600)
