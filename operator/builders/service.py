"""Services: `<name>` (the stable in-cluster address) and `<name>-<slot>` (what routers point at)."""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import Slot
from modelfleet.operator.builders.common import (
    METRICS_PORT,
    SERVICE_PORT,
    Owner,
    base_labels,
    metadata,
    selector,
    slot_labels,
)


def build_stable_service(owner: Owner, selected_slot: Slot | None) -> dict[str, Any]:
    """`<name>`: selects the active slot, or both slots (None) for the replica-ratio split."""
    return _service(owner, owner.name, base_labels(owner), selector(owner, selected_slot), False)


def build_slot_service(owner: Owner, slot: Slot) -> dict[str, Any]:
    """`<name>-<slot>`: exactly one slot's pods, with the metrics port for scraping."""
    return _service(
        owner, owner.slot_name(slot), slot_labels(owner, slot), selector(owner, slot), True
    )


def _service(
    owner: Owner, name: str, labels: dict[str, str], pod_selector: dict[str, str], metrics: bool
) -> dict[str, Any]:
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
    ]
    if metrics:
        ports.append(
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, labels),
        "spec": {"type": "ClusterIP", "selector": pod_selector, "ports": ports},
    }
