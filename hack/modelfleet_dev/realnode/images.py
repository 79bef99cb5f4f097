"""The real tier's container images, built locally and kept as OCI archives for containerd.

    localhost/modelfleet-pause:1                 the pod sandbox: a static Go program, from scratch
    localhost/traefik:v3.6.12                    Traefik built from its Go module, from scratch
    localhost/modelfleet-server:dev              Dockerfile.server   } buildah bud on a
    localhost/modelfleet-operator:dev            Dockerfile.operator } debootstrap base
    localhost/prometheus-operator:v0.85.0        } from prometheus-operator's Go module,
    localhost/prometheus-config-reloader:v0.85.0 } from scratch
    localhost/prometheus:v3.5.0                  Prometheus' Go module, on the debootstrap base

The last three are the real tier's Prometheus, run by prometheus-operator (prometheus.py).

`ensure_images()` builds what is missing or stale and returns one archive per image, for
`ctr -n k8s.io images import`. Archives live in `<localcluster cache root>/images/`, named by
a key over their inputs (Dockerfile, the files it copies, the base recipe, Go module files).
Command line: `PYTHONPATH=hack python -m modelfleet_dev.realnode.images [REF …]` (`make images`); realnode's
own CLI can offer it as `python -m modelfleet_dev.realnode images …` by handing the rest to `main(argv)`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev import REPO_DIR

from .images_base import base_key, ensure_base
from .images_go import (
    PAUSE,
    PROMETHEUS,
    PROMETHEUS_CONFIG_RELOADER,
    PROMETHEUS_OPERATOR,
    PROMETHEUS_OPERATOR_VERSION,
    PROMETHEUS_VERSION,
    TRAEFIK,
    TRAEFIK_VERSION,
    GoBinary,
    ensure_binary,
)
from .images_run import (
    ImageBuildError,
    buildah,
    content_key,
    drop_image,
    image_id,
    images_dir,
    need_tool,
    push_archive,
    run_step,
    say,
    tree_files,
)

PAUSE_REF = "localhost/modelfleet-pause:1"
TRAEFIK_REF = f"localhost/traefik:{TRAEFIK_VERSION}"
SERVER_REF = "localhost/modelfleet-server:dev"
OPERATOR_REF = "localhost/modelfleet-operator:dev"
# Prometheus through prometheus-operator on the real tier (prometheus.py): the operator, the
# config reloader it adds to the Prometheus pod, and Prometheus (spec.version v3.5.0).
PROMETHEUS_OPERATOR_REF = f"localhost/prometheus-operator:{PROMETHEUS_OPERATOR_VERSION}"
PROMETHEUS_CONFIG_RELOADER_REF = (
    f"localhost/prometheus-config-reloader:{PROMETHEUS_OPERATOR_VERSION}"
)
PROMETHEUS_REF = f"localhost/prometheus:{PROMETHEUS_VERSION}"
PROMETHEUS_REFS = (PROMETHEUS_OPERATOR_REF, PROMETHEUS_CONFIG_RELOADER_REF, PROMETHEUS_REF)
ALL_REFS = (PAUSE_REF, TRAEFIK_REF, SERVER_REF, OPERATOR_REF, *PROMETHEUS_REFS)


@dataclass(frozen=True)
class ImageArchive:
    """One image as an OCI archive whose index names it `ref`."""

    ref: str
    archive: Path


@dataclass(frozen=True)
class ScratchImage:
    """A static Go binary alone in an empty image, at `path` (its entrypoint)."""

    ref: str
    binary: GoBinary
    user: str
    path: str

    def key(self) -> str:
        return content_key("scratch", self.ref, self.user, self.path, self.binary.key())

    def build(self, logs: Path) -> None:
        binary = ensure_binary(self.binary, logs)
        container = buildah("from", "scratch")
        try:
            buildah("copy", "--chmod", "0755", container, str(binary), self.path)
            entrypoint = json.dumps([self.path])
            buildah("config", "--entrypoint", entrypoint, "--user", self.user, container)
            buildah("commit", "--quiet", container, self.ref)
        finally:
            buildah("rm", container)


@dataclass(frozen=True)
class DockerfileImage:
    """One of our Dockerfiles built with buildah on the local base (its `BASE` argument)."""

    ref: str
    dockerfile: str

    def key(self) -> str:
        sources = [REPO_DIR / self.dockerfile]
        for source in copied_sources((REPO_DIR / self.dockerfile).read_text()):
            sources.extend(tree_files(REPO_DIR / source))
        return content_key(self.ref, base_key(), files=sources)

    def build(self, logs: Path) -> None:
        base = ensure_base(logs)
        cmd = ["buildah", "bud", "--pull=never", "--isolation", "chroot"]
        cmd += ["--build-arg", f"BASE={base}", "-f", self.dockerfile, "-t", self.ref, "."]
        say(f"building {self.ref} from {self.dockerfile} ({shlex.join(cmd)})")
        run_step(f"build {self.ref}", cmd, logs / f"bud-{slug(self.ref)}.log", cwd=REPO_DIR)


@dataclass(frozen=True)
class BaseGoImage:
    """A static Go binary at `path` (its entrypoint) on the local debootstrap base, with
    `workdir` made for the image's user, as upstream images of the command have it."""

    ref: str
    binary: GoBinary
    user: str
    path: str
    workdir: str

    def key(self) -> str:
        parts = (self.user, self.path, self.workdir, self.binary.key())
        return content_key("base", self.ref, *parts, base_key())

    def build(self, logs: Path) -> None:
        binary = ensure_binary(self.binary, logs)
        base = ensure_base(logs)
        container = buildah("from", "--pull=never", base)
        try:
            buildah("copy", "--chmod", "0755", container, str(binary), self.path)
            uid, _, gid = self.user.partition(":")
            script = f"install -d -o {uid} -g {gid} {self.workdir}"
            buildah("run", "--isolation", "chroot", container, "--", "sh", "-c", script)
            entrypoint = json.dumps([self.path])
            buildah("config", "--entrypoint", entrypoint, "--cmd", "", container)
            buildah("config", "--user", self.user, "--workingdir", self.workdir, container)
            buildah("commit", "--quiet", container, self.ref)
        finally:
            buildah("rm", container)


