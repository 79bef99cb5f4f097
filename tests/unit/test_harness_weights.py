"""The driver's weight reading, pure: router objects → backends → Ready pods with shares.

The harness lives in hack/modelfleet_dev/harness; this test needs no cluster and runs in well under a second.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelfleet_dev.harness.weights import (
    Backend,
    backends_from_httproute,
    backends_from_ingresses,
    endpoints,
    pod_is_ready,
    slot_shares,
)


def pod(
    name: str, slot: str, revision: str, ready: bool = True, address: str | None = "auto"
) -> dict[str, Any]:
    annotations = {} if address is None else {"modelfleet.io/local-address": f"127.0.0.1:{name}"}
    return {
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/instance": "fraud",
                "modelfleet.io/slot": slot,
                "modelfleet.io/revision": revision,
            },
            "annotations": annotations,
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def service(name: str, slot: str | None) -> dict[str, Any]:
    selector = {"app.kubernetes.io/instance": "fraud"}
    if slot:
        selector["modelfleet.io/slot"] = slot
    return {"metadata": {"name": name}, "spec": {"selector": selector}}


SERVICES = {
    "fraud": service("fraud", None),
    "fraud-blue": service("fraud-blue", "blue"),
    "fraud-green": service("fraud-green", "green"),
}
PODS = [pod("b1", "blue", "r1"), pod("b2", "blue", "r1"), pod("g1", "green", "r2")]


def test_httproute_weights() -> None:
    route = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fraud-blue", "port": 8080, "weight": 75},
                        {"name": "fraud-green", "port": 8080, "weight": 25},
                    ]
                }
            ]
        }
    }
    backends = backends_from_httproute(route)
    assert backends == [Backend("fraud-blue", 75), Backend("fraud-green", 25)]
    found = endpoints(backends, SERVICES, PODS)
    assert slot_shares(found) == {"blue": 75.0, "green": 25.0}
    assert {e.address: round(e.share, 3) for e in found} == {
        "127.0.0.1:b1": 0.375,
        "127.0.0.1:b2": 0.375,
        "127.0.0.1:g1": 0.25,
    }


def test_httproute_weight_defaults_to_one() -> None:
    route = {"spec": {"rules": [{"backendRefs": [{"name": "a"}, {"name": "b", "weight": 3}]}]}}
    assert backends_from_httproute(route) == [Backend("a", 1), Backend("b", 3)]


def _ingress(service_name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    backend = {"service": {"name": service_name, "port": {"name": "http"}}}
    return {
        "metadata": {"annotations": annotations or {}},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": backend}]}}]},
    }


@pytest.mark.parametrize(
    ("annotations", "shares"),
    [
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "10",
            },
            {"blue": 90.0, "green": 10.0},
        ),
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "1",
                "nginx.ingress.kubernetes.io/canary-weight-total": "4",
            },
            {"blue": 75.0, "green": 25.0},
        ),
        ({"nginx.ingress.kubernetes.io/canary-weight": "50"}, {"blue": 100.0}),  # not a canary
        (
            {
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "0",
            },
            {"blue": 100.0},
        ),
    ],
)
def test_nginx_canary_annotations(annotations: dict[str, str], shares: dict[str, float]) -> None:
    backends = backends_from_ingresses(_ingress("fraud-blue"), _ingress("fraud-green", annotations))
    assert slot_shares(endpoints(backends, SERVICES, PODS)) == shares


def test_replica_ratio_counts_ready_pods_of_both_slots() -> None:
    pods = [*PODS, pod("g2", "green", "r2", ready=False), pod("b3", "blue", "r1", address=None)]
    found = endpoints([Backend("fraud", 100)], SERVICES, pods)
    assert slot_shares(found) == {"blue": 66.7, "green": 33.3}


def test_a_weighted_backend_without_ready_pods_is_a_503_share() -> None:
    pods = [pod("b1", "blue", "r1"), pod("g1", "green", "r2", ready=False)]
    found = endpoints([Backend("fraud-blue", 90), Backend("fraud-green", 10)], SERVICES, pods)
    missing = [e for e in found if e.address is None]
    assert len(missing) == 1
    assert missing[0].slot == "green"
    assert missing[0].share == pytest.approx(0.1)


def test_terminating_pods_get_no_traffic() -> None:
    leaving = pod("b1", "blue", "r1")
    leaving["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    assert not pod_is_ready(leaving)


def test_an_empty_selector_selects_nothing() -> None:
    found = endpoints([Backend("headless", 100)], {"headless": {"spec": {}}}, PODS)
    assert [e.address for e in found] == [None]


@given(
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=2),
    ready_blue=st.integers(min_value=1, max_value=5),
    ready_green=st.integers(min_value=1, max_value=5),
)
def test_shares_sum_to_one_and_follow_the_weights(
    weights: list[int], ready_blue: int, ready_green: int
) -> None:
    pods = [pod(f"b{i}", "blue", "r1") for i in range(ready_blue)]
    pods += [pod(f"g{i}", "green", "r2") for i in range(ready_green)]
    backends = [Backend("fraud-blue", weights[0]), Backend("fraud-green", weights[1])]
    found = endpoints(backends, SERVICES, pods)
    if sum(weights) == 0:
        assert found == []
        return
    assert sum(e.share for e in found) == pytest.approx(1.0)
    green = sum(e.share for e in found if e.slot == "green")
    assert green == pytest.approx(weights[1] / sum(weights))
