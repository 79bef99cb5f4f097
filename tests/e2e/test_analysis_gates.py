"""The model-aware gates against a real Prometheus scraping real model-server processes.

Five servers of one deployment serving examples/models: the stable slot (v1, keeping a live sample
of its inputs), and four canary revisions: an honest retrain (v2), a model trained on a relabelled
target (its outputs shift), a model trained with its features permuted (a "silent bug": same
output distribution, wrong answers), and v1 itself. The traffic driver sends each batches of
varied rows (features drawn like the training data) for a few seconds; then

- the drift gate (PSI of the prediction histograms, canary vs stable over the same window) must
  fail the relabelled model with the measured PSI in the message and pass the honest retrain;
- the paired gate (examples/models/reference.csv replayed to both slots' metrics ports) must fail
  the permuted model with the measured agreement in the message and pass the honest retrain, from
  the reference set and from the stable's live sample alike;
- replayed rows are counted nowhere: the analyzer still counts exactly the driver's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
import pytest
from modelfleet_dev.harness.driver import Tally
from modelfleet_dev.harness.model_aware import REFERENCE, VariedRowsDriver, row_payloads
from modelfleet_dev.harness.stack import MODELS, LocalStack, Server
from modelfleet_dev.harness.weights import Endpoint
from modelfleet_dev.localcluster.cluster import free_port

from modelfleet.operator.api import AnalysisSpec, ReplaySpec
from modelfleet.operator.gates import PrometheusAndPairedGates
from modelfleet.operator.measurement import AnalysisTarget, Measurement
from modelfleet.operator.replay import ReferenceRows

DEPLOYMENT = "churn"
# Rows, not requests, feed the drift gate: few requests of many rows each keep five drivers and
# five servers light on a shared 2-core machine.
RPS = 10.0
LOAD_S = 10.0
ROWS_PER_REQUEST = 64
MIN_REQUESTS = 30  # ≥ 1,920 rows per server: above minDriftSamples
MAX_DRIFT = 0.2
MIN_AGREEMENT = 0.9
# Gates only: latency and errors are the other e2e test's business (a loaded 2-core box).
BASE = {"max_p99_latency_ms": 5000, "min_requests": 20}
DRIFT = AnalysisSpec(**BASE, max_prediction_drift=MAX_DRIFT, min_drift_samples=1000)
PAIRED = AnalysisSpec(
    **BASE, min_agreement=MIN_AGREEMENT, replay=ReplaySpec(reference_uri=REFERENCE.as_uri())
)
LIVE = AnalysisSpec(
    **BASE, min_agreement=MIN_AGREEMENT, replay=ReplaySpec(live_sample=True, rows=512)
)
CANARIES = {
    "v2": "model-v2.txt",
    "relabelled": "model-relabelled.txt",
    "permuted": "model-permuted.txt",
    "same": "model.txt",
}


@dataclass
class Loaded:
    stack: LocalStack
    servers: dict[str, Server]
    tallies: dict[str, Tally]
    since: datetime


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    for needed in (REFERENCE, *(MODELS / model for model in CANARIES.values())):
        assert needed.is_file(), f"{needed.name} is missing: run `make examples`"
    stack = LocalStack(tmp_path_factory.mktemp("stack"), scrape_interval="1s").start()
    try:
        servers = {
            "stable": stack.start_server(
                "stable",
                deployment=DEPLOYMENT,
                slot="blue",
                revision="r1",
                model=MODELS / "model.txt",
                env={"MODELFLEET_LIVE_SAMPLE_ROWS": "1024"},
            )
        }
        for name, model in CANARIES.items():
            servers[name] = stack.start_server(
                name,
                deployment=DEPLOYMENT,
                slot="green",
                revision=f"r2-{name}",
                model=MODELS / model,
            )
        for server in servers.values():
            stack.wait_scraped(server)
        since = datetime.now(UTC)
        payloads = row_payloads(rows=ROWS_PER_REQUEST)
        drivers = {name: _driver(server, payloads) for name, server in servers.items()}
        with contextlib.ExitStack() as running:
            for driver in drivers.values():
                running.enter_context(driver.running())
            time.sleep(LOAD_S)
            # a machine shared with other suites may run the drivers slowly: load until each
            # server has the rows the gates need (bounded; the first test reports a shortfall)
            deadline = time.monotonic() + 6 * LOAD_S
            while time.monotonic() < deadline and any(
                driver.snapshot_tally().total() < MIN_REQUESTS for driver in drivers.values()
            ):
                time.sleep(0.5)
        time.sleep(3.0)  # two scrapes after the last answer: every prediction is in Prometheus
        yield Loaded(stack, servers, {n: d.snapshot_tally() for n, d in drivers.items()}, since)
    finally:
        stack.close()


def _driver(server: Server, payloads: list[dict[str, object]]) -> VariedRowsDriver:
    async def snapshot() -> list[Endpoint]:
        return [Endpoint(server.address, server.slot, server.revision, 1.0)]

    return VariedRowsDriver(
        snapshot, rps=RPS, path=f"/v2/models/{DEPLOYMENT}/infer", payloads=payloads
    )


def target(loaded: Loaded, canary: str, **changes: object) -> AnalysisTarget:
    server, stable = loaded.servers[canary], loaded.servers["stable"]
    found = AnalysisTarget(
        namespace=loaded.stack.namespace,
        name=DEPLOYMENT,
        canary_slot=server.slot,
        canary_revision=server.revision,
        stable_slot=stable.slot,
        stable_revision=stable.revision,
        weight=10,
        since=loaded.since,
        canary_address=server.metrics_address,
        stable_address=stable.metrics_address,
    )
    return replace(found, **changes)  # type: ignore[arg-type]


def measure(loaded: Loaded, where: AnalysisTarget, spec: AnalysisSpec) -> Measurement:
    async def run() -> Measurement:
        async with httpx.AsyncClient() as client:
            analyzer = PrometheusAndPairedGates(client, loaded.stack.prometheus.url)
            return await analyzer.measure(where, spec, datetime.now(UTC))

    return asyncio.run(run())


def test_the_driver_loaded_every_server(loaded: Loaded) -> None:
    for name, tally in loaded.tallies.items():
        assert tally.total() >= MIN_REQUESTS, (name, tally.counts)
        assert tally.failed() == 0, (name, tally.counts)


# --- the drift gate ----------------------------------------------------------------------------

DRIFT_MESSAGE = re.compile(
    r"prediction drift PSI ([0-9.]+) > 0\.20 on output `(probabilities\[\d\])` over "
    r"([0-9,]+) canary rows"
)


def test_shifted_outputs_fail_the_drift_gate(loaded: Loaded) -> None:
    measurement = measure(loaded, target(loaded, "relabelled"), DRIFT)
    assert measurement.phase == "Fail", measurement.message
    found = DRIFT_MESSAGE.fullmatch(measurement.message)
    assert found, measurement.message
    rows = loaded.tallies["relabelled"].total() * ROWS_PER_REQUEST
    assert int(found.group(3).replace(",", "")) == rows  # every row counted, exactly
    assert measurement.prediction_drift is not None
    assert measurement.prediction_drift > MAX_DRIFT
    assert float(found.group(1)) == pytest.approx(measurement.prediction_drift, abs=0.005)
    assert measurement.drift_output == found.group(2)


@pytest.mark.parametrize("canary", ["v2", "same"])
def test_an_honest_retrain_and_the_same_model_pass_the_drift_gate(
    loaded: Loaded, canary: str
) -> None:
    measurement = measure(loaded, target(loaded, canary), DRIFT)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.prediction_drift is not None
    assert measurement.prediction_drift < MAX_DRIFT / 2
    assert measurement.requests == loaded.tallies[canary].total()


def test_the_silent_bug_passes_the_drift_gate(loaded: Loaded) -> None:
    """The blind spot the paired gate exists for: permuted i.i.d. features keep the distribution."""
    measurement = measure(loaded, target(loaded, "permuted"), DRIFT)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.prediction_drift is not None
    assert measurement.prediction_drift < MAX_DRIFT / 2


def test_too_few_predictions_is_inconclusive_never_pass(loaded: Loaded) -> None:
    spec = DRIFT.model_copy(update={"min_drift_samples": 10**7})
    measurement = measure(loaded, target(loaded, "relabelled"), spec)
    assert measurement.phase == "Inconclusive", measurement.message
    assert "fewer than 10,000,000 canary predictions" in measurement.message


# --- the paired gate ---------------------------------------------------------------------------

AGREEMENT_MESSAGE = re.compile(r"agreement ([0-9.]+) % < 90 % over 512 replayed rows")


@pytest.mark.parametrize("spec", [PAIRED, LIVE], ids=["reference", "live-sample"])
def test_a_permuted_model_fails_the_paired_gate(loaded: Loaded, spec: AnalysisSpec) -> None:
    measurement = measure(loaded, target(loaded, "permuted"), spec)
    assert measurement.phase == "Fail", measurement.message
    found = AGREEMENT_MESSAGE.fullmatch(measurement.message)
    assert found, measurement.message
    assert measurement.agreement is not None
    assert measurement.agreement < 0.7
    assert float(found.group(1)) == pytest.approx(measurement.agreement * 100, abs=0.05)
    assert measurement.replayed_rows == 512
    assert measurement.score_delta_max is not None
    assert measurement.score_delta_max > 0.5


@pytest.mark.parametrize("spec", [PAIRED, LIVE], ids=["reference", "live-sample"])
def test_an_honest_retrain_passes_the_paired_gate(loaded: Loaded, spec: AnalysisSpec) -> None:
    measurement = measure(loaded, target(loaded, "v2"), spec)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.agreement is not None
    assert measurement.agreement >= MIN_AGREEMENT
    assert measurement.message.endswith("over 512 replayed rows")


def test_the_same_model_agrees_on_every_row_within_float_noise(loaded: Loaded) -> None:
    # 1e-4, not 0: a server may answer from the model's ONNX twin (float32) once it is converted
    spec = PAIRED.model_copy(update={"max_score_delta": 1e-4})
    measurement = measure(loaded, target(loaded, "same"), spec)
    assert measurement.phase == "Pass", measurement.message
    assert measurement.agreement == 1.0


def test_replayed_rows_are_counted_nowhere(loaded: Loaded) -> None:
    for _ in range(2):
        measure(loaded, target(loaded, "v2"), PAIRED)
    time.sleep(2.5)  # two more scrapes
    measurement = measure(loaded, target(loaded, "v2"), DRIFT)
    assert measurement.requests == loaded.tallies["v2"].total()
    assert measurement.message.endswith(
        f"over {loaded.tallies['v2'].total() * ROWS_PER_REQUEST:,} canary rows"
    )


def test_an_unreachable_pod_is_an_error_for_on_metrics_unavailable(loaded: Loaded) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    measurement = measure(loaded, target(loaded, "v2", canary_address=dead), PAIRED)
    assert measurement.phase == "Error", measurement.message
    assert dead in measurement.message


def test_every_gate_at_once_names_what_failed(loaded: Loaded) -> None:
    spec = AnalysisSpec(
        **BASE,
        max_prediction_drift=MAX_DRIFT,
        min_drift_samples=1000,
        min_agreement=MIN_AGREEMENT,
        max_score_delta=0.5,
        replay=ReplaySpec(reference_uri=REFERENCE.as_uri()),
    )
    permuted = measure(loaded, target(loaded, "permuted"), spec)
    assert permuted.phase == "Fail", permuted.message
    assert "agreement" in permuted.message
    assert permuted.prediction_drift is not None  # measured alongside, in status
    honest = measure(loaded, target(loaded, "v2"), spec)
    assert honest.phase == "Pass", honest.message
    status = honest.to_status()
    assert status.replayed_rows == 512
    assert status.score_delta_mean is not None
    assert status.score_delta_mean <= status.score_delta_max  # type: ignore[operator]


def test_the_reference_set_is_512_rows(loaded: Loaded) -> None:
    rows = asyncio.run(ReferenceRows().rows(REFERENCE.as_uri(), "r2"))
    assert len(rows) == 512
    assert {len(row) for row in rows} == {16}
