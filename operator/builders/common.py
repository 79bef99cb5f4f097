"""What every builder shares: the owner, names, labels and the slot plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelfleet.operator.api import API_VERSION, KIND, Slot
from modelfleet.operator.shape import PodShape

SERVER_NAME = "modelfleet-server"
HTTP_PORT = 8080
METRICS_PORT = 8082
SERVICE_PORT = 80
LABEL_DEPLOYMENT = "modelfleet.io/deployment"
LABEL_SLOT = "modelfleet.io/slot"
LABEL_REVISION = "modelfleet.io/revision"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment a child belongs to."""

    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def slot_name(self, slot: Slot) -> str:
        return f"{self.name}-{slot}"


@dataclass(frozen=True)
class SlotPlan:
    """What one slot should run: its shape, revision and size (None = left to the autoscaler)."""

    slot: Slot
    shape: PodShape
    revision: str
    replicas: int | None
    # rows of recent inputs the server keeps for the paired gate (replay.liveSample); not shape
    live_sample_rows: int = 0
    # MODELFLEET_RATE_LIMIT_* (builders/ratelimit.py): applied in place to both slots, not shape
    rate_limit_env: tuple[dict[str, Any], ...] = ()


def base_labels(owner: Owner) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": SERVER_NAME,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": "modelfleet",
        LABEL_DEPLOYMENT: owner.name,
    }


def slot_labels(owner: Owner, slot: Slot) -> dict[str, str]:
    return {**base_labels(owner), LABEL_SLOT: slot}


def selector(owner: Owner, slot: Slot | None) -> dict[str, str]:
    """Pod selector: one slot, or (slot None) both slots of this ModelDeployment."""
    labels = {"app.kubernetes.io/instance": owner.name, LABEL_DEPLOYMENT: owner.name}
    return labels if slot is None else {**labels, LABEL_SLOT: slot}


def metadata(
    owner: Owner, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.owner_reference()],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta
