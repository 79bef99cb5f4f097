"""Every YAML the project ships passes the API server's validation (server-side dry run against the
local control plane), and every kustomization builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))
IN_KUSTOMIZATIONS = {str(path) for folder in KUSTOMIZATIONS for path in folder.glob("*.yaml")}
STANDALONE = sorted(p for p in MANIFESTS.rglob("*.yaml") if str(p) not in IN_KUSTOMIZATIONS)


def _ensure_namespaces(cluster: Any, documents: list[dict[str, Any]]) -> None:
    """Create the namespaces the documents name (a dry run cannot create what it then uses)."""
    for name in sorted({d["metadata"].get("namespace") for d in documents} - {None}):
        if cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", name)


def _dry_run(cluster: Any, namespace: str, text: str) -> None:
    """Objects that name their namespace go there; the rest into the test's namespace."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert documents, "no objects"
    _ensure_namespaces(cluster, documents)
    named = [d for d in documents if d["metadata"].get("namespace")]
    unnamed = [d for d in documents if not d["metadata"].get("namespace")]
    for group, target in ((named, []), (unnamed, ["-n", namespace])):
        if not group:
            continue
        done = cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=manifest-check",
            "--dry-run=server",
            *target,
            "-f",
            "-",
            input=yaml.safe_dump_all(group),
            check=False,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_kustomization_builds_and_the_api_server_accepts_it(
    cluster: Any, operator_crds: None, namespace: str, folder: Path
) -> None:
    built = cluster.kubectl("kustomize", str(folder), check=False)
    assert built.returncode == 0, built.stderr
    _dry_run(cluster, namespace, built.stdout)


@pytest.mark.parametrize("path", STANDALONE, ids=lambda p: str(p.relative_to(REPO)))
def test_the_api_server_accepts_the_standalone_manifest(
    cluster: Any, operator_crds: None, namespace: str, path: Path
) -> None:
    _dry_run(cluster, namespace, path.read_text())


def test_there_is_something_to_check() -> None:
    assert len(KUSTOMIZATIONS) >= 2
    assert any(p.name == "argocd-cm-patch.yaml" for p in STANDALONE)
