"""The real tier's scenario stack, on top of `real_cluster` (hack/modelfleet_dev/realnode/pytest_plugin.py).

`real_stack` (session) adds what the headline scenarios need, each as a user would have it:
Prometheus run by prometheus-operator from a `Prometheus` object, finding the slot pods through
the operator's PodMonitors (realnode.prometheus), the example models served over
HTTP there (realnode.install.serve_models), Traefik's Gateway, and the operator installed with
`kubectl apply -k` of the real tier's overlay of manifests/ (realnode.install.install_operator).
`gateway` yields a loopback address forwarding to the Gateway's listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from modelfleet_dev.realnode import clients, install, prometheus
from modelfleet_dev.realnode.cluster import RealCluster

T = TypeVar("T")


@dataclass
class RealStack:
    real: RealCluster
    prometheus_url: str  # inside the namespace: what the operator Pod queries
    models_url: str  # inside the namespace: http://10.240.0.1:8090
    gateway: str  # <ClusterIP>:8000 of Traefik's Service, inside the namespace
    timings: dict[str, float] = field(default_factory=dict)


def _timed(timings: dict[str, float], key: str, step: Callable[[], T]) -> T:
    started = time.monotonic()
    result = step()
    timings[key] = round(time.monotonic() - started, 1)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario's report carries the operator's log, read with `kubectl logs`."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("real_stack")
    if report.when == "call" and report.failed and isinstance(stack, RealStack):
        report.sections.append(("operator log (kubectl logs)", install.operator_logs(stack.real)))
    return report


@pytest.fixture(scope="session")
def real_stack(real_cluster: RealCluster) -> RealStack:
    timings: dict[str, float] = {}
    try:
        prometheus_url = _timed(timings, "prometheus_s", lambda: prometheus.start(real_cluster))
        models_url = _timed(timings, "models_s", lambda: install.serve_models(real_cluster))
        gateway = _timed(timings, "gateway_s", lambda: install.install_gateway(real_cluster))
        _timed(
            timings,
            "operator_s",
            lambda: install.install_operator(real_cluster, prometheus_url),
        )
    except Exception as error:  # any piece: the message names it
        pytest.fail(f"the real tier's stack did not install: {error}", pytrace=False)
    return RealStack(real_cluster, prometheus_url, models_url, gateway, timings)


@pytest.fixture
def gateway(real_stack: RealStack) -> Iterator[str]:
    """`127.0.0.1:<port>` forwarding to the Gateway's listener inside the namespace."""
    host, _, port = real_stack.gateway.rpartition(":")
    with clients.forward(real_stack.real.netns, host, int(port)) as local:
        yield local
