"""Prometheus and pod calls map an httpx failure to the same words (operator/http_json.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from modelfleet.operator.prometheus import PrometheusError, query_api
from modelfleet.operator.replay import ReplayClient, ReplayError

POD = "10.0.0.7:8082"


def _client(failure: Exception | httpx.Response) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, Exception):
            raise failure
        return failure

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def _both(failure: Exception | httpx.Response) -> tuple[str, str]:
    async with _client(failure) as client:
        with pytest.raises(PrometheusError) as prometheus:
            await query_api(client, "http://p:9090", "up", 0.0, 5.0)
        with pytest.raises(ReplayError) as pod:
            await ReplayClient(client, timeout_s=5.0).replay(POD, [[1.0]])
    return str(prometheus.value), str(pod.value)


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (
            httpx.ConnectError("connection refused"),
            "unreachable (ConnectError: connection refused)",
        ),
        (httpx.ReadTimeout("slow"), "timed out after 5 s"),
        (httpx.Response(503, text="Service Unavailable"), "HTTP 503, not a JSON answer"),
    ],
    ids=["refused", "timeout", "not-json"],
)
def test_prometheus_and_pods_say_the_same_of_one_failure(
    failure: Exception | httpx.Response, said: str
) -> None:
    prometheus, pod = asyncio.run(_both(failure))
    assert prometheus == said
    assert pod == f"{POD}: {said}"
