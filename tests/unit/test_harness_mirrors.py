"""The driver's mirror reading, pure: HTTPRoute RequestMirror / NGINX mirror-target → copy targets."""

from __future__ import annotations

from typing import Any

import pytest
from modelfleet_dev.harness.weights import (
    Backend,
    backends_from_httproute,
    endpoints,
    mirror_endpoints,
    mirror_shares,
    mirrors_from_httproute,
    mirrors_from_ingress,
    slot_shares,
)

from modelfleet.operator.api import TrafficSpec
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.routers import Routing
from modelfleet.operator.routers.gateway import GatewayRouter
from modelfleet.operator.routers.ingress_nginx import IngressNginxRouter

OWNER = Owner(name="fraud", namespace="ml", uid="u")


def pod(name: str, slot: str, revision: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"modelfleet.io/slot": slot, "modelfleet.io/revision": revision},
            "annotations": {"modelfleet.io/local-address": f"127.0.0.1:{name}"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


SERVICES = {
    f"fraud-{slot}": {"spec": {"selector": {"modelfleet.io/slot": slot}}}
    for slot in ("blue", "green")
}
PODS = [pod("b1", "blue", "r1"), pod("b2", "blue", "r1"), pod("g1", "green", "r2")]


@pytest.mark.parametrize("percent", [0, 20, 100])
def test_the_operators_httproute_mirror_is_read_back(percent: int) -> None:
    traffic = TrafficSpec.model_validate({"gateway": {"parentRefs": [{"name": "gw"}]}})
    (route,) = GatewayRouter().build(OWNER, traffic, Routing("blue", "green", 0, percent))
    mirrors = mirrors_from_httproute(route)
    assert mirrors == ([Backend("fraud-green", percent)] if percent else [])
    found = endpoints(backends_from_httproute(route), SERVICES, PODS)
    found += mirror_endpoints(mirrors, SERVICES, PODS)
    assert slot_shares(found) == {"blue": 100.0}  # a mirror is not a live share
    assert mirror_shares(found) == ({"green": float(percent)} if percent else {})


def test_the_operators_nginx_mirror_target_is_read_back() -> None:
    traffic = TrafficSpec.model_validate({"ingress": {"host": "f.example.org"}})
    # in shadow only the main Ingress is written (no canary Ingress while it takes no live weight)
    (main,) = IngressNginxRouter().build(OWNER, traffic, Routing("blue", "green", 0, 100))
    assert mirrors_from_ingress(main) == [Backend("fraud-green", 100.0)]
    off, _ = IngressNginxRouter().build(OWNER, traffic, Routing("blue", "green", 10))
    assert mirrors_from_ingress(off) == []


@pytest.mark.parametrize(
    ("mirror", "percent"),
    [
        ({"fraction": {"numerator": 1, "denominator": 4}}, 25.0),
        ({"fraction": {"numerator": 3}}, 3.0),
        ({}, 100.0),
    ],
)
def test_fraction_or_nothing_is_a_share(mirror: dict[str, Any], percent: float) -> None:
    ref = {"name": "fraud-green", "port": 80}
    route = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [{"name": "fraud-blue", "port": 80}],
                    "filters": [
                        {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
                        {"type": "RequestMirror", "requestMirror": {"backendRef": ref, **mirror}},
                    ],
                }
            ]
        }
    }
    assert mirrors_from_httproute(route) == [Backend("fraud-green", percent)]


def test_a_mirror_without_ready_pods_is_a_copy_to_nowhere() -> None:
    found = mirror_endpoints(
        [Backend("fraud-green", 50)], SERVICES, [pod("g1", "green", "r2", False)]
    )
    assert [(e.address, e.slot, e.share, e.mirror) for e in found] == [(None, "green", 0.5, True)]


def test_a_mirror_share_is_split_over_ready_pods() -> None:
    found = mirror_endpoints([Backend("fraud-blue", 40)], SERVICES, PODS)
    assert sorted((e.address, e.share) for e in found) == [
        ("127.0.0.1:b1", 0.2),
        ("127.0.0.1:b2", 0.2),
    ]