Recipe = ScratchImage | DockerfileImage | BaseGoImage

RECIPES: dict[str, Recipe] = {
    PAUSE_REF: ScratchImage(PAUSE_REF, PAUSE, user="65535:65535", path="/pause"),
    TRAEFIK_REF: ScratchImage(TRAEFIK_REF, TRAEFIK, user="65532:65532", path="/traefik"),
    SERVER_REF: DockerfileImage(SERVER_REF, "Dockerfile.server"),
    OPERATOR_REF: DockerfileImage(OPERATOR_REF, "Dockerfile.operator"),
    PROMETHEUS_OPERATOR_REF: ScratchImage(
        PROMETHEUS_OPERATOR_REF, PROMETHEUS_OPERATOR, user="65534:65534", path="/bin/operator"
    ),
    # the path prometheus-operator gives as the reloader container's command
    PROMETHEUS_CONFIG_RELOADER_REF: ScratchImage(
        PROMETHEUS_CONFIG_RELOADER_REF,
        PROMETHEUS_CONFIG_RELOADER,
        user="65534:65534",
        path="/bin/prometheus-config-reloader",
    ),
    # upstream's image: /bin/prometheus, user nobody, data in /prometheus (the operator passes
    # only arguments, and mounts the data volume there)
    PROMETHEUS_REF: BaseGoImage(
        PROMETHEUS_REF,
        PROMETHEUS,
        user="65534:65534",
        path="/bin/prometheus",
        workdir="/prometheus",
    ),
}


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY/ADD lines read (not `--from` stage copies)."""
    text = dockerfile.replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        flags = [w for w in words[1:] if w.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(a.rstrip("/") for a in args[:-1])
    return sources


def slug(ref: str) -> str:
    return ref.removeprefix("localhost/").replace("/", "_").replace(":", "_")


def archive_path(ref: str) -> Path:
    return images_dir() / f"{slug(ref)}-{RECIPES[ref].key()}.oci.tar"


def ensure_images(refs: Iterable[str] | None = None) -> list[ImageArchive]:
    """Build what is missing or stale among `refs` (default: ALL_REFS); one archive each."""
    wanted = list(ALL_REFS if refs is None else refs)
    unknown = [ref for ref in wanted if ref not in RECIPES]
    if unknown:
        raise ImageBuildError(f"no recipe for {unknown}; known: {list(RECIPES)}")
    images_dir().mkdir(parents=True, exist_ok=True)
    result = [ImageArchive(ref, archive_path(ref)) for ref in wanted]
    if all(image.archive.is_file() for image in result):
        return result
    need_tool("buildah", "apt-get install buildah (hack/setup-real.sh does)")
    with open(images_dir() / ".lock", "w") as lock:
        say("waiting for the images build lock …")
        fcntl.flock(lock, fcntl.LOCK_EX)
        for image in result:
            _ensure_one(image)
    return result


def _ensure_one(image: ImageArchive) -> None:
    if image.archive.is_file():  # also when built by someone else while we waited
        say(f"cached: {image.ref} ({image.archive.name})")
        return
    started = time.monotonic()
    logs = images_dir() / "logs"
    previous = image_id(image.ref)
    RECIPES[image.ref].build(logs)
    if previous is not None and previous != image_id(image.ref):
        drop_image(previous)  # the storage keeps one build per ref
    push_archive(image.ref, image.archive, logs / f"push-{slug(image.ref)}.log")
    for stale in images_dir().glob(f"{slug(image.ref)}-*.oci.tar"):
        if stale != image.archive:
            stale.unlink()
    size_mb = image.archive.stat().st_size / 1e6
    say(
        f"built {image.ref} in {time.monotonic() - started:.0f}s: {image.archive} ({size_mb:.0f} MB)"
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m modelfleet_dev.realnode images [REF …]`: build what is missing, print `ref<TAB>archive`."""
    parser = argparse.ArgumentParser(prog="realnode images", description=__doc__.split("\n")[0])
    parser.add_argument("refs", nargs="*", help=f"images to build (default: all of {ALL_REFS})")
    args = parser.parse_args(argv)
    try:
        images = ensure_images(args.refs or None)
    except ImageBuildError as error:
        print(f"[images] FAILED: {error}", file=sys.stderr)
        return 1
    for image in images:
        print(f"{image.ref}\t{image.archive}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
