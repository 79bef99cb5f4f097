"""Builds the helm CLI (helm.sh/helm/v4, pinned in hack/helm/go.mod) into the binary cache.

Same path as the control plane's binaries (`build.cached_build`): a cache folder keyed by the
module and the Go version, filled under a lock and stamped last. The module lives outside
hack/gomod so that pinning helm leaves the control plane's build key alone.
`python -m modelfleet_dev.localcluster.helm` builds it (hack/setup.sh) and prints the binary's path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev import HACK_DIR

from .build import _run_step, cached_build, module_build_key
from .paths import cache_root

HELM_MODULE_DIR = HACK_DIR / "helm"
HELM_VERSION = "v4.3.2"
HELM_LDFLAGS = f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
_LABEL = f"helm {HELM_VERSION}"


def _say(message: str) -> None:
    print(f"[helm-build] {message}", file=sys.stderr, flush=True)


def helm_build_key() -> str:
    """Changes whenever the helm module, the link flags or the Go version change."""
    return module_build_key("helm", HELM_VERSION, HELM_MODULE_DIR, HELM_LDFLAGS)


@dataclass(frozen=True)
class HelmArtifacts:
    """Where one build of helm lives."""

    root: Path

    @classmethod
    def current(cls) -> HelmArtifacts:
        return cls(cache_root() / helm_build_key())

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "helm"

    @property
    def stamp(self) -> Path:
        return self.root / "complete.json"

    def is_complete(self) -> bool:
        return self.stamp.is_file() and self.binary.is_file()


def build_helm(artifacts: HelmArtifacts | None = None) -> HelmArtifacts:
    """Build helm into the cache unless it is there already."""
    return cached_build(
        artifacts or HelmArtifacts.current(), HelmArtifacts, _build, label=_LABEL, say=_say
    )


def _build(staging: HelmArtifacts, logs: Path) -> dict[str, str]:
    _run_step(
        f"download modules for {_LABEL}",
        ["go", "mod", "download"],
        HELM_MODULE_DIR,
        logs / "download-helm.log",
    )
    _say(f"building {_LABEL} (cold: a few minutes; log in {logs / 'build-helm.log'})")
    cmd = ["go", "build", "-trimpath", "-v", "-ldflags", HELM_LDFLAGS, "-o", str(staging.binary)]
    _run_step(
        f"build {_LABEL}",
        [*cmd, "helm.sh/helm/v4/cmd/helm"],
        HELM_MODULE_DIR,
        logs / "build-helm.log",
    )
    return {"helm": HELM_VERSION}


if __name__ == "__main__":
    print(build_helm().binary)
