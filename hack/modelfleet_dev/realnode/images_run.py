"""What the image builds share: progress lines, running a step with a log, content keys, buildah.

Every build lands in `<localcluster cache root>/images/`, named by a key over its inputs'
content, so a second `ensure_images()` is instant and a changed input rebuilds only what uses it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from modelfleet_dev import REPO_DIR
from modelfleet_dev.localcluster.paths import cache_root


class ImageBuildError(RuntimeError):
    """A step of an image build failed; the message names the step and shows the tool's output."""


def images_dir() -> Path:
    """The folder of every image build: archives, Go binaries, logs and the build lock."""
    return cache_root() / "images"


def say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def need_tool(name: str, hint: str) -> None:
    if shutil.which(name) is None:
        raise ImageBuildError(f"`{name}` is not on PATH: {hint}")


def run_step(
    step: str,
    cmd: Sequence[str],
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run one command with its output in `log`, a progress line every 15 s; returns the output."""
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        done = threading.Event()

        def progress() -> None:
            while not done.wait(15):
                with log.open(errors="replace") as text:
                    lines = sum(1 for _ in text)
                say(
                    f"  … {step}: {time.monotonic() - started:.0f}s, {lines} lines of output so far"
                )

        threading.Thread(target=progress, daemon=True).start()
        code = proc.wait()
        done.set()
    output = log.read_text(errors="replace")
    if code != 0:
        tail = "".join(output.splitlines(keepends=True)[-30:])
        raise ImageBuildError(f"{step} failed (exit {code}); last lines of {log}:\n{tail}")
    say(f"  {step}: done in {time.monotonic() - started:.0f}s")
    return output


def content_key(*parts: bytes | str, files: Iterable[Path] = ()) -> str:
    """A short digest of some strings and of files' names (relative to the repo) and bytes."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    for path in sorted(set(files)):
        name = path.relative_to(REPO_DIR) if path.is_relative_to(REPO_DIR) else path
        digest.update(str(name).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def tree_files(root: Path) -> list[Path]:
    """Every file under `root` (or `root` itself), without bytecode caches."""
    if root.is_file():
        return [root]
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def buildah(*args: str) -> str:
    """Run one quick buildah command and return its stdout (stripped)."""
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageBuildError(f"buildah {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def image_exists(ref: str) -> bool:
    return image_id(ref) is not None


def image_id(ref: str) -> str | None:
    """The ID of the image `ref` names in buildah's storage, if any."""
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def drop_image(image: str) -> None:
    """Remove an image a rebuild left without a name (best effort: a container may use it)."""
    subprocess.run(["buildah", "rmi", image], capture_output=True, check=False)


def push_archive(ref: str, archive: Path, log: Path) -> None:
    """Write `ref` from buildah's storage to an OCI archive (for `ctr images import`), atomically."""
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    run_step(f"archive {ref}", ["buildah", "push", ref, f"oci-archive:{partial}:{ref}"], log)
    partial.rename(archive)
