"""The Prometheus analyzer against a real Prometheus scraping real model-server processes.

Four servers of one deployment: the stable slot, and three canary revisions (healthy, 5 % injected
5xx, 2 s injected latency). The traffic driver loads each for a few seconds; then the analyzer
must count exactly what the driver saw, fail the bad ones with the measured values in the message,
call a revision without traffic Inconclusive (and say that traffic is not reaching it when the
stable slot served requests in the same window), and a stopped Prometheus an Error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from modelfleet_dev.harness.driver import Tally, TrafficDriver
from modelfleet_dev.harness.stack import MODELS, LocalStack, Server
from modelfleet_dev.harness.weights import Endpoint

from modelfleet.operator.api import AnalysisSpec, MetricCheck
from modelfleet.operator.gates import PrometheusAndPairedGates
from modelfleet.operator.measurement import AnalysisTarget, Measurement

DEPLOYMENT = "fraud"
RPS = 40.0
LOAD_S = 8.0
# A p99 limit a loaded 2-core machine keeps: the healthy servers answer in milliseconds.
SPEC = AnalysisSpec(max_p99_latency_ms=1000)
PAYLOAD = json.loads((MODELS / "request.json").read_text())


@dataclass
class Loaded:
    stack: LocalStack
    servers: dict[str, Server]
    tallies: dict[str, Tally]
    since: datetime


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    stack = LocalStack(tmp_path_factory.mktemp("stack"), scrape_interval="1s").start()
    try:
        servers = {
            "stable": stack.start_server(
                "stable", deployment=DEPLOYMENT, slot="blue", revision="r1"
            ),
            "ok": stack.start_server("ok", deployment=DEPLOYMENT, slot="green", revision="r2-ok"),
            "bad": stack.start_server(
                "bad",
                deployment=DEPLOYMENT,
                slot="green",
                revision="r2-bad",
                env={"MODELFLEET_FAULT_ERROR_RATE": "0.05"},
            ),
            "slow": stack.start_server(
                "slow",
                deployment=DEPLOYMENT,
                slot="green",
                revision="r2-slow",
                env={"MODELFLEET_FAULT_LATENCY_MS": "2000"},
            ),
        }
        for server in servers.values():
            stack.wait_scraped(server)
        since = datetime.now(UTC)
        drivers = {name: _driver(server) for name, server in servers.items()}
        with contextlib.ExitStack() as running:
            for driver in drivers.values():
                running.enter_context(driver.running())
            time.sleep(LOAD_S)
        time.sleep(3.0)  # two scrapes after the last answer: every request is in Prometheus
        yield Loaded(stack, servers, {n: d.snapshot_tally() for n, d in drivers.items()}, since)
    finally:
        stack.close()


def _driver(server: Server) -> TrafficDriver:
    async def snapshot() -> list[Endpoint]:
        return [Endpoint(server.address, server.slot, server.revision, 1.0)]

    return TrafficDriver(
        snapshot,
        rps=RPS,
        path=f"/v2/models/{DEPLOYMENT}/infer",
        payload=PAYLOAD,
        max_inflight=256,  # 40 req/s at 2 s each
    )


def measure(loaded: Loaded, canary: str, spec: AnalysisSpec | None = None) -> Measurement:
    server, stable = loaded.servers[canary], loaded.servers["stable"]
    target = AnalysisTarget(
        namespace=loaded.stack.namespace,
        name=DEPLOYMENT,
        canary_slot=server.slot,
        canary_revision=server.revision,
        stable_slot=stable.slot,
        stable_revision=stable.revision,
        weight=10,
        since=loaded.since,
    )

    async def run() -> Measurement:
        async with httpx.AsyncClient() as client:
            analyzer = PrometheusAndPairedGates(client, loaded.stack.prometheus.url)
            return await analyzer.measure(target, spec or SPEC, datetime.now(UTC))

    return asyncio.run(run())


def test_the_driver_loaded_every_server(loaded: Loaded) -> None:
    for name, tally in loaded.tallies.items():
        # half the nominal load at least (the 2 s server holds connections; the box is shared)
        assert tally.total() >= RPS * LOAD_S * 0.5, (name, tally.counts)
        assert all(code in (200, 500) for _, _, code in tally.counts), (name, tally.counts)


def test_healthy_canary_passes_and_counts_exactly(loaded: Loaded) -> None:
    measurement = measure(loaded, "ok")
    tally = loaded.tallies["ok"]
    assert measurement.phase == "Pass", measurement.message
    assert measurement.requests == tally.total()  # exact: no increase() extrapolation
    assert measurement.error_rate == 0.0
    assert measurement.p99_ms is not None
    assert measurement.p99_ms < 1000


def test_erroring_canary_fails_with_the_measured_rate(loaded: Loaded) -> None:
    measurement = measure(loaded, "bad")
    tally = loaded.tallies["bad"]
    assert measurement.phase == "Fail", measurement.message
    assert measurement.requests == tally.total()
    errors = tally.counts[("green", "r2-bad", 500)]
    assert measurement.error_rate == pytest.approx(errors / tally.total())
    rate = f"{errors / tally.total() * 100:.1f} %"
    assert measurement.message.startswith(f"error rate {rate} [")
    assert f"> 1.0 % over {tally.total():,} requests" in measurement.message


def test_slow_canary_fails_on_its_own_p99(loaded: Loaded) -> None:
    measurement = measure(loaded, "slow")
    assert measurement.phase == "Fail", measurement.message
    assert measurement.p99_ms is not None
    assert 2000 <= measurement.p99_ms <= 5000
    assert measurement.message.startswith("p99 ")
    assert "> 1,000 ms" in measurement.message


def test_regression_against_the_stable_slot_in_the_same_window(loaded: Loaded) -> None:
    spec = AnalysisSpec(max_p99_latency_ms=5000, max_p99_regression_ratio=2.0)
    slow = measure(loaded, "slow", spec)
    assert slow.phase == "Fail", slow.message
    assert slow.stable_p99_ms is not None
    assert slow.stable_p99_ms < 1000
    assert "× stable" in slow.message
    assert (
        measure(
            loaded, "ok", AnalysisSpec(max_p99_latency_ms=1000, max_p99_regression_ratio=50.0)
        ).phase
        == "Pass"
    )


def test_extra_promql_checks_are_templated_and_judged(loaded: Loaded) -> None:
    errors = MetricCheck(
        name="5xx answers",
        query='sum(modelfleet_requests_total{namespace="{{namespace}}",deployment="{{name}}",'
        'slot="{{slot}}",revision="{{revision}}",code=~"5.."})',
        max=0,
    )
    loaded_model = MetricCheck(
        name="model loaded",
        query='sum(modelfleet_model_info{deployment="{{name}}",revision="{{revision}}"})',
        min=1,
    )
    bad = measure(loaded, "bad", AnalysisSpec(min_requests=10**6, metrics=[errors]))
    assert bad.phase == "Fail", bad.message
    errors_seen = loaded.tallies["bad"].counts[("green", "r2-bad", 500)]
    assert f"5xx answers = {errors_seen} > 0" in bad.message
    ok = measure(loaded, "ok", AnalysisSpec(max_p99_latency_ms=1000, metrics=[loaded_model]))
    assert ok.phase == "Pass", ok.message


def test_a_revision_without_traffic_is_inconclusive(loaded: Loaded) -> None:
    target = AnalysisTarget(
        "e2e", DEPLOYMENT, "green", "never-served", None, None, 10, loaded.since
    )

    async def run() -> Measurement:
        async with httpx.AsyncClient() as client:
            analyzer = PrometheusAndPairedGates(client, loaded.stack.prometheus.url)
            return await analyzer.measure(target, SPEC, datetime.now(UTC))

    measurement = asyncio.run(run())
    assert measurement.phase == "Inconclusive"
    assert "no canary requests" in measurement.message


def test_a_canary_the_router_does_not_feed_is_held_while_the_stable_slot_serves(
    loaded: Loaded,
) -> None:
    stable = loaded.servers["stable"]
    starved = AnalysisTarget(
        namespace=loaded.stack.namespace,
        name=DEPLOYMENT,
        canary_slot="green",
        canary_revision="never-served",
        stable_slot=stable.slot,
        stable_revision=stable.revision,
        weight=25,
        since=loaded.since,
        expected_share=0.25,
    )
    fed = dataclasses.replace(starved, canary_revision=loaded.servers["ok"].revision)

    async def run() -> tuple[Measurement, Measurement]:
        async with httpx.AsyncClient() as client:
            analyzer = PrometheusAndPairedGates(client, loaded.stack.prometheus.url)
            now = datetime.now(UTC)
            return (
                await analyzer.measure(starved, SPEC, now),
                await analyzer.measure(fed, SPEC, now),
            )

    held, passing = asyncio.run(run())
    assert held.phase == "Inconclusive", held.message
    assert held.message == "traffic is not reaching the canary: 0.0 % of requests at weight 25 %"
    assert held.request_share == 0.0
    # the healthy canary got as many requests as the stable slot: about half, well above 12.5 %
    assert passing.phase == "Pass", passing.message
    ok, served = loaded.tallies["ok"].total(), loaded.tallies["stable"].total()
    assert passing.request_share == pytest.approx(ok / (ok + served))


def test_stopped_prometheus_is_an_error_and_recovers(loaded: Loaded) -> None:
    loaded.stack.prometheus.stop()
    try:
        down = measure(loaded, "ok")
        assert down.phase == "Error"
        assert down.message.startswith(f"Prometheus at {loaded.stack.prometheus.url}: unreachable")
    finally:
        loaded.stack.prometheus.start()
    back = measure(loaded, "ok")
    assert back.phase == "Pass", back.message
    assert back.requests == loaded.tallies["ok"].total()
