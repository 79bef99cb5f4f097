"""Every examples/*.yaml ModelDeployment parses, and shapes what it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelfleet.operator.api import ModelDeployment
from modelfleet.operator.routers import router_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FILES = sorted(path for path in EXAMPLES.glob("*.yaml"))


def _load(name: str) -> ModelDeployment:
    return ModelDeployment.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_example_parses(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert body["kind"] == "ModelDeployment"
    ModelDeployment.model_validate(body)


@pytest.mark.parametrize(
    ("name", "router"),
    [
        ("minimal.yaml", "replica-ratio"),
        ("ingress-nginx.yaml", "ingress-nginx"),
        ("gateway-api.yaml", "gateway-api"),
        ("gpu-keda.yaml", "replica-ratio"),
    ],
)
def test_example_picks_its_router(name: str, router: str) -> None:
    assert router_for(_load(name).spec.traffic).name == router


def test_gpu_example_uses_keda() -> None:
    spec = _load("gpu-keda.yaml").spec
    assert spec.gpu is not None
    assert spec.autoscaling is not None
    assert spec.autoscaling.metric == "rps"
