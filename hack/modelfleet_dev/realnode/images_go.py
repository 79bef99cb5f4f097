"""Static Go binaries for the real tier's images, each from a wrapper module of ours.

The wrapper modules live in hack/modelfleet_dev/realnode/images-gomod/<name>/ (not under hack/gomod/, whose
files key the control plane's build: a change here must not rebuild the control plane).
A binary is cached under `images/go/<name>-<key>/`, the key covering the Go version and the
module's files, and built only when missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev.localcluster.paths import go_version

from .images_run import content_key, images_dir, need_tool, run_step, say

GOMOD_DIR = Path(__file__).resolve().parent / "images-gomod"


@dataclass(frozen=True)
class GoBinary:
    """One command built with CGO_ENABLED=0 from the wrapper module `module` (default: `name`)."""

    name: str
    package: str
    ldflags: str = "-s -w"
    cold_hint: str = "seconds"
    module: str = ""

    @property
    def module_dir(self) -> Path:
        return GOMOD_DIR / (self.module or self.name)

    def key(self) -> str:
        files = [p for p in self.module_dir.iterdir() if p.suffix in {".mod", ".sum", ".go"}]
        return content_key(go_version(), self.package, self.ldflags, files=files)

    def path(self) -> Path:
        return images_dir() / "go" / f"{self.name}-{self.key()}" / self.name


def older_builds(folder: Path, name: str) -> list[Path]:
    """The builds of `name` under `folder` (`<name>-<key>`), not those of another binary whose
    name starts with it (prometheus-operator beside prometheus)."""
    return [path for path in folder.glob(f"{name}-*") if path.name.rpartition("-")[0] == name]


def ensure_binary(binary: GoBinary, logs: Path) -> Path:
    """The binary's cached path, built first if missing (the caller holds the images lock)."""
    target = binary.path()
    if target.is_file():
        say(f"cached: {binary.name} binary ({target.parent.name})")
        return target
    need_tool("go", "install Go 1.26 or newer")
    env = {**os.environ, "CGO_ENABLED": "0"}
    run_step(
        f"download modules for {binary.name}",
        ["go", "mod", "download"],
        logs / f"go-download-{binary.name}.log",
        cwd=binary.module_dir,
        env=env,
    )
    say(f"building {binary.name} with {go_version()} (cold: {binary.cold_hint})")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{binary.name}-", dir=target.parent.parent))
    try:
        cmd = ["go", "build", "-trimpath", "-v", "-ldflags", binary.ldflags]
        cmd += ["-o", str(staging / binary.name), binary.package]
        run_step(
            f"build {binary.name}",
            cmd,
            logs / f"go-build-{binary.name}.log",
            cwd=binary.module_dir,
            env=env,
        )
        for stale in older_builds(target.parent.parent, binary.name):
            shutil.rmtree(stale, ignore_errors=True)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users
        staging.rename(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


PAUSE = GoBinary("pause", ".")
TRAEFIK_VERSION = "v3.6.12"
TRAEFIK = GoBinary(
    "traefik",
    "github.com/traefik/traefik/v3/cmd/traefik",
    ldflags=f"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK_VERSION}",
    cold_hint="about 6 minutes on 2 cores",
)
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
_PO_VERSION_FLAGS = " ".join(
    f"-X github.com/prometheus/common/version.{name}={value}"
    for name, value in (("Version", PROMETHEUS_OPERATOR_VERSION.lstrip("v")), ("Branch", "local"))
)
PROMETHEUS_OPERATOR = GoBinary(
    "prometheus-operator",
    "github.com/prometheus-operator/prometheus-operator/cmd/operator",
    ldflags=f"-s -w {_PO_VERSION_FLAGS}",
    cold_hint="about 2 minutes on 2 cores",
    module="prometheus-operator",
)
PROMETHEUS_CONFIG_RELOADER = GoBinary(
    "prometheus-config-reloader",
    "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader",
    ldflags=f"-s -w {_PO_VERSION_FLAGS}",
    cold_hint="about 1 minute on 2 cores",
    module="prometheus-operator",
)
# Prometheus at the version prometheus-operator v0.85.0's module graph requires (module
# github.com/prometheus/prometheus v0.305.0 is Prometheus 3.5.0). That version has no per-plugin
# build tags (plugins/plugins.go imports every service discovery unconditionally), so the
# binary carries them all; the real tier uses Kubernetes' (a PodMonitor's role: pod).
PROMETHEUS_VERSION = "v3.5.0"
_PROMETHEUS_VERSION_FLAGS = " ".join(
    f"-X github.com/prometheus/common/version.{name}={value}"
    for name, value in (("Version", PROMETHEUS_VERSION.lstrip("v")), ("Branch", "local"))
)
PROMETHEUS = GoBinary(
    "prometheus",
    "github.com/prometheus/prometheus/cmd/prometheus",
    ldflags=f"-s -w {_PROMETHEUS_VERSION_FLAGS}",
    cold_hint="about 5 minutes on 2 cores",
)
