"""Builds kubelet and kube-proxy for the real nodes from the control plane's Kubernetes modules.

The node module (hack/realnode/gomod) pins the same k8s.io/kubernetes version with the same
staging replaces as hack/gomod/kubernetes. Its binaries live in a cache folder of their own,
keyed by that module and the Go version, so the control plane's build key does not change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster.build import KUBERNETES_LDFLAGS, BuildError, _run_step
from localcluster.paths import KUBERNETES_VERSION, cache_root, go_version

NODE_MODULE_DIR = Path(__file__).resolve().parent / "gomod"
NODE_BINARIES = ("kubelet", "kube-proxy")
_PACKAGES = ("k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy")

__all__ = ["NODE_BINARIES", "BuildError", "NodeArtifacts", "build_node_binaries"]


def _say(message: str) -> None:
    print(f"[real-build] {message}", file=sys.stderr, flush=True)


def node_build_key() -> str:
    """Changes whenever the node module, the link flags or the Go version change."""
    digest = hashlib.sha256(go_version().encode())
    digest.update(KUBERNETES_LDFLAGS.encode())
    for path in sorted(NODE_MODULE_DIR.iterdir()):
        if path.is_file() and path.suffix in {".mod", ".sum", ".go"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return f"node-{KUBERNETES_VERSION}-{digest.hexdigest()[:10]}"


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
    artifacts = artifacts or NodeArtifacts.current()
    if artifacts.is_complete():
        _say(f"cached: {artifacts.root}")
        return artifacts
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain (`go`) is not on PATH; install Go 1.26 or newer")
    artifacts.root.parent.mkdir(parents=True, exist_ok=True)
    with open(artifacts.root.parent / f"{artifacts.root.name}.lock", "w") as lock:
        _say(f"waiting for the build lock of {artifacts.root.name} …")
        fcntl.flock(lock, fcntl.LOCK_EX)
        if artifacts.is_complete():  # built by someone else while we waited
            _say(f"cached: {artifacts.root}")
            return artifacts
        return _build_locked(artifacts)


def _build_locked(artifacts: NodeArtifacts) -> NodeArtifacts:
    started = time.monotonic()
    for stale in artifacts.root.parent.glob(artifacts.root.name + ".*"):
        if stale.is_dir():  # a failed or interrupted earlier build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
    staging = NodeArtifacts(
        Path(tempfile.mkdtemp(prefix=artifacts.root.name + ".", dir=artifacts.root.parent))
    )
    logs = staging.root / "logs"
    logs.mkdir(parents=True)
    label = f"kubelet, kube-proxy {KUBERNETES_VERSION}"
    _say(f"building {label} with {go_version()} into {artifacts.root}")
    _run_step(
        f"download modules for {label}",
        ["go", "mod", "download"],
        NODE_MODULE_DIR,
        logs / "download-node.log",
    )
    _say(f"building {label} (cold: several minutes; log in {logs / 'build-node.log'})")
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
    _run_step(f"build {label}", cmd, NODE_MODULE_DIR, logs / "build-node.log")
    elapsed = time.monotonic() - started
    staging.stamp.write_text(
        json.dumps(
            {
                "kubernetes": KUBERNETES_VERSION,
                "go": go_version(),
                "build_seconds": round(elapsed, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    if artifacts.root.exists():
        shutil.rmtree(artifacts.root)
    staging.root.rename(artifacts.root)
    _say(f"built in {elapsed:.0f}s: {artifacts.root}")
    return artifacts
