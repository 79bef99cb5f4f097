"""The API server itself rejects bad ModelDeployments and names the field (no operator needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.operator.kube import model_deployment

GOOD_MODEL = {"uri": "s3://models/fraud/v1/model.onnx"}


def _apply(cluster: Any, manifest: dict[str, Any]) -> tuple[int, str]:
    done = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [
        ("negative-replicas", {"model": GOOD_MODEL, "replicas": -1}, "spec.replicas"),
        ("steps-down", {"model": GOOD_MODEL, "rollout": {"steps": [50, 25, 100]}}, "rollout.steps"),
        ("steps-not-100", {"model": GOOD_MODEL, "rollout": {"steps": [10, 50]}}, "rollout.steps"),
        (
            "two-traffic-blocks",
            {
                "model": GOOD_MODEL,
                "traffic": {
                    "ingress": {"host": "a.example.org"},
                    "gateway": {"parentRefs": [{"name": "gw"}]},
                },
            },
            "traffic",
        ),
        ("unknown-format", {"model": {**GOOD_MODEL, "format": "pickle"}}, "spec.model.format"),
        ("bad-scheme", {"model": {"uri": "ftp://host/model.onnx"}}, "spec.model.uri"),
        (
            "error-rate-above-1",
            {"model": GOOD_MODEL, "rollout": {"analysis": {"maxErrorRate": 1.5}}},
            "spec.rollout.analysis.maxErrorRate",
        ),
        (
            "error-rate-zero",
            {"model": GOOD_MODEL, "rollout": {"analysis": {"maxErrorRate": 0}}},
            "spec.rollout.analysis.maxErrorRate",
        ),
        (
            "min-above-max",
            {"model": GOOD_MODEL, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "autoscaling.minReplicas",
        ),
        ("no-format-no-extension", {"model": {"uri": "s3://models/fraud/model"}}, "model.format"),
        ("n" * 53, {"model": GOOD_MODEL}, "metadata.name"),
        (
            "shadow-without-a-router",
            {"model": GOOD_MODEL, "rollout": {"shadow": {"duration": "1m"}}},
            "spec.rollout.shadow",
        ),
        (
            "shadow-share-on-nginx",
            {
                "model": GOOD_MODEL,
                "traffic": {"ingress": {"host": "a.example.org"}},
                "rollout": {"shadow": {"percent": 20}},
            },
            "spec.rollout.shadow.percent",
        ),
        (
            "paired-gate-without-rows",
            {"model": GOOD_MODEL, "rollout": {"analysis": {"minAgreement": 0.9}}},
            "spec.rollout.analysis.replay",
        ),
        (
            "paired-gate-live-sample-off",
            {
                "model": GOOD_MODEL,
                "rollout": {"analysis": {"maxScoreDelta": 0.2, "replay": {"liveSample": False}}},
            },
            "spec.rollout.analysis.replay",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_api_server_rejects_and_names_the_field(
    cluster: Any, operator_crds: None, namespace: str, name: str, spec: dict[str, Any], field: str
) -> None:
    code, stderr = _apply(cluster, model_deployment(name, namespace, **spec))
    assert code != 0, f"{name} was accepted"
    assert field in stderr, stderr


@pytest.mark.parametrize(
    "traffic",
    [
        {"gateway": {"parentRefs": [{"name": "gw"}]}, "shadow": {"percent": 20}},
        {"ingress": {"host": "a.example.org"}, "shadow": {"duration": "30s"}},
    ],
    ids=["gateway-share", "nginx-all"],
)
def test_a_shadow_step_with_a_mirroring_router_is_accepted(
    cluster: Any, operator_crds: None, namespace: str, traffic: dict[str, Any]
) -> None:
    spec = {
        "model": GOOD_MODEL,
        "traffic": {key: value for key, value in traffic.items() if key != "shadow"},
        "rollout": {"shadow": traffic["shadow"]},
    }
    code, stderr = _apply(cluster, model_deployment("shadowed", namespace, **spec))
    assert code == 0, stderr


def test_a_good_spec_is_accepted_with_defaults(
    cluster: Any, operator_crds: None, namespace: str
) -> None:
    code, stderr = _apply(cluster, model_deployment("fraud", namespace, model=GOOD_MODEL))
    assert code == 0, stderr


@pytest.mark.parametrize(
    "replay",
    [{"referenceUri": "s3://models/fraud/reference.csv"}, {"liveSample": True}],
    ids=["reference", "live-sample"],
)
def test_a_paired_gate_with_rows_is_accepted(
    cluster: Any, operator_crds: None, namespace: str, replay: dict[str, Any]
) -> None:
    analysis = {"minAgreement": 0.9, "maxScoreDelta": 0.3, "replay": replay}
    spec = {"model": GOOD_MODEL, "rollout": {"analysis": analysis}}
    code, stderr = _apply(cluster, model_deployment("paired", namespace, **spec))
    assert code == 0, stderr
