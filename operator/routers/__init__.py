"""Traffic routers: one small protocol, one module per router, picked by the spec's traffic block.

Setting a weight means writing it into status and applying the router's desired objects for
(active slot, canary slot, canary weight). Whether the data plane honours them is not read back from
the objects (a proxy can accept an object and ignore it): `expected_share` says which share of the
requests the canary should get, and the analysis compares it with the share Prometheus counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from modelfleet.operator.api import HeaderRouteSpec, Slot, TrafficSpec
from modelfleet.operator.builders.common import Owner


@dataclass(frozen=True)
class Routing:
    """Where live traffic goes: the active slot, and a share of it to the canary slot.

    `header_route`: requests carrying this header go to the canary slot whatever the weight (set
    only while the canary's pods are Ready)."""

    active_slot: Slot
    canary_slot: Slot | None = None
    canary_weight: int = 0
    mirror_percent: int = 0
    header_route: HeaderRouteSpec | None = None


class Router(Protocol):
    name: str
    managed_kinds: tuple[tuple[str, str], ...]  # (apiVersion, kind) of the objects it owns
    # True: a proxy splits each request by the weight, so a share far above it means the weight
    # is not honoured; False: connections spread over pods (a keep-alive client sticks to one)
    splits_by_weight: bool

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        """The router's objects for this routing (may be empty)."""

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        """The slot the stable Service `<name>` selects; None = both slots."""

    def header_route_live(self, routing: Routing) -> bool:
        """Whether the objects `build` writes for this routing send the header to the canary."""

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        """Canary pods needed to carry `weight` % next to `active_replicas` stable pods."""

    def expected_share(self, weight: int, canary_ready: int, active_ready: int) -> float:
        """The share of live requests (0-1) the canary should get at `weight`, given Ready pods."""


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
