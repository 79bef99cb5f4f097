"""Gateway API: one HTTPRoute `<name>` with weighted backendRefs to both slot Services.

With a header route and a Ready canary, a first rule sends every request carrying the header to the
canary's Service; the weighted rule below it is unchanged. Exact header matching is core in
HTTPRoute (and a rule with a header match outranks one without, whatever their order).

`traffic.gateway.timeouts` and `retry` go on every rule; the reconcile clears them from the spec it
builds from when the Gateway's class cannot serve them (gateway_features.policy_refusal).
"""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import GatewayTraffic, HeaderRouteSpec, Slot, TrafficSpec
from modelfleet.operator.builders.common import SERVICE_PORT, Owner, base_labels, metadata
from modelfleet.operator.routers import Routing, proportional_replicas


class GatewayRouter:
    name = "gateway-api"
    managed_kinds: tuple[tuple[str, str], ...] = (("gateway.networking.k8s.io/v1", "HTTPRoute"),)
    splits_by_weight = True

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        assert traffic.gateway is not None
        gateway = traffic.gateway
        backends = [_backend(owner, routing.active_slot, 100 - _canary_weight(routing))]
        if routing.canary_slot is not None:
            backends.append(_backend(owner, routing.canary_slot, routing.canary_weight))
        path_match = {"type": "PathPrefix", "value": gateway.path}
        rule: dict[str, Any] = {"matches": [{"path": path_match}], "backendRefs": backends}
        if routing.canary_slot is not None and routing.mirror_percent > 0:
            rule["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": _ref(owner, routing.canary_slot),
                        "percent": routing.mirror_percent,
                    },
                }
            ]
        parent_refs = [
            {k: v for k, v in ref.model_dump(by_alias=True).items() if v is not None}
            for ref in gateway.parent_refs
        ]
        rules = [rule]
        canary, header_route = routing.canary_slot, routing.header_route
        if canary is not None and header_route is not None:
            rules.insert(0, _header_rule(owner, path_match, canary, header_route))
        policy = route_policy(gateway)
        spec: dict[str, Any] = {
            "parentRefs": parent_refs,
            "rules": [rule | policy for rule in rules],
        }
        if gateway.hostnames:
            spec["hostnames"] = list(gateway.hostnames)
        return [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": metadata(owner, owner.name, base_labels(owner)),
                "spec": spec,
            }
        ]

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        return routing.active_slot

    def header_route_live(self, routing: Routing) -> bool:
        return routing.canary_slot is not None and routing.header_route is not None

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        return proportional_replicas(active_replicas, weight)

    def expected_share(self, weight: int, canary_ready: int, active_ready: int) -> float:
        return weight / 100


def route_policy(gateway: GatewayTraffic) -> dict[str, Any]:
    """The rule fields `timeouts` and `retry` as the spec sets them (unset ones left out)."""
    policy: dict[str, Any] = {}
    for field, value in (("timeouts", gateway.timeouts), ("retry", gateway.retry)):
        if value is not None:
            written = value.model_dump(by_alias=True, exclude_none=True)
            written = {key: item for key, item in written.items() if item != []}
            if written:  # an empty object asks nothing of the gateway
                policy[field] = written
    return policy


def _canary_weight(routing: Routing) -> int:
    return routing.canary_weight if routing.canary_slot is not None else 0


def _header_rule(
    owner: Owner, path_match: dict[str, str], canary: Slot, header_route: HeaderRouteSpec
) -> dict[str, Any]:
    """Every request with the header (exact value) under the path: all to the canary slot."""
    header = {"type": "Exact", "name": header_route.name, "value": header_route.value}
    return {
        "matches": [{"path": path_match, "headers": [header]}],
        "backendRefs": [_backend(owner, canary, 100)],
    }


def _ref(owner: Owner, slot: Slot) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": owner.slot_name(slot), "port": SERVICE_PORT}


def _backend(owner: Owner, slot: Slot, weight: int) -> dict[str, Any]:
    return {**_ref(owner, slot), "weight": weight}
