"""Spec factories for the operator's unit tests: parsed from plain YAML-like dicts."""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import ModelDeploymentSpec


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {"model": {"uri": "s3://models/fraud/v7/model.onnx"}}
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)
