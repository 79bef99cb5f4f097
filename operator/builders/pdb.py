"""PodDisruptionBudget `<name>-<slot>`: drains take one serving pod at a time."""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import Slot
from modelfleet.operator.builders.common import Owner, metadata, selector, slot_labels


def build_pdb(owner: Owner, slot: Slot) -> dict[str, Any]:
    # maxUnavailable (not minAvailable) so a one-pod or scaled-to-0 slot never blocks a node drain
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, owner.slot_name(slot), slot_labels(owner, slot)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner, slot)}},
    }
