"""The revision: a stable hash of what shapes the pod, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import PodShape, revision_of, shape_of
from tests.unit.operator.specs import make_spec

SETTINGS = OperatorSettings(server_image="example.org/server:1")


def _revision(**overrides: Any) -> str:
    return revision_of(shape_of(make_spec(**overrides), SETTINGS))


BASE = _revision()


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": {"uri": "s3://models/fraud/v8/model.onnx"}},
        {"model": {"uri": "s3://models/fraud/v7/model.onnx", "sha256": "a" * 64}},
        {"server": {"workers": 2}},
        {"server": {"resources": {"limits": {"cpu": "2"}}}},
        {"server": {"env": [{"name": "X", "value": "1"}]}},
        {"gpu": {"count": 1}},
        {"nodeSelector": {"pool": "ml"}},
        {"tolerations": [{"key": "k", "operator": "Exists"}]},
        {"auth": {"apiKeySecretRef": {"name": "keys"}}},
        {"monitoring": {"baselineUri": "s3://models/fraud/v7/train.csv"}},
    ],
)
def test_pod_shaping_changes_make_a_new_revision(overrides: dict[str, Any]) -> None:
    assert _revision(**overrides) != BASE


@pytest.mark.parametrize(
    "overrides",
    [
        {"replicas": 5},
        {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}},
        {"traffic": {"ingress": {"host": "fraud.example.org"}}},
        {"rollout": {"steps": [50, 100], "stepDuration": "2m"}},
        # defaults written out explicitly are the same shape
        {"model": {"uri": "s3://models/fraud/v7/model.onnx", "format": "onnx"}},
        {"server": {"image": "example.org/server:1", "workers": 1}},
        # monitoring without a baseline touches no pod: the operator alone evaluates
        {"monitoring": {"interval": "30s", "window": "10m", "thresholds": {"psi": 0.3}}},
        {"monitoring": {"webhook": {"url": "https://alerts.example.org/hook"}}},
    ],
)
def test_other_changes_keep_the_revision(overrides: dict[str, Any]) -> None:
    assert _revision(**overrides) == BASE


def test_revision_is_ten_hex_characters_and_stable() -> None:
    assert len(BASE) == 10
    assert int(BASE, 16) >= 0
    assert _revision() == BASE


def test_shape_round_trips_through_its_annotation() -> None:
    shape = shape_of(make_spec(gpu={"count": 2, "product": "NVIDIA-A100"}), SETTINGS)
    again = PodShape.from_annotation(shape.to_annotation())
    assert again == shape
    assert revision_of(again) == revision_of(shape)


def test_version_defaults_to_a_hash_of_the_uri() -> None:
    shape = shape_of(make_spec(), SETTINGS)
    assert len(shape.version) == 8
    named = shape_of(make_spec(model={"uri": "file:///m.txt", "version": "v7"}), SETTINGS)
    assert named.version == "v7"
    assert named.model.format == "lightgbm"


def test_the_baseline_and_its_bins_are_the_revision_but_evaluation_settings_are_not() -> None:
    uri = "s3://models/fraud/v7/train.csv"
    with_baseline = _revision(monitoring={"baselineUri": uri})
    assert _revision(monitoring={"baselineUri": uri, "bins": 10}) == with_baseline
    assert _revision(monitoring={"baselineUri": uri, "bins": 20}) != with_baseline
    assert _revision(monitoring={"baselineUri": uri + ".v2"}) != with_baseline
    evaluation = {"interval": "5s", "window": "1m", "minSamples": 50, "thresholds": {"ks": 0.2}}
    assert _revision(monitoring={"baselineUri": uri, **evaluation}) == with_baseline
    shape = shape_of(make_spec(monitoring={"baselineUri": uri, "bins": 20}), SETTINGS)
    assert PodShape.from_annotation(shape.to_annotation()) == shape
