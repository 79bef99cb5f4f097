"""Routers: any weight 0–100 for either slot, the stable flip, canary sizing, the expected share."""

from __future__ import annotations

import pytest

from modelfleet.operator.api import ModelDeploymentStatus, TrafficSpec
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.desired import routing_of
from modelfleet.operator.routers import Router, Routing, proportional_replicas, router_for
from modelfleet.operator.routers.gateway import GatewayRouter
from modelfleet.operator.routers.ingress_nginx import (
    CANARY_WEIGHT,
    MIRROR_REQUEST_BODY,
    MIRROR_TARGET,
    IngressNginxRouter,
)
from modelfleet.operator.routers.replicas import ReplicaRatioRouter

INGRESS = TrafficSpec.model_validate(
    {"ingress": {"host": "fraud.example.org", "tls": {"secretName": "t"}}}
)
GATEWAY = TrafficSpec.model_validate(
    {
        "gateway": {
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "hostnames": ["f.example.org"],
        }
    }
)
NONE = TrafficSpec()


def test_router_follows_the_traffic_block() -> None:
    assert isinstance(router_for(INGRESS), IngressNginxRouter)
    assert isinstance(router_for(GATEWAY), GatewayRouter)
    assert isinstance(router_for(NONE), ReplicaRatioRouter)


@pytest.mark.parametrize("weight", [1, 10, 25, 50, 99, 100])
@pytest.mark.parametrize(("active", "canary"), [("blue", "green"), ("green", "blue")])
def test_ingress_weights(owner: Owner, weight: int, active: str, canary: str) -> None:
    router = IngressNginxRouter()
    objects = router.build(owner, INGRESS, Routing(active, canary, weight))  # type: ignore[arg-type]
    main, canary_ingress = objects
    assert main["metadata"]["name"] == "fraud"
    assert "nginx.ingress.kubernetes.io/canary" not in main["metadata"].get("annotations", {})
    assert _backend(main) == f"fraud-{active}"
    assert canary_ingress["metadata"]["name"] == "fraud-canary"
    assert canary_ingress["metadata"]["annotations"][CANARY_WEIGHT] == str(weight)
    assert _backend(canary_ingress) == f"fraud-{canary}"
    assert main["spec"]["tls"][0]["secretName"] == "t"


@pytest.mark.parametrize(
    "routing",
    [
        Routing("green"),  # no canary
        Routing("green", "blue", 0),  # a canary whose pods are not Ready yet
        Routing("blue", "green", 0, 100),  # in shadow: the mirror rides on the main Ingress
    ],
    ids=["idle", "canary-at-0", "shadow"],
)
def test_no_canary_ingress_without_a_live_canary_weight(owner: Owner, routing: Routing) -> None:
    # a proxy ignoring the canary annotations (Traefik) would route the host to it
    (main,) = IngressNginxRouter().build(owner, INGRESS, routing)
    assert main["metadata"]["name"] == "fraud"
    assert _backend(main) == f"fraud-{routing.active_slot}"


@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_gateway_weights(owner: Owner, weight: int) -> None:
    router = GatewayRouter()
    objects = router.build(owner, GATEWAY, Routing("blue", "green", weight))
    (route,) = objects
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(ref["name"], ref["weight"]) for ref in refs] == [
        ("fraud-blue", 100 - weight),
        ("fraud-green", weight),
    ]
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["f.example.org"]


