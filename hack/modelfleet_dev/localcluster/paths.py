"""Pinned versions and where the built binaries live (a cache outside the repository)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from modelfleet_dev import HACK_DIR

GOMOD_DIR = HACK_DIR / "gomod"

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"
KWOK_VERSION = "v0.8.0"

# Other projects' CRDs, shipped as YAML inside their Go modules: (module@version, folder, files).
CRD_SOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "sigs.k8s.io/gateway-api@v1.4.0",
        "config/crd/standard",
        (
            "gateway.networking.k8s.io_gatewayclasses.yaml",
            "gateway.networking.k8s.io_gateways.yaml",
            "gateway.networking.k8s.io_httproutes.yaml",
            "gateway.networking.k8s.io_grpcroutes.yaml",
            "gateway.networking.k8s.io_referencegrants.yaml",
        ),
    ),
    (
        "github.com/kedacore/keda/v2@v2.18.0",
        "config/crd/bases",
        ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"),
    ),
    (
        "github.com/prometheus-operator/prometheus-operator@v0.85.0",
        "example/prometheus-operator-crd",
        (
            "monitoring.coreos.com_podmonitors.yaml",
            "monitoring.coreos.com_servicemonitors.yaml",
            "monitoring.coreos.com_prometheusrules.yaml",
        ),
    ),
)

# kwok's stock "fast" stages (inside its module), as kwokctl uses by default: nodes start and
# heartbeat through leases; pods turn Ready as soon as they are bound, and go at once when deleted.
KWOK_STAGE_FILES: tuple[str, ...] = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def cache_root() -> Path:
    """The folder that holds every build of the local control plane."""
    override = os.environ.get("MODELFLEET_LOCALCLUSTER_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "modelfleet"


def go_version() -> str:
    try:
        done = subprocess.run(
            ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "go-missing"
    return done.stdout.strip()


def build_key() -> str:
    """A key that changes whenever a pinned module, our Go sources or the Go version changes."""
    digest = hashlib.sha256(go_version().encode())
    digest.update(Path(__file__).read_bytes())  # the pinned CRD and stage lists above
    for path in sorted(GOMOD_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".mod", ".sum", ".go"}:
            digest.update(str(path.relative_to(GOMOD_DIR)).encode())
            digest.update(path.read_bytes())
    return f"k8s-{KUBERNETES_VERSION}-{digest.hexdigest()[:10]}"


@dataclass(frozen=True)
class Artifacts:
    """Where one build's binaries, CRDs and kwok stages live."""

    root: Path

    @classmethod
    def current(cls) -> Artifacts:
        return cls(cache_root() / build_key())

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def crd_dir(self) -> Path:
        return self.root / "crds"

    @property
    def kwok_stages(self) -> Path:
        return self.root / "kwok-stages.yaml"

    @property
    def stamp(self) -> Path:
        return self.root / "complete.json"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def is_complete(self) -> bool:
        return self.stamp.is_file() and all(self.binary(name).is_file() for name in BINARIES)
