"""Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from Go modules.

The binaries, the CRD YAML of other projects and kwok's stages land in a cache outside the
repository keyed by the pinned versions (see `paths.build_key`): a second build is instant.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from .paths import (
    CRD_SOURCES,
    ETCD_VERSION,
    GOMOD_DIR,
    KUBERNETES_VERSION,
    KWOK_STAGE_FILES,
    KWOK_VERSION,
    Artifacts,
    go_version,
)

_K8S_VERSION_PKG = "k8s.io/component-base/version"
_MINOR = KUBERNETES_VERSION.split(".")[1]
KUBERNETES_LDFLAGS = " ".join(
    [
        "-s -w",
        f"-X {_K8S_VERSION_PKG}.gitVersion={KUBERNETES_VERSION}",
        f"-X {_K8S_VERSION_PKG}.gitMajor=1",
        f"-X {_K8S_VERSION_PKG}.gitMinor={_MINOR}",
        f"-X {_K8S_VERSION_PKG}.gitTreeState=clean",
    ]
)

# (label, module folder under hack/gomod, packages, output: folder when several, else file)
_BUILDS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("etcd " + ETCD_VERSION, "etcd", (".",), "etcd"),
    ("kwok " + KWOK_VERSION, "kwok", ("sigs.k8s.io/kwok/cmd/kwok",), "kwok"),
    (
        "kube-apiserver, kube-controller-manager, kube-scheduler " + KUBERNETES_VERSION,
        "kubernetes",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
        ),
        "",
    ),
)


class BuildError(RuntimeError):
    """A step of the build failed; the message names the step and shows the tool's output."""


def _say(message: str) -> None:
    print(f"[cluster-build] {message}", file=sys.stderr, flush=True)


def _run_step(step: str, cmd: Sequence[str], cwd: Path, log: Path) -> None:
    """Run one go command, print a progress line every 15 s, raise BuildError on failure."""
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def progress() -> None:
            while not done.wait(15):
                lines = sum(1 for _ in log.open(errors="replace"))
                _say(
                    f"  … {step}: {time.monotonic() - started:.0f}s, {lines} packages/lines so far"
                )

        ticker = threading.Thread(target=progress, daemon=True)
        ticker.start()
        code = proc.wait()
        done.set()
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise BuildError(f"{step} failed (exit {code}); last lines of {log}:\n{tail}")
    _say(f"  {step}: done in {time.monotonic() - started:.0f}s")


def _module_dir(module_at_version: str, work: Path) -> Path:
    """Download one module (not a dependency of ours) and return its folder in the module cache."""
    log = work / ("download-" + module_at_version.replace("/", "_") + ".log")
    _run_step(
        f"download {module_at_version}",
        ["go", "mod", "download", "-json", module_at_version],
        work,
        log,
    )
    info = json.loads(log.read_text())
    if info.get("Error"):
        raise BuildError(f"download {module_at_version} failed: {info['Error']}")
    return Path(info["Dir"])


def _build_binaries(bin_dir: Path, work: Path) -> None:
    for label, folder, packages, output in _BUILDS:
        module = GOMOD_DIR / folder
        _run_step(
            f"download modules for {label}",
            ["go", "mod", "download"],
            module,
            work / f"download-{folder}.log",
        )
        target = str(bin_dir / output) if output else str(bin_dir) + os.sep
        ldflags = KUBERNETES_LDFLAGS if folder == "kubernetes" else "-s -w"
        cmd = ["go", "build", "-trimpath", "-v", "-ldflags", ldflags, "-o", target, *packages]
        _say(f"building {label} (cold: several minutes; log in {work / f'build-{folder}.log'})")
        _run_step(f"build {label}", cmd, module, work / f"build-{folder}.log")


def _collect_yaml(crd_dir: Path, stages: Path, work: Path) -> None:
    crd_dir.mkdir(parents=True, exist_ok=True)
    for module_at_version, folder, files in CRD_SOURCES:
        source = _module_dir(module_at_version, work) / folder
        for name in files:
            if not (source / name).is_file():
                raise BuildError(f"CRD {name} not found in {module_at_version}/{folder}")
            shutil.copyfile(source / name, crd_dir / name)
    kwok_dir = _module_dir(f"sigs.k8s.io/kwok@{KWOK_VERSION}", work)
    docs = [(kwok_dir / name).read_text().strip() for name in KWOK_STAGE_FILES]
    stages.write_text("\n---\n".join(docs) + "\n")


class BuildTarget(Protocol):
    """A cache folder that one build fills: complete once its stamp and outputs are there."""

    @property
    def root(self) -> Path: ...

    @property
    def stamp(self) -> Path: ...

    def is_complete(self) -> bool: ...


Target = TypeVar("Target", bound=BuildTarget)


def cached_build(
    target: Target,
    at: Callable[[Path], Target],
    build_into: Callable[[Target, Path], dict[str, str]],
    *,
    label: str,
    say: Callable[[str], None],
) -> Target:
    """Return `target` if complete, else build it under a lock the way every cache build goes.

    `at(folder)` is the same kind of target in another folder; `build_into(staging, logs)` fills
    a staging folder next to the cache and returns the pinned versions for the stamp. The stamp
    is written last and the staging folder renamed into place, so a half build is never complete.
    """
    if target.is_complete():
        say(f"cached: {target.root}")
        return target
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain (`go`) is not on PATH; install Go 1.26 or newer")
    target.root.parent.mkdir(parents=True, exist_ok=True)
    with open(target.root.parent / f"{target.root.name}.lock", "w") as lock:
        say(f"waiting for the build lock of {target.root.name} …")
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_complete():  # built by someone else while we waited
            say(f"cached: {target.root}")
            return target
        started = time.monotonic()
        for stale in target.root.parent.glob(target.root.name + ".*"):
            if stale.is_dir():  # a failed or interrupted earlier build (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
        staging = at(Path(tempfile.mkdtemp(prefix=target.root.name + ".", dir=target.root.parent)))
        logs = staging.root / "logs"
        logs.mkdir(parents=True)
        say(f"building {label} with {go_version()} into {target.root}")
        pins = build_into(staging, logs)
        elapsed = time.monotonic() - started
        staging.stamp.write_text(
            json.dumps(
                {
                    **pins,
                    "go": go_version(),
                    "build_seconds": round(elapsed, 1),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
        )
        if target.root.exists():
            shutil.rmtree(target.root)
        staging.root.rename(target.root)
        say(f"built in {elapsed:.0f}s: {target.root}")
        return target


def build(artifacts: Artifacts | None = None) -> Artifacts:
    """Build everything into the cache unless it is already there; returns where it is."""
    return cached_build(
        artifacts or Artifacts.current(),
        Artifacts,
        _build_control_plane,
        label="the local control plane",
        say=_say,
    )


def _build_control_plane(staging: Artifacts, logs: Path) -> dict[str, str]:
    _collect_yaml(staging.crd_dir, staging.kwok_stages, logs)
    _build_binaries(staging.bin_dir, logs)
    return {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION, "kwok": KWOK_VERSION}


def module_build_key(name: str, version: str, module_dir: Path, ldflags: str) -> str:
    """`<name>-<version>-<hash>`: changes whenever the Go version, the link flags or a file of the
    pinned module (`module_dir`'s go.mod, go.sum, *.go) changes."""
    digest = hashlib.sha256(go_version().encode())
    digest.update(ldflags.encode())
    for path in sorted(module_dir.iterdir()):
        if path.is_file() and path.suffix in {".mod", ".sum", ".go"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return f"{name}-{version}-{digest.hexdigest()[:10]}"
