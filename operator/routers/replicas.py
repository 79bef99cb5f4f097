"""Replica-ratio split: no router object; the stable Service selects both slots during a canary,
and the canary's share of the pods is its share of the traffic (kube-proxy balances per pod)."""

from __future__ import annotations

import math
from typing import Any

from modelfleet.operator.api import Slot, TrafficSpec
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.routers import Routing


class ReplicaRatioRouter:
    name = "replica-ratio"
    managed_kinds: tuple[tuple[str, str], ...] = ()
    splits_by_weight = False

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        return []

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        if routing.canary_slot is None or routing.canary_weight == 0:
            return routing.active_slot
        if routing.canary_weight >= 100:
            return routing.canary_slot
        return None

    def header_route_live(self, routing: Routing) -> bool:
        return False  # a Service cannot match headers: the CRD wants a router with headerRoute

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        """canary / (canary + active) ≈ weight: e.g. 3 active pods, 25 % → 1 canary pod."""
        if weight >= 100:
            return max(1, active_replicas)
        return max(1, math.ceil(active_replicas * weight / (100 - weight)))

    def expected_share(self, weight: int, canary_ready: int, active_ready: int) -> float:
        """Each Ready pod the Service selects gets an equal share, so the pods' share, not the
        weight (3 active pods and 1 canary pod at 10 % → 25 %); at 100 % only the canary's."""
        if weight <= 0 or weight >= 100:
            return min(max(weight, 0), 100) / 100
        pods = canary_ready + active_ready
        return canary_ready / pods if pods > 0 else weight / 100
