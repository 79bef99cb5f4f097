"""The cache build shared by the control plane and the real nodes (localcluster.build.cached_build)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from modelfleet_dev.localcluster.build import BuildError, cached_build
from modelfleet_dev.localcluster.paths import Artifacts
from modelfleet_dev.realnode.build import NodeArtifacts


def _fill(staging: NodeArtifacts, logs: Path) -> dict[str, str]:
    assert logs.is_dir()
    assert logs.parent == staging.root
    staging.bin_dir.mkdir()
    for name in ("kubelet", "kube-proxy"):
        staging.binary(name).write_text(name)
    return {"kubernetes": "v-test"}


def test_a_build_lands_complete_with_a_stamp_and_clears_stale_staging(tmp_path: Path) -> None:
    target = NodeArtifacts(tmp_path / "node-key")
    stale = tmp_path / "node-key.abandoned"
    (stale / "bin").mkdir(parents=True)
    said: list[str] = []
    assert cached_build(target, NodeArtifacts, _fill, label="nodes", say=said.append) == target
    assert target.is_complete()
    stamp = json.loads(target.stamp.read_text())
    assert list(stamp) == ["kubernetes", "go", "build_seconds", "built_at"]
    assert stamp["kubernetes"] == "v-test"
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-key", "node-key.lock"]
    assert said[-1].startswith("built in ")


def test_a_complete_target_is_not_built_again(tmp_path: Path) -> None:
    target = NodeArtifacts(tmp_path / "node-key")
    cached_build(target, NodeArtifacts, _fill, label="nodes", say=lambda _: None)

    def refuse(staging: NodeArtifacts, logs: Path) -> dict[str, str]:
        raise AssertionError("rebuilt a complete target")

    said: list[str] = []
    cached_build(target, NodeArtifacts, refuse, label="nodes", say=said.append)
    assert said == [f"cached: {target.root}"]


def test_a_failed_build_leaves_nothing_complete(tmp_path: Path) -> None:
    target = Artifacts(tmp_path / "k8s-key")

    def fail(staging: Artifacts, logs: Path) -> dict[str, str]:
        raise BuildError("step failed")

    with pytest.raises(BuildError, match="step failed"):
        cached_build(target, Artifacts, fail, label="cp", say=lambda _: None)
    assert not target.root.exists()
    assert not target.is_complete()


def test_without_go_the_build_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(BuildError, match="Go toolchain"):
        cached_build(NodeArtifacts(tmp_path / "k"), NodeArtifacts, _fill, label="n", say=print)
