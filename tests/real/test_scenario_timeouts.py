"""Timeouts on the HTTPRoute, on the real tier, through Traefik's Gateway (issue #18).

Traefik v3.6 publishes neither `HTTPRouteRequestTimeout` nor `HTTPRouteBackendTimeout` (nor
`HTTPRouteRetry`) in its GatewayClass's `status.supportedFeatures`, and its Gateway API provider
never reads an HTTPRoute rule's `timeouts` or `retry`. So:

S10 a v1 whose server waits 2 s before every answer (`MODELFLEET_FAULT_LATENCY_MS`), with
    `traffic.gateway.timeouts.request: 1s`: the operator leaves `timeouts` off its HTTPRoute and
    says why in the RoutePolicy condition (class `traefik`, the missing feature); v1 is Ready and
    answers through the Gateway (200 after ~2 s: no timeout applies). A route the test writes
    itself with `timeouts.request: 1s` to the same Service is Accepted by Traefik and still
    answered 200 after ~2 s, never 504: Traefik accepts the field and ignores it, which is why the
    operator refuses to write it (test_s10_…)
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from modelfleet.operator.builders.common import SERVICE_PORT
from tests.real.conftest import RealStack
from tests.real.test_scenarios import (
    REQUEST,
    _apply,
    _condition,
    _get,
    _status,
    _wait,
    _wait_md_ready,
    model_deployment,
)

pytestmark = pytest.mark.slow

LATENCY_MS = 2000  # injected before every answer
TIMEOUT = "1s"  # what the spec (and the test's own route) asks of the Gateway
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"


def _timed_answer(gateway: str, host: str, name: str) -> tuple[int, float]:
    """One inference through the Gateway for `host`: its code and the seconds it took."""
    started = time.monotonic()
    answer = httpx.post(
        f"http://{gateway}/v2/models/{name}/infer",
        json=REQUEST,
        headers={"host": host},
        timeout=10,
    )
    return answer.status_code, time.monotonic() - started


def _accepted(stack: RealStack, namespace: str, name: str) -> dict[str, Any] | None:
    """The route once Traefik's Gateway has Accepted it."""
    route = _get(stack, ROUTES.format(namespace=namespace, name=name))
    for parent in route.get("status", {}).get("parents", []):
        for condition in parent.get("conditions", []):
            if condition["type"] == "Accepted" and condition["status"] == "True":
                return route
    return None


def _own_route(namespace: str, host: str, service: str) -> dict[str, Any]:
    """The test's own HTTPRoute with the request timeout the operator refused to write."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "timeout-probe", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "modelfleet", "namespace": "traefik"}],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": service, "port": SERVICE_PORT}],
                    "timeouts": {"request": TIMEOUT},
                }
            ],
        },
    }


def test_s10_traefik_cannot_serve_route_timeouts_so_none_is_written(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = "fraud", f"{real_namespace}.real.test"
    slow = {"MODELFLEET_FAULT_LATENCY_MS": str(LATENCY_MS)}
    manifest = model_deployment(real_stack, name, "model.txt", "v1", host, slow)
    manifest["spec"]["traffic"]["gateway"]["timeouts"] = {"request": TIMEOUT}
    _apply(real_stack, real_namespace, manifest)
    _wait_md_ready(real_stack, real_namespace, name)

    status = _status(real_stack, real_namespace, name)
    policy = _condition(status, "RoutePolicy")
    assert (policy["status"], policy["reason"]) == ("False", "RoutePolicyRefused"), policy
    assert policy["message"] == (
        "GatewayClass traefik does not support HTTPRouteRequestTimeout "
        "(status.supportedFeatures): timeouts refused"
    )
    route = _wait(
        "the operator's route Accepted", lambda: _accepted(real_stack, real_namespace, name)
    )
    assert all("timeouts" not in rule for rule in route["spec"]["rules"]), route["spec"]
    code, seconds = _wait(
        "v1 answering through the Gateway",
        lambda: found if (found := _timed_answer(gateway, host, name))[0] == 200 else None,
        60,
    )
    print(f"the operator's route: {code} after {seconds:.2f} s")
    assert seconds >= LATENCY_MS / 1000  # the slow answer is served whole

    probe_host = f"timeout.{host}"
    service = f"{name}-{status['activeSlot']}"
    _apply(real_stack, real_namespace, _own_route(real_namespace, probe_host, service))
    written = _wait(
        "the test's route Accepted",
        lambda: _accepted(real_stack, real_namespace, "timeout-probe"),
        60,
    )
    assert written["spec"]["rules"][0]["timeouts"] == {"request": TIMEOUT}  # the CRD keeps it
    answers = []
    for _ in range(3):
        found = _wait(
            "an answer on the test's route",
            lambda: a if (a := _timed_answer(gateway, probe_host, name))[0] != 404 else None,
            60,
        )
        answers.append(found)
    print(f"a route with timeouts.request {TIMEOUT} on Traefik: {answers}")
    for code, seconds in answers:
        assert code == 200, answers  # never 504: Traefik ignores the route's timeout
        assert seconds >= LATENCY_MS / 1000, answers
