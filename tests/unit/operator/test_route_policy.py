"""traffic.gateway.timeouts and retry: on every HTTPRoute rule when each Gateway's class lists the
features, refused with the RoutePolicy condition (and left off the route) when one does not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelfleet.operator.api import (
    GatewayTraffic,
    HeaderRouteSpec,
    ModelDeploymentStatus,
    TrafficSpec,
)
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.gateway_features import (
    BACKEND_TIMEOUT,
    REQUEST_TIMEOUT,
    RETRY,
    GatewayFeatures,
    policy_features,
)
from modelfleet.operator.routers import Routing
from modelfleet.operator.routers.gateway import GatewayRouter
from tests.unit.operator.test_gateway_features import TRAEFIK, Kube, cluster
from tests.unit.operator.test_reconcile import FakeKube, _context, _gateway_class, _md, _run_seconds

PARENT = {"parentRefs": [{"name": "gw"}]}
CRD = ("CustomResourceDefinition", "", "httproutes.gateway.networking.k8s.io")
TIMEOUTS = {"request": "30s", "backendRequest": "10s"}
RETRY_SPEC = {"attempts": 2, "backoff": "100ms", "codes": [502, 503]}
ALL = ["Gateway", "HTTPRoute", REQUEST_TIMEOUT, BACKEND_TIMEOUT, RETRY]


def _traffic(**policy: Any) -> TrafficSpec:
    return TrafficSpec.model_validate({"gateway": {**PARENT, **policy}})


def test_timeouts_and_retry_go_on_every_rule_the_header_rule_too(owner: Owner) -> None:
    header = HeaderRouteSpec(name="X-Canary", value="always")
    routing = Routing("blue", "green", 10, header_route=header)
    traffic = _traffic(timeouts=TIMEOUTS, retry=RETRY_SPEC)
    (route,) = GatewayRouter().build(owner, traffic, routing)
    rules = route["spec"]["rules"]
    assert len(rules) == 2
    for rule in rules:
        assert rule["timeouts"] == {"request": "30s", "backendRequest": "10s"}
        assert rule["retry"] == {"attempts": 2, "backoff": "100ms", "codes": [502, 503]}


@pytest.mark.parametrize(
    ("policy", "written"),
    [
        ({}, {}),
        ({"timeouts": {"request": "1m"}}, {"timeouts": {"request": "1m"}}),
        ({"retry": {"attempts": 3}}, {"retry": {"attempts": 3}}),  # no codes: none written
    ],
    ids=["neither", "request-timeout-only", "retry-without-codes"],
)
def test_only_what_the_spec_sets_is_written(
    owner: Owner, policy: dict[str, Any], written: dict[str, Any]
) -> None:
    (route,) = GatewayRouter().build(owner, _traffic(**policy), Routing("blue"))
    (rule,) = route["spec"]["rules"]
    assert {key: rule[key] for key in ("timeouts", "retry") if key in rule} == written


@pytest.mark.parametrize(
    ("policy", "features"),
    [
        ({}, ()),
        ({"timeouts": {"request": "30s"}}, (REQUEST_TIMEOUT,)),
        ({"timeouts": {"backendRequest": "5s"}}, (BACKEND_TIMEOUT,)),
        ({"timeouts": TIMEOUTS, "retry": {}}, (REQUEST_TIMEOUT, BACKEND_TIMEOUT, RETRY)),
    ],
)
def test_each_field_needs_its_feature(policy: dict[str, Any], features: tuple[str, ...]) -> None:
    assert policy_features(GatewayTraffic.model_validate({**PARENT, **policy})) == features


ROUTED = {"parentRefs": [{"name": "public", "namespace": "infra"}]}


def route_crd(*rule_fields: str) -> dict[str, Any]:
    """An HTTPRoute CRD whose v1 rules declare `rule_fields` (v1.4 standard: no retry)."""
    rules = {"items": {"properties": {field: {"type": "object"} for field in rule_fields}}}
    schema = {"properties": {"spec": {"properties": {"rules": rules}}}}
    return {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}}


STANDARD = route_crd("matches", "backendRefs", "filters", "timeouts")
EXPERIMENTAL = route_crd("matches", "backendRefs", "filters", "timeouts", "retry")


def with_crd(kube: Kube, crd: dict[str, Any] | None = EXPERIMENTAL) -> Kube:
    if crd is not None:
        kube.objects[CRD] = crd
    return kube


def _refusal(kube: Kube, **policy: Any) -> str | None:
    gateway = GatewayTraffic.model_validate({**ROUTED, **policy})
    return asyncio.run(GatewayFeatures().policy_refusal(kube, "ml", gateway))  # type: ignore[arg-type]


def test_traefik_s_class_refuses_timeouts_naming_the_missing_feature() -> None:
    assert _refusal(cluster(TRAEFIK), timeouts={"request": "30s"}) == (
        "GatewayClass traefik does not support HTTPRouteRequestTimeout "
        "(status.supportedFeatures): timeouts refused"
    )
    assert _refusal(cluster(TRAEFIK), timeouts=TIMEOUTS, retry=RETRY_SPEC) == (
        "GatewayClass traefik does not support HTTPRouteRequestTimeout, HTTPRouteBackendTimeout, "
        "HTTPRouteRetry (status.supportedFeatures): timeouts and retry refused"
    )


def test_a_class_with_the_features_serves_them_one_without_a_list_does_not() -> None:
    serving = with_crd(cluster([{"name": feature} for feature in ALL]))
    assert _refusal(serving, timeouts=TIMEOUTS, retry=RETRY_SPEC) is None
    assert _refusal(cluster(None), retry=RETRY_SPEC) == (
        "GatewayClass traefik publishes no supportedFeatures: retry refused"
    )
    unread = Kube({})
    assert _refusal(unread, timeouts=TIMEOUTS) == (
        "Gateway infra/public not found: timeouts refused"
    )
    nothing_set = cluster(None)
    assert _refusal(nothing_set) is None
    assert nothing_set.reads == 0  # nothing to ask when neither is set


def test_the_installed_httproute_crd_must_declare_the_fields_too() -> None:
    # a server-side apply of an undeclared field fails for the whole route, not just the field
    serving = [{"name": feature} for feature in ALL]
    standard = with_crd(cluster(serving), STANDARD)
    assert _refusal(standard, timeouts=TIMEOUTS) is None
    assert _refusal(standard, timeouts=TIMEOUTS, retry=RETRY_SPEC) == (
        "CustomResourceDefinition httproutes.gateway.networking.k8s.io declares no rules[].retry: "
        "timeouts and retry refused"
    )
    assert _refusal(with_crd(cluster(serving), None), retry=RETRY_SPEC) == (
        "CRD httproutes.gateway.networking.k8s.io not found: retry refused"
    )


def _route_policy(body: dict[str, Any]) -> tuple[str, str, str] | None:
    status = ModelDeploymentStatus.model_validate(body["status"])
    found = [c for c in status.conditions if c.type == "RoutePolicy"]
    return (found[0].status, found[0].reason, found[0].message) if found else None


def _rule_policy(kube: FakeKube) -> list[dict[str, Any]]:
    rules = kube.objects[("HTTPRoute", "ml", "fraud")]["spec"]["rules"]
    return [{key: rule[key] for key in ("timeouts", "retry") if key in rule} for rule in rules]


def test_reconcile_refuses_on_traefik_then_writes_once_the_class_serves_them() -> None:
    kube = FakeKube()
    _gateway_class(kube, "traefik", ["Gateway", "HTTPRoute"])
    body = _md(traffic={"gateway": {**PARENT, "timeouts": TIMEOUTS}})
    kube.objects[("ModelDeployment", "ml", "fraud")] = body
    ctx = _context(kube)
    _run_seconds(kube, ctx, range(3))
    assert ModelDeploymentStatus.model_validate(body["status"]).phase == "Healthy"  # still serves
    assert _route_policy(body) == (
        "False",
        "RoutePolicyRefused",
        "GatewayClass traefik does not support HTTPRouteRequestTimeout, HTTPRouteBackendTimeout "
        "(status.supportedFeatures): timeouts refused",
    )
    assert _rule_policy(kube) == [{}]  # nothing the data plane would ignore

    _gateway_class(kube, "traefik", ALL)  # an implementation that serves them
    kube.objects[CRD] = EXPERIMENTAL  # and the experimental channel's CRD, which has retry
    body["spec"]["traffic"]["gateway"]["retry"] = RETRY_SPEC  # a spec change reads the class again
    body["metadata"]["generation"] = 2
    _run_seconds(kube, ctx, range(3, 5))
    assert _route_policy(body) == ("True", "RoutePolicyWritten", "written to every HTTPRoute rule")
    assert _rule_policy(kube) == [{"timeouts": TIMEOUTS, "retry": RETRY_SPEC}]

    del body["spec"]["traffic"]["gateway"]["timeouts"], body["spec"]["traffic"]["gateway"]["retry"]
    body["metadata"]["generation"] = 3
    _run_seconds(kube, ctx, range(5, 7))
    assert _route_policy(body) is None  # nothing asked: no condition
    assert _rule_policy(kube) == [{}]