def test_gateway_flip_and_mirror(owner: Owner) -> None:
    (route,) = GatewayRouter().build(owner, GATEWAY, Routing("green"))
    assert [(ref["name"], ref["weight"]) for ref in route["spec"]["rules"][0]["backendRefs"]] == [
        ("fraud-green", 100)
    ]
    (mirrored,) = GatewayRouter().build(owner, GATEWAY, Routing("blue", "green", 0, 20))
    mirror = mirrored["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror["backendRef"]["name"] == "fraud-green"
    assert mirror["percent"] == 20


@pytest.mark.parametrize(("weight", "slot"), [(0, "blue"), (10, None), (50, None), (100, "green")])
def test_replica_ratio_selects_slots_by_weight(weight: int, slot: str | None) -> None:
    router = ReplicaRatioRouter()
    assert router.stable_selector_slot(Routing("blue", "green", weight)) == slot
    assert router.stable_selector_slot(Routing("blue")) == "blue"


@pytest.mark.parametrize(
    ("active", "weight", "proportional", "ratio"),
    [
        (1, 10, 1, 1),
        (3, 25, 1, 1),
        (10, 10, 1, 2),
        (10, 25, 3, 4),
        (10, 50, 5, 10),
        (4, 100, 4, 4),
        (0, 10, 1, 1),
    ],
)
def test_canary_sizing(active: int, weight: int, proportional: int, ratio: int) -> None:
    assert proportional_replicas(active, weight) == proportional
    assert ReplicaRatioRouter().canary_replicas(active, weight) == ratio


def _backend(ingress: dict[str, object]) -> str:
    spec = ingress["spec"]
    assert isinstance(spec, dict)
    name: str = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    return name


# --- mirroring (the shadow step) ---------------------------------------------------------------


@pytest.mark.parametrize("mirror", [0, 100])
def test_ingress_mirror_annotations_on_the_main_ingress_only(owner: Owner, mirror: int) -> None:
    (main,) = IngressNginxRouter().build(owner, INGRESS, Routing("blue", "green", 0, mirror))
    notes = main["metadata"].get("annotations", {})
    if mirror:
        assert notes[MIRROR_TARGET] == (
            f"http://fraud-green.{owner.namespace}.svc.cluster.local:80$request_uri"
        )
        assert notes[MIRROR_REQUEST_BODY] == "on"
    else:
        assert MIRROR_TARGET not in notes


def test_ingress_mirror_needs_a_canary_slot(owner: Owner) -> None:
    (main,) = IngressNginxRouter().build(owner, INGRESS, Routing("blue", None, 0, 100))
    assert MIRROR_TARGET not in main["metadata"].get("annotations", {})


@pytest.mark.parametrize("mirror", [0, 1, 50, 100])
def test_gateway_mirror_filter_only_while_mirroring(owner: Owner, mirror: int) -> None:
    router = GatewayRouter()
    objects = router.build(owner, GATEWAY, Routing("blue", "green", 0, mirror))
    rule = objects[0]["spec"]["rules"][0]
    if mirror:
        (only,) = rule["filters"]
        assert only == {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "fraud-green", "port": 80},
                "percent": mirror,
            },
        }
    else:
        assert "filters" not in rule
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"fraud-blue": 100, "fraud-green": 0}  # the mirror is not a live share


def test_replica_ratio_cannot_mirror(owner: Owner) -> None:
    router = ReplicaRatioRouter()
    routing = Routing("blue", "green", 0, 100)
    assert router.build(owner, NONE, routing) == []
    assert router.stable_selector_slot(routing) == "blue"  # mirrored traffic never reaches it


def test_routing_carries_the_status_mirror() -> None:
    status = ModelDeploymentStatus.model_validate(
        {
            "activeSlot": "blue",
            "canary": {"slot": "green", "revision": "r2", "version": "v2", "mirror": 50},
        }
    )
    assert routing_of(status) == Routing("blue", "green", 0, 50)


@pytest.mark.parametrize(
    ("router", "weight", "canary_ready", "active_ready", "expected"),
    [
        (GatewayRouter(), 10, 1, 3, 0.10),
        (GatewayRouter(), 100, 3, 3, 1.0),
        (IngressNginxRouter(), 25, 9, 1, 0.25),
        (ReplicaRatioRouter(), 10, 1, 3, 0.25),  # kube-proxy splits per pod, not per weight
        (ReplicaRatioRouter(), 50, 2, 2, 0.5),
        (ReplicaRatioRouter(), 10, 0, 0, 0.10),  # no Ready pods counted: the weight
        (ReplicaRatioRouter(), 100, 3, 3, 1.0),  # the stable Service selects only the canary
        (ReplicaRatioRouter(), 0, 1, 3, 0.0),
    ],
    ids=["gateway", "gateway-100", "ingress", "pods-10", "pods-50", "no-pods", "pods-100", "zero"],
)
def test_expected_share_is_what_the_data_plane_should_give_the_canary(
    router: Router, weight: int, canary_ready: int, active_ready: int, expected: float
) -> None:
    assert router.expected_share(weight, canary_ready, active_ready) == pytest.approx(expected)
