"""Builds kubelet and kube-proxy for the real nodes from the control plane's Kubernetes modules.

The node module (hack/modelfleet_dev/realnode/gomod) pins the same k8s.io/kubernetes version with the same
staging replaces as hack/gomod/kubernetes. Its binaries live in a cache folder of their own,
keyed by that module and the Go version, so the control plane's build key does not change.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev.localcluster.build import (
    KUBERNETES_LDFLAGS,
    BuildError,
    _run_step,
    cached_build,
    module_build_key,
)
from modelfleet_dev.localcluster.paths import KUBERNETES_VERSION, cache_root

NODE_MODULE_DIR = Path(__file__).resolve().parent / "gomod"
NODE_BINARIES = ("kubelet", "kube-proxy")
_LABEL = f"kubelet, kube-proxy {KUBERNETES_VERSION}"
_PACKAGES = ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy")

__all__ = ["NODE_BINARIES", "BuildError", "NodeArtifacts", "build_node_binaries"]


def _say(message: str) -> None:
    print(f"[real-build] {message}", file=sys.stderr, flush=True)


def node_build_key() -> str:
    """Changes whenever the node module, the link flags or the Go version change."""
    return module_build_key("node", KUBERNETES_VERSION, NODE_MODULE_DIR, KUBERNETES_LDFLAGS)


@dataclass(frozen=True)
class NodeArtifacts:
    """Where one build of the node binaries lives."""

    root: Path

    @classmethod
    def current(cls) -> NodeArtifacts:
        return cls(cache_root() / node_build_key())

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def stamp(self) -> Path:
        return self.root / "complete.json"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def is_complete(self) -> bool:
        return self.stamp.is_file() and all(self.binary(n).is_file() for n in NODE_BINARIES)


def build_node_binaries(artifacts: NodeArtifacts | None = None) -> NodeArtifacts:
    """Build kubelet and kube-proxy into the cache unless they are there already."""
    return cached_build(
        artifacts or NodeArtifacts.current(),
        NodeArtifacts,
        _build_nodes,
        label=_LABEL,
        say=_say,
    )


def _build_nodes(staging: NodeArtifacts, logs: Path) -> dict[str, str]:
    _run_step(
        f"download modules for {_LABEL}",
        ["go", "mod", "download"],
        NODE_MODULE_DIR,
        logs / "download-node.log",
    )
    _say(f"building {_LABEL} (cold: several minutes; log in {logs / 'build-node.log'})")
    cmd = [
        "go",
        "build",
        "-trimpath",
        "-v",
        "-ldflags",
        KUBERNETES_LDFLAGS,
        "-o",
        str(staging.bin_dir) + "/",
        *_PACKAGES,
    ]
    _run_step(f"build {_LABEL}", cmd, NODE_MODULE_DIR, logs / "build-node.log")
    return {"kubernetes": KUBERNETES_VERSION}
