"""The chart's generated parts are not stale, and its values table matches values.yaml.

Rendering and installing the chart: tests/integration/test_helm_chart.py and test_helm_install.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from modelfleet_dev.localcluster.helm import HELM_MODULE_DIR, HELM_VERSION, helm_build_key
from modelfleet_dev.localcluster.paths import GOMOD_DIR, build_key

from modelfleet.operator.crd import render_crd_yaml, render_peering_yaml
from tests.helm_chart import CHART, REPO

ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| `(?P<default>[^`]*)` \| .+ \|$")


def documented_keys(values_text: str) -> set[str]:
    """Dotted paths of the keys that a `# --` comment documents in values.yaml."""
    documented: set[str] = set()
    parents: list[tuple[int, str]] = []
    pending = False
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        parents = [(i, k) for i, k in parents if i < indent]
        path = ".".join([k for _, k in parents] + [key])
        if pending:
            documented.add(path)
        pending = False
        parents.append((indent, key))
    return documented


def leaves(values: dict[str, Any], documented: set[str], prefix: str = "") -> Iterator[str]:
    """Every key a user sets: documented keys as a whole, other maps key by key."""
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and path not in documented:
            yield from leaves(value, documented, path + ".")
        else:
            yield path


def lookup(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def table_rows(readme: str) -> dict[str, str]:
    return {m["key"]: m["default"] for m in map(ROW.match, readme.splitlines()) if m}


def test_every_value_is_documented_in_values_yaml() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = documented_keys(text)
    assert set(leaves(yaml.safe_load(text), documented)) == documented


def test_the_readme_table_lists_every_value_with_its_default() -> None:
    values_text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    rows = table_rows((CHART / "README.md").read_text())
    assert list(rows) == list(leaves(values, documented_keys(values_text)))
    for key, default in rows.items():
        assert json.loads(default) == lookup(values, key), f"{key}: README and values.yaml differ"


def test_the_table_check_notices_a_missing_row_and_a_changed_default() -> None:
    values_text = "# -- a\nreplicas: 2\nimage:\n  # -- b\n  tag: ''\n"
    values = yaml.safe_load(values_text)
    documented = documented_keys(values_text)
    assert documented == {"replicas", "image.tag"}
    rows = table_rows("| `replicas` | `3` | a |")
    assert list(rows) != list(leaves(values, documented))
    assert json.loads(rows["replicas"]) != lookup(values, "replicas")


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("modeldeployments.modelfleet.io.yaml", render_crd_yaml),
        ("kopf-peering.yaml", render_peering_yaml),
    ],
)
def test_the_chart_crds_are_the_generators_output(name: str, render: Any) -> None:
    assert (CHART / "crds" / name).read_text() == render(), "run `make crds`"


def test_the_chart_crds_folder_holds_nothing_else() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [
        "kopf-peering.yaml",
        "modeldeployments.modelfleet.io.yaml",
    ]


@pytest.mark.parametrize("name", ["prometheusrule.yaml", "dashboard.json"])
def test_the_chart_monitoring_files_are_the_manifests(name: str) -> None:
    copied = (CHART / "files" / name).read_bytes()
    assert copied == (REPO / "manifests" / "monitoring" / name).read_bytes(), (
        "run `make chart-files`"
    )


def test_helm_is_pinned_apart_from_the_control_planes_build_key() -> None:
    # build_key hashes every Go file under hack/gomod: helm there would rebuild the control plane
    assert not HELM_MODULE_DIR.is_relative_to(GOMOD_DIR)
    assert f"require helm.sh/helm/v4 {HELM_VERSION}\n" in (HELM_MODULE_DIR / "go.mod").read_text()
    assert helm_build_key().startswith(f"helm-{HELM_VERSION}-")
    assert helm_build_key() != build_key()
