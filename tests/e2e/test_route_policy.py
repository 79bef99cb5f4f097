"""Timeouts and retry on the HTTPRoute end to end: the operator, a real Prometheus, process-backed pods.

There is no gateway on the kwok tier: the Gateway's class publishes what an implementation would
(`harness.gateway`), and the traffic driver plays the proxy.

- On a class that lists neither timeout feature nor HTTPRouteRetry (as Traefik v3.6's does not), the
  route is written without them and the RoutePolicy condition names the class and the features;
  v1 keeps serving every request.
- On a class that lists them, the timeouts are on the route; a gateway retrying the 500s it gets
  (the driver, retrying on a backend picked again by the weights) hides most of a bad canary's
  failures from the users, and the canary is rolled back all the same, because the gates count the
  canary's own answers at the server, every attempt. `retry` itself is then refused: the cluster
  has Gateway API's standard-channel HTTPRoute CRD, which does not declare it (the API server
  would refuse the whole route).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest
from modelfleet_dev.harness.gateway import BASE_FEATURES, install_gateway
from modelfleet_dev.harness.rollout import (
    apply,
    apply_healthy,
    model_deployment,
    read_status,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.harness.weights import RetryPolicy
from modelfleet_dev.localcluster import LocalCluster

NAME = "fraud"
GATEWAY = "e2e"
RPS = 60.0
TIMEOUTS: dict[str, Any] = {"request": "30s", "backendRequest": "10s"}
RETRY: dict[str, Any] = {"attempts": 2, "codes": [500, 502, 503]}
POLICY_FEATURES = ("HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout", "HTTPRouteRetry")


def _manifest(
    cluster: LocalCluster, policy: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    policy = {"timeouts": TIMEOUTS, "retry": RETRY} if policy is None else policy
    gateway = {"parentRefs": [{"name": GATEWAY}], **policy}
    return model_deployment(
        NAME, prometheus_url=cluster.prometheus_url, traffic={"gateway": gateway}, **changes
    )


def _route(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(cluster.api_client())
    route = api.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", NAME
    )
    return cast(dict[str, Any], route)


def _route_policy(status: Mapping[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions", []) if c["type"] == "RoutePolicy"]
    return found[0] if found else {}


def _healthy_v1(
    cluster: LocalCluster,
    namespace: str,
    class_name: str,
    features: Sequence[str],
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    install_gateway(cluster.api_client(), namespace, GATEWAY, class_name, features)
    return dict(apply_healthy(cluster, namespace, _manifest(cluster, policy)))


@pytest.fixture
def refusing(cluster: LocalCluster, namespace: str, operator: Any) -> dict[str, Any]:
    return _healthy_v1(cluster, namespace, "modelfleet-e2e-no-policy", BASE_FEATURES)


def test_a_class_without_the_features_gets_a_route_without_them_and_a_condition(
    cluster: LocalCluster, namespace: str, refusing: dict[str, Any]
) -> None:
    refusal = (
        "GatewayClass modelfleet-e2e-no-policy does not support HTTPRouteRequestTimeout, "
        "HTTPRouteBackendTimeout, HTTPRouteRetry (status.supportedFeatures): timeouts and retry "
        "refused"
    )
    condition = _route_policy(refusing)
    assert (condition["status"], condition["reason"]) == ("False", "RoutePolicyRefused")
    assert condition["message"] == refusal
    with traffic_driver(cluster, namespace, NAME, RPS).running() as driver:
        time.sleep(6)  # a few reconciles: the route stays bare, v1 answers everything
        tally = driver.snapshot_tally()
    for rule in _route(cluster, namespace)["spec"]["rules"]:
        assert "timeouts" not in rule, rule
        assert "retry" not in rule, rule
    assert tally.total() > 200, tally.counts
    assert tally.failed() == 0, tally.counts
    still = read_status(cluster, namespace, NAME)
    assert (still["phase"], _route_policy(still)["message"]) == ("Healthy", refusal)


@pytest.fixture
def serving(cluster: LocalCluster, namespace: str, operator: Any) -> dict[str, Any]:
    features = (*BASE_FEATURES, *POLICY_FEATURES)
    return _healthy_v1(
        cluster, namespace, "modelfleet-e2e-policy", features, {"timeouts": TIMEOUTS}
    )


def test_retries_hide_a_bad_canary_from_users_but_not_from_the_gates(
    cluster: LocalCluster, namespace: str, serving: dict[str, Any]
) -> None:
    assert _route_policy(serving)["status"] == "True"
    for rule in _route(cluster, namespace)["spec"]["rules"]:
        assert rule["timeouts"] == TIMEOUTS
    retry = RetryPolicy(RETRY["attempts"], frozenset(RETRY["codes"]))  # as a gateway would
    with traffic_driver(cluster, namespace, NAME, RPS, retry=retry).running() as driver:
        apply(
            cluster,
            namespace,
            _manifest(
                cluster,
                {"timeouts": TIMEOUTS},
                model="model-v2.txt",
                version="v2",
                steps=(50, 100),
                env={"MODELFLEET_FAULT_ERROR_RATE": "0.2"},
            ),
        )
        status = wait_for(
            cluster, namespace, NAME, lambda s: s.get("phase") == "Degraded", 150, "rolled back"
        )
        tally = driver.snapshot_tally()
    entry = status["history"][0]
    assert entry["outcome"] == "RolledBack"
    assert entry["message"].startswith("error rate "), entry["message"]
    canary = entry["revision"]
    canary_500s = sum(n for (_, rev, code), n in tally.retried.items() if rev == canary) + sum(
        n for (_, rev, code), n in tally.counts.items() if rev == canary and code == 500
    )
    print(f"canary 500s {canary_500s}; retried {tally.retried}; users saw {tally.counts}")
    assert canary_500s >= 5, (tally.retried, tally.counts)  # the canary failed, and was counted
    # most of its failures never reached a user: a retry answered them (a 20 % canary at 50 %
    # leaves ~1 % after one retry, ~0.2 % after two)
    assert tally.failed() < 0.25 * canary_500s, (tally.failed(), canary_500s)

    # the route's own retry: the standard-channel CRD has no rules[].retry, so nothing is written
    apply(cluster, namespace, _manifest(cluster))  # v1 again (active: no rollout), with retry
    refused = wait_for(
        cluster,
        namespace,
        NAME,
        lambda s: _route_policy(s).get("reason") == "RoutePolicyRefused",
        60,
        "retry refused",
    )
    assert _route_policy(refused)["message"] == (
        "CustomResourceDefinition httproutes.gateway.networking.k8s.io declares no "
        "rules[].retry: timeouts and retry refused"
    )
    for rule in _route(cluster, namespace)["spec"]["rules"]:
        assert "retry" not in rule, rule
        assert "timeouts" not in rule, rule
