"""The driver's gateway retry: the operator's HTTPRoute `retry` read back, and a failed answer retried
on a backend picked again by the weights, the retried answer counted apart from the user's."""

from __future__ import annotations

import asyncio

import httpx
from modelfleet_dev.harness.driver import TrafficDriver
from modelfleet_dev.harness.weights import Endpoint, RetryPolicy, retry_from_httproute

from modelfleet.operator.api import TrafficSpec
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.routers import Routing
from modelfleet.operator.routers.gateway import GatewayRouter

OWNER = Owner(name="fraud", namespace="ml", uid="u")


def test_the_operators_httproute_retry_is_read_back() -> None:
    gateway = {"parentRefs": [{"name": "gw"}], "retry": {"attempts": 2, "codes": [500, 503]}}
    traffic = TrafficSpec.model_validate({"gateway": gateway})
    (route,) = GatewayRouter().build(OWNER, traffic, Routing("blue", "green", 50))
    assert retry_from_httproute(route) == RetryPolicy(2, frozenset({500, 503}))
    plain = TrafficSpec.model_validate({"gateway": {"parentRefs": [{"name": "gw"}]}})
    (route,) = GatewayRouter().build(OWNER, plain, Routing("blue"))
    assert retry_from_httproute(route) is None


async def _no_snapshot() -> list[Endpoint]:
    return []


def _send_all(driver: TrafficDriver, requests: int) -> None:
    """`requests` user requests through the driver, to pods answered by a mock transport: the
    canary (green, 127.0.0.2) always 500, the stable (blue, 127.0.0.1) always 200."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.host == "127.0.0.2" else 200)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            for _ in range(requests):
                await driver._inflight.acquire()
                await driver._send(client)

    driver._endpoints = (
        Endpoint("127.0.0.1:1", "blue", "r1", 0.5),
        Endpoint("127.0.0.2:1", "green", "r2", 0.5),
    )
    asyncio.run(main())


def test_a_retry_hides_the_canary_s_500s_from_users_but_not_from_the_count() -> None:
    retrying = TrafficDriver(
        _no_snapshot, rps=1, path="/", payload={}, retry=RetryPolicy(3, frozenset({500}))
    )
    _send_all(retrying, 400)
    tally = retrying.snapshot_tally()
    canary_answers = tally.retried[("green", "r2", 500)] + tally.failed(slot="green")
    assert canary_answers > 150  # every canary answer was a 500 and each one is still there
    assert tally.failed() < 0.1 * canary_answers  # yet few reached a user: retried on blue
    assert sum(tally.counts.values()) == 400  # one answer per user request

    plain = TrafficDriver(_no_snapshot, rps=1, path="/", payload={})
    _send_all(plain, 400)
    assert plain.snapshot_tally().retried == {}
    assert plain.snapshot_tally().failed() > 150
