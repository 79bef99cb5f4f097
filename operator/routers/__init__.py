"""Traffic routers: one small protocol, one module per router, picked by the spec's traffic block.

Setting a weight means writing it into status and applying the router's desired objects for
(active slot, canary slot, canary weight); `verify_weight` reads the live objects back and says
which weight they carry (None where the router cannot tell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from modelfleet.operator.api import Slot, TrafficSpec
from modelfleet.operator.builders.common import Owner


@dataclass(frozen=True)
class Routing:
    """Where live traffic goes: the active slot, and a share of it to the canary slot."""

    active_slot: Slot
    canary_slot: Slot | None = None
    canary_weight: int = 0
    mirror_percent: int = 0


class Router(Protocol):
    name: str
    managed_kinds: tuple[tuple[str, str], ...]  # (apiVersion, kind) of the objects it owns

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        """The router's objects for this routing (may be empty)."""

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        """The slot the stable Service `<name>` selects; None = both slots."""

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        """Canary pods needed to carry `weight` % next to `active_replicas` stable pods."""

    def verify_weight(self, owner: Owner, live: list[dict[str, Any]]) -> int | None:
        """The canary weight the live objects carry; None when it cannot be told."""


def proportional_replicas(active_replicas: int, weight: int) -> int:
    """Pods for a weighted share of traffic: never below 1, as large as the active slot at 100 %."""
    if weight >= 100:
        return max(1, active_replicas)
    return max(1, math.ceil(active_replicas * weight / 100))


def router_for(traffic: TrafficSpec) -> Router:
    from modelfleet.operator.routers.gateway import GatewayRouter
    from modelfleet.operator.routers.ingress_nginx import IngressNginxRouter
    from modelfleet.operator.routers.replicas import ReplicaRatioRouter

    if traffic.ingress is not None:
        return IngressNginxRouter()
    if traffic.gateway is not None:
        return GatewayRouter()
    return ReplicaRatioRouter()


ALL_ROUTED_KINDS: tuple[tuple[str, str], ...] = (
    ("networking.k8s.io/v1", "Ingress"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)
