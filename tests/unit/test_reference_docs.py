"""docs/reference.md is generated from the API models: it must be current and cover every field."""

from __future__ import annotations

from pathlib import Path

from modelfleet.operator.api import ModelDeploymentSpec, ModelDeploymentStatus
from modelfleet.operator.reference import render_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_reference_is_current() -> None:
    assert REFERENCE.read_text() == render_reference(), (
        "docs/reference.md is stale: run `make docs`"
    )


def test_every_top_level_field_is_documented_with_a_description() -> None:
    text = render_reference()
    for prefix, model in (("spec", ModelDeploymentSpec), ("status", ModelDeploymentStatus)):
        for name, info in model.model_fields.items():
            assert f"`{prefix}.{info.alias or name}`" in text
            assert info.description, f"{prefix}.{name} has no description"
