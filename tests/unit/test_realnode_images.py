"""The real tier's image recipes (hack/modelfleet_dev/realnode/images*.py) and what our Dockerfiles promise them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from modelfleet_dev.realnode import images, images_base, images_run

REPO = Path(__file__).resolve().parents[2]


def _final_stage(dockerfile: str) -> str:
    return (REPO / dockerfile).read_text().rsplit("\nFROM ", 1)[1]


def test_the_server_image_owns_its_cache_folder() -> None:
    """Without a volume the server writes into the image's own folder: it must be its user's."""
    stage = _final_stage("Dockerfile.server")
    (user,) = re.findall(r"^USER (\d+)$", stage, re.M)
    (cache_dir,) = re.findall(r"MODELFLEET_CACHE_DIR=(\S+)", stage)
    created = re.findall(r"install -d -o (\d+) -g (\d+) -m 0?755 (\S+)", stage)
    assert (user, user, cache_dir) in created


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.operator"])
def test_the_base_is_a_build_argument_defaulting_to_python_slim(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    assert "ARG BASE=python:3.11-slim" in text.split("\nFROM ", 1)[0]
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == ["${BASE}", "${BASE}"]


def test_copied_sources_are_the_build_context_paths() -> None:
    text = (
        "FROM x AS build\nCOPY pyproject.toml README.md ./\n"
        "COPY --chown=1:1 server/ modelfleet/server/\nADD a \\\n  b /dst/\n"
        "FROM x\nCOPY --from=build /opt/venv /opt/venv\n"
    )
    assert images.copied_sources(text) == ["pyproject.toml", "README.md", "server", "a", "b"]
    server = images.copied_sources((REPO / "Dockerfile.server").read_text())
    assert {"pyproject.toml", "README.md", "server", "operator"} <= set(server)


def test_a_dockerfile_images_key_follows_its_inputs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM ${BASE}\nCOPY app/ /app/\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "unrelated.txt").write_text("a\n")
    monkeypatch.setattr(images, "REPO_DIR", tmp_path)
    monkeypatch.setattr(images, "base_key", lambda: "base-1")
    recipe = images.DockerfileImage("localhost/x:dev", "Dockerfile")
    first = recipe.key()
    (tmp_path / "unrelated.txt").write_text("b\n")
    assert recipe.key() == first
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    second = recipe.key()
    assert second != first
    monkeypatch.setattr(images, "base_key", lambda: "base-2")
    assert recipe.key() not in {first, second}


def test_archives_live_under_the_local_clusters_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_LOCALCLUSTER_CACHE", str(tmp_path))
    path = images.archive_path(images.PAUSE_REF)
    assert path.parent == tmp_path / "images"
    assert re.fullmatch(r"modelfleet-pause_1-[0-9a-f]{12}\.oci\.tar", path.name)


def test_unknown_refs_are_refused_before_anything_is_built() -> None:
    with pytest.raises(images_run.ImageBuildError, match="no recipe"):
        images.ensure_images(["localhost/nope:1"])


def test_the_debian_mirror_comes_from_apt_sources_in_either_format() -> None:
    deb822 = (
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.test/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert images_base._deb822_uris(deb822, "bookworm") == ["http://mirror.test/debian"]
    one_line = "deb-src http://src.test/debian bookworm main\ndeb [arch=amd64] http://m.test/d bookworm main\n"
    assert images_base._one_line_uris(one_line, "bookworm") == ["http://m.test/d"]
