"""The Argo CD health check (manifests/gitops/health.lua) run in Lua 5.1, as Argo CD's gopher-lua runs it,
against status objects shaped by the operator's own status model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modelfleet_dev.harness.argocd import argocd_health

from modelfleet.operator.api import ModelDeploymentStatus

GITOPS = Path(__file__).resolve().parents[2] / "manifests" / "gitops"
HEALTH_LUA = (GITOPS / "health.lua").read_text()
NOW = "2026-11-23T02:00:00Z"


def _condition(ctype: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": 3,
    }


def _status(**fields: Any) -> dict[str, Any]:
    """A status as the operator writes it: validated by its model, dumped with camelCase keys."""
    parsed = ModelDeploymentStatus.model_validate(fields)
    return parsed.model_dump(by_alias=True, exclude_none=True)


def _health(obj: dict[str, Any]) -> tuple[str, str]:
    return argocd_health(obj)


def _object(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": generation},
        "spec": {"model": {"uri": "s3://models/fraud/v7/model.onnx"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


HEALTHY = _status(
    phase="Healthy",
    message="v7 serving on blue",
    observedGeneration=3,
    activeSlot="blue",
    activeVersion="v7",
    conditions=[
        _condition("Ready", "True", "Serving", "v7 serving on blue"),
        _condition("Degraded", "False", "AsExpected"),
    ],
)
PROGRESSING = _status(
    phase="Progressing",
    message="rolling out v8",
    observedGeneration=3,
    canary={
        "slot": "green",
        "revision": "a1b2c3d4",
        "version": "v8",
        "weight": 25,
        "stepIndex": 1,
        "analysis": {"phase": "Pass", "errorRate": 0.001, "requests": 812},
    },
    conditions=[
        _condition("Ready", "True", "Serving"),
        _condition("Progressing", "True", "Canary"),
    ],
)
ROLLED_BACK = _status(
    phase="Degraded",
    message="rolled back v8",
    observedGeneration=3,
    conditions=[
        _condition("Ready", "True", "Serving"),
        _condition(
            "Degraded",
            "True",
            "RolledBack",
            "error rate 4.2 % [3.4–5.1 %] > 1.0 % over 1,812 requests at 25 %",
        ),
    ],
)
PAUSED = _status(phase="Paused", message="paused by kubectl modelfleet pause", observedGeneration=3)


@pytest.mark.parametrize(
    ("obj", "expected_status", "message_part"),
    [
        (_object(None), "Progressing", "Waiting for the operator"),
        (_object(HEALTHY, generation=4), "Progressing", "generation 4"),
        (_object(HEALTHY), "Healthy", "v7 serving on blue"),
        (_object(PROGRESSING), "Progressing", "canary v8 at 25 %, last analysis Pass"),
        (_object(ROLLED_BACK), "Degraded", "error rate 4.2 %"),
        (_object(PAUSED), "Suspended", "paused"),
    ],
    ids=["no-status", "stale-generation", "healthy", "progressing", "rolled-back", "paused"],
)
def test_health_maps_status(obj: dict[str, Any], expected_status: str, message_part: str) -> None:
    status, message = _health(obj)
    assert status == expected_status
    assert message_part in message


def test_healthy_phase_without_ready_condition_is_not_healthy() -> None:
    status = _status(phase="Healthy", observedGeneration=3)
    assert _health(_object(status))[0] == "Progressing"


def test_argocd_cm_patch_embeds_the_same_lua() -> None:
    patch = yaml.safe_load((GITOPS / "argocd-cm-patch.yaml").read_text())
    embedded = patch["data"]["resource.customizations.health.modelfleet.io_ModelDeployment"]
    assert embedded == HEALTH_LUA
