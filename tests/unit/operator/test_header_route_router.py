"""rollout.headerRoute: the routers' header rule and annotations, when it is live, what status says."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.operator.api import (
    HeaderRouteSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    TrafficSpec,
)
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.desired import canary_serving, header_route_note, routing_of
from modelfleet.operator.routers import Router, Routing
from modelfleet.operator.routers.gateway import GatewayRouter
from modelfleet.operator.routers.ingress_nginx import (
    CANARY_BY_HEADER,
    CANARY_BY_HEADER_VALUE,
    CANARY_WEIGHT,
    IngressNginxRouter,
)
from modelfleet.operator.routers.replicas import ReplicaRatioRouter

HEADER = HeaderRouteSpec(name="X-Canary", value="always")
GATEWAY = TrafficSpec.model_validate(
    {"gateway": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "path": "/v2"}}
)
INGRESS = TrafficSpec.model_validate({"ingress": {"host": "fraud.example.org"}})


@pytest.mark.parametrize("weight", [0, 10, 100])
@pytest.mark.parametrize(("active", "canary"), [("blue", "green"), ("green", "blue")])
def test_the_gateway_sends_the_header_to_the_canary_first_and_keeps_the_weighted_rule(
    owner: Owner, weight: int, active: str, canary: str
) -> None:
    routing = Routing(active, canary, weight, header_route=HEADER)  # type: ignore[arg-type]
    (route,) = GatewayRouter().build(owner, GATEWAY, routing)
    header_rule, weighted = route["spec"]["rules"]
    assert header_rule["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/v2"},
            "headers": [{"type": "Exact", "name": "X-Canary", "value": "always"}],
        }
    ]
    assert [(ref["name"], ref["weight"]) for ref in header_rule["backendRefs"]] == [
        (f"fraud-{canary}", 100)
    ]
    # the weighted rule is what it is without a header route
    (plain,) = GatewayRouter().build(owner, GATEWAY, Routing(active, canary, weight))  # type: ignore[arg-type]
    assert weighted == plain["spec"]["rules"][0]
    assert "headers" not in weighted["matches"][0]


def test_the_gateway_header_rule_goes_with_the_canary(owner: Owner) -> None:
    # promoted, rolled back, aborted or undone: no canary slot, whatever the spec says
    (route,) = GatewayRouter().build(owner, GATEWAY, Routing("green", header_route=HEADER))
    (rule,) = route["spec"]["rules"]
    assert "headers" not in rule["matches"][0]
    assert [ref["name"] for ref in rule["backendRefs"]] == ["fraud-green"]


def test_the_header_rule_does_not_carry_the_shadow_mirror(owner: Owner) -> None:
    routing = Routing("blue", "green", 0, 100, HEADER)
    header_rule, weighted = GatewayRouter().build(owner, GATEWAY, routing)[0]["spec"]["rules"]
    assert "filters" not in header_rule
    assert weighted["filters"][0]["type"] == "RequestMirror"


@pytest.mark.parametrize("weight", [10, 50, 100])
def test_the_canary_ingress_gets_the_header_annotations(owner: Owner, weight: int) -> None:
    routing = Routing("blue", "green", weight, header_route=HEADER)
    main, canary = IngressNginxRouter().build(owner, INGRESS, routing)
    annotations = canary["metadata"]["annotations"]
    assert annotations[CANARY_BY_HEADER] == "X-Canary"
    assert annotations[CANARY_BY_HEADER_VALUE] == "always"
    assert annotations[CANARY_WEIGHT] == str(weight)
    assert CANARY_BY_HEADER not in (main["metadata"].get("annotations") or {})


def test_without_a_header_route_the_canary_ingress_has_no_header_annotations(
    owner: Owner,
) -> None:
    _, canary = IngressNginxRouter().build(owner, INGRESS, Routing("blue", "green", 10))
    assert CANARY_BY_HEADER not in canary["metadata"]["annotations"]


def test_the_ingress_header_route_waits_for_the_first_weight(owner: Owner) -> None:
    # the canary Ingress exists only with a live weight: at 0 the header goes nowhere special
    router = IngressNginxRouter()
    routing = Routing("blue", "green", 0, header_route=HEADER)
    (main,) = router.build(owner, INGRESS, routing)
    assert main["metadata"]["name"] == "fraud"
    assert not router.header_route_live(routing)


@pytest.mark.parametrize(
    ("router", "weight", "live"),
    [
        (GatewayRouter(), 0, True),
        (GatewayRouter(), 25, True),
        (IngressNginxRouter(), 0, False),
        (IngressNginxRouter(), 25, True),
        (ReplicaRatioRouter(), 25, False),
    ],
    ids=["gateway-0", "gateway-25", "ingress-0", "ingress-25", "replicas"],
)
def test_the_status_note_says_what_the_router_wrote(
    router: Router, weight: int, live: bool
) -> None:
    routing = Routing("blue", "green", weight, header_route=HEADER)
    assert router.header_route_live(routing) is live
    note = header_route_note(router, routing, "v2")
    expected = "header route live: requests with X-Canary: always go to v2 (green)"
    assert note == (expected if live else None)
    assert header_route_note(router, Routing("blue", "green", weight), "v2") is None


def _status(weight: int = 0, mirror: int = 0) -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(
        {
            "activeSlot": "blue",
            "canary": {
                "slot": "green",
                "revision": "r2",
                "version": "v2",
                "weight": weight,
                "mirror": mirror,
            },
        }
    )


def _deployment(
    revision: str = "r2",
    ready: int = 1,
    updated: int = 1,
    replicas: int = 1,
    generation: int = 2,
    observed: int = 2,
) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"modelfleet.io/revision": revision}, "generation": generation},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "replicas": replicas,
        },
    }


@pytest.mark.parametrize(
    ("deployment", "serving"),
    [
        (_deployment(), True),
        (None, False),  # the slot's Deployment not seen yet
        (_deployment(ready=0), False),  # pods starting
        (_deployment(revision="r1"), False),  # still the slot's previous revision
        (_deployment(observed=1), False),  # a status from before the new template
        (_deployment(ready=2, updated=1, replicas=2), False),  # a pod of the old template left
        (_deployment(ready=1, updated=0), False),  # the Ready pod is an old one
    ],
    ids=["ready", "absent", "starting", "old-revision", "old-status", "old-pod-left", "old-ready"],
)
def test_before_any_weight_the_header_route_waits_for_ready_canary_pods(
    deployment: dict[str, Any] | None, serving: bool
) -> None:
    status = _status()
    assert status.canary is not None
    assert canary_serving(status.canary, deployment) is serving
    routing = routing_of(status, HEADER, deployment)
    assert routing.header_route == (HEADER if serving else None)
    assert (routing.active_slot, routing.canary_slot, routing.canary_weight) == ("blue", "green", 0)


@pytest.mark.parametrize(("weight", "mirror"), [(10, 0), (0, 100)], ids=["weight", "shadow"])
def test_a_weight_or_a_mirror_means_the_canary_was_ready(weight: int, mirror: int) -> None:
    # the machine sets either only once the canary's pods are Ready
    assert routing_of(_status(weight, mirror), HEADER, None).header_route == HEADER


def test_no_canary_no_header_route() -> None:
    status = ModelDeploymentStatus.model_validate({"activeSlot": "green"})
    assert routing_of(status, HEADER, _deployment()) == Routing("green")


BASE = {
    "model": {"uri": "s3://b/m.onnx"},
    "traffic": {"gateway": {"parentRefs": [{"name": "gw"}]}},
}


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"name": "X Canary", "value": "1"}, "name"),  # a space is no token character
        ({"name": "X-Canary:", "value": "1"}, "name"),
        ({"name": "", "value": "1"}, "name"),
        ({"name": "X-Cänary", "value": "1"}, "name"),
        ({"name": "X-Canary", "value": ""}, "value"),
        ({"name": "X-Canary", "value": " padded"}, "value"),
        ({"name": "X-Canary", "value": "a\r\nInjected: 1"}, "value"),
        ({"name": "X-Canary"}, "value"),
    ],
)
def test_a_header_that_is_no_http_field_is_refused_naming_its_part(
    header: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        ModelDeploymentSpec.model_validate({**BASE, "rollout": {"headerRoute": header}})
    assert raised.value.errors()[0]["loc"] == ("rollout", "headerRoute", field)


@pytest.mark.parametrize(
    "header",
    [
        {"name": "X-Canary", "value": "always"},
        {"name": "x-modelfleet_test.v2", "value": "team a, run 7"},
        {"name": "!#$%&'*+-.^_`|~", "value": "~!"},
    ],
)
def test_a_valid_header_route_is_kept(header: dict[str, str]) -> None:
    spec = ModelDeploymentSpec.model_validate({**BASE, "rollout": {"headerRoute": header}})
    assert spec.rollout.header_route == HeaderRouteSpec.model_validate(header)
