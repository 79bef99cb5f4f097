"""The CRD generated from the API models: structural, complete, and not stale in crds/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.operator.crd import build_crd, render_crd_yaml

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "crds" / "modeldeployments.modelfleet.io.yaml"
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "nullable", "title", "const"}


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        found += _nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crds_folder_is_not_stale() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), "crds/ is stale: run `make crds`"


def test_every_node_is_typed_and_free_of_json_schema_only_keywords() -> None:
    for path, node in _nodes(_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not FORBIDDEN & set(node), (path, FORBIDDEN & set(node))
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), (path, key)
        assert node.get("additionalProperties") is not False, path


@pytest.mark.parametrize(
    ("path", "default"),
    [
        (".spec.replicas", 1),
        (".spec.rollout.steps", [10, 25, 50, 100]),
        (".spec.rollout.stepDuration", "60s"),
        (".spec.rollout.analysis.maxErrorRate", 0.01),
        (".spec.rollout", {}),
        (".spec.server.batching.maxBatchSize", 32),
    ],
)
def test_defaults_reach_the_schema(path: str, default: Any) -> None:
    nodes = dict(_nodes(_schema()))
    assert nodes[path]["default"] == default


def test_names_columns_and_subresources() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["md"]
    assert "all" in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == [
        "Phase",
        "Active",
        "Canary",
        "Weight",
        "Ready",
        "Drifting",
        "DataQuality",
        "Age",
    ]


def test_cel_rules_are_carried() -> None:
    nodes = dict(_nodes(_schema()))
    rules = {
        rule["rule"]
        for _, node in nodes.items()
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert any("self.minReplicas <= self.maxReplicas" in rule for rule in rules)
    assert any("has(self.ingress) && has(self.gateway)" in rule for rule in rules)
    assert any("== 100" in rule for rule in rules)
    assert any("metadata.name.size()" in rule for rule in rules)
    assert any("has(self.rollout.shadow)" in rule and "gateway" in rule for rule in rules)
    assert any("self.rollout.shadow.percent == 100" in rule for rule in rules)


def test_the_yaml_parses_back_to_the_same_object() -> None:
    assert yaml.safe_load(render_crd_yaml()) == build_crd()


def test_peering_crd_is_not_stale() -> None:
    from modelfleet.operator.crd import render_peering_yaml

    assert (REPO / "crds" / "kopf-peering.yaml").read_text() == render_peering_yaml()


def test_the_kustomize_base_carries_the_same_crds() -> None:
    from modelfleet.operator.crd import render_peering_yaml

    bundled = (REPO / "manifests" / "operator" / "crds.yaml").read_text()
    assert bundled == render_crd_yaml() + "---\n" + render_peering_yaml(), "run `make crds`"
