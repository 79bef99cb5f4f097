"""The monitoring loop against a fake API server and a fake Prometheus reader: conditions, figures,
Events and CloudEvents on change only, gauges, errors as Unknown conditions, and a reconcile that
keeps what the loop wrote."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from modelfleet.operator.kube import KubeError
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.monitor_loop import Monitor, MonitorDeps, judge_window
from modelfleet.operator.monitor_read import BaselineFigures, Slot, SlotCounts
from modelfleet.operator.prometheus import PrometheusError
from modelfleet.operator.reconcile import reconcile
from tests.unit.operator.test_reconcile import FakeKube, _context, _md

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
FEATURES = [f"f{i}" for i in range(16)]
EDGES = [NormalDist().inv_cdf(k / 10) for k in range(1, 10)] + [math.inf]
BASELINE_ROWS = 20_000
HOOK = "http://alerts.example:8080/hook"


def _counts(
    rows: float,
    shifted: dict[str, float] | None = None,
    missing: dict[str, float] | None = None,
    *,
    loaded: bool = True,
) -> SlotCounts:
    """What N(0, 1) traffic (features in `shifted` moved by that many sd) counts on the deciles."""
    shifted, missing = shifted or {}, missing or {}

    def live(feature: str) -> dict[float, float]:
        present = rows * (1 - missing.get(feature, 0.0))
        mean = shifted.get(feature, 0.0)
        return {edge: present * NormalDist(mean).cdf(edge) for edge in EDGES}

    baseline = BaselineFigures(
        loaded=loaded,
        rows=BASELINE_ROWS,
        input_shares={f: {edge: NormalDist().cdf(edge) for edge in EDGES} for f in FEATURES},
        missing_ratio=dict.fromkeys(FEATURES, 0.0),
        out_of_range_ratio=dict.fromkeys(FEATURES, 0.0),
        stddev=dict.fromkeys(FEATURES, 1.0),
    )
    return SlotCounts(
        pods=2,
        rows=rows,
        inputs={f: live(f) for f in FEATURES} if loaded else {},
        missing={f: rows * missing.get(f, 0.0) for f in FEATURES},
        out_of_range=dict.fromkeys(FEATURES, 0.0),
        outputs={},
        baseline=baseline if loaded else BaselineFigures(),
    )


class FakeReader:
    """Hands out the next window (or raises it); records the targets read."""

    def __init__(self, *windows: SlotCounts | Exception) -> None:
        self.windows = list(windows)
        self.read_targets: list[tuple[Slot, float]] = []

    async def read(self, target: Slot, window_s: float, now: float) -> SlotCounts:
        self.read_targets.append((target, window_s))
        window = self.windows.pop(0) if len(self.windows) > 1 else self.windows[0]
        if isinstance(window, Exception):
            raise window
        return window


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.events.append(json.loads(request.content))
        self.authorization.append(request.headers.get("authorization"))
        return httpx.Response(202)


def _monitored(**monitoring: Any) -> dict[str, Any]:
    body = _md(
        monitoring={"baselineUri": "s3://m/baseline.csv", "interval": "5s", "window": "60s"}
        | monitoring
    )
    body["status"] = {"activeSlot": "blue", "activeRevision": "rev1", "observedGeneration": 1}
    return body


class Loop:
    """One Monitor wired to fakes, evaluated at T0, T0 + 5 s, …"""

    def __init__(
        self, reader: FakeReader, body: dict[str, Any] | None = None, kube: FakeKube | None = None
    ) -> None:
        self.kube = kube or FakeKube()
        self.key = ("ModelDeployment", "ml", "fraud")
        self.kube.objects[self.key] = body or _monitored()
        self.reader = reader
        self.receiver = Receiver()
        self.metrics = OperatorMetrics()
        self.written: list[dict[str, Any]] = []
        self.looks = 0

    @property
    def body(self) -> dict[str, Any]:
        return self.kube.objects[self.key]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == type_)

    def deps(self, http: httpx.AsyncClient) -> MonitorDeps:
        return MonitorDeps(
            kube=self.kube,
            http=http,
            reader_for=lambda url: self.reader,
            default_prometheus_url="http://prometheus:9090",
            judge=judge_window,
            metrics=self.metrics,
        )

    def run(self, looks: int = 1) -> list[float]:
        async def go() -> list[float]:
            async with httpx.AsyncClient(
                transport=httpx.MockTransport(self.receiver.handle)
            ) as http:
                monitor = Monitor(
                    self.deps(http),
                    "ml",
                    "fraud",
                    lock=asyncio.Lock(),
                    on_written=self.written.append,
                )
                delays = []
                for _ in range(looks):
                    now = T0 + timedelta(seconds=5 * self.looks)
                    delays.append(await monitor.evaluate(self.body, now))
                    self.looks += 1
                for _ in range(200):  # let the webhook deliver
                    if not monitor.sender.state().pending:
                        break
                    await asyncio.sleep(0.005)
                await monitor.sender.close()  # not stop(): the gauges stay to be read
                return delays

        return asyncio.run(go())

    def gauge(self, name: str, feature: str) -> float | None:
        value = self.metrics.registry.get_sample_value(
            name, {"namespace": "ml", "deployment": "fraud", "feature": feature}
        )
        return value


def test_baseline_traffic_is_neither_drifting_nor_a_data_quality_problem() -> None:
    loop = Loop(FakeReader(_counts(6000)))
    delays = loop.run(looks=5)

    assert delays == [5.0] * 5  # spec.monitoring.interval
    drifting, quality = loop.condition("Drifting"), loop.condition("DataQuality")
    assert (drifting["status"], drifting["reason"]) == ("False", "NoDrift")
    assert (quality["status"], quality["reason"]) == ("False", "WithinBaseline")
    figures = loop.body["status"]["monitoring"]
    assert figures["revision"] == "rev1"
    assert figures["window"] == "60s"
    assert figures["rows"] == 6000
    assert {f["name"] for f in figures["features"]} == set(FEATURES)
    assert all(f["drifting"] is False for f in figures["features"])
    assert figures["lastEvaluated"] == "2026-12-05T12:00:20Z"
    # one Event per condition, at the first verdict only: nothing changed afterwards
    assert [(kind, reason) for kind, reason, _ in loop.kube.events] == [
        ("Normal", "NoDrift"),
        ("Normal", "WithinBaseline"),
    ]
    assert drifting["lastTransitionTime"] == "2026-12-05T12:00:00Z"
    assert loop.reader.read_targets[0] == (Slot("ml", "fraud", "blue", "rev1"), 60.0)
    assert loop.gauge("modelfleet_monitoring_drifting", "f3") == 0
    assert loop.gauge("modelfleet_monitoring_psi", "f3") == pytest.approx(0, abs=1e-6)


def test_two_shifted_features_are_named_with_their_values_and_alerted_once() -> None:
    reader = FakeReader(_counts(6000), _counts(6000, shifted={"f3": 0.5, "f7": 0.5}))
    loop = Loop(reader, _monitored(webhook={"url": HOOK}))
    loop.run(looks=3)

    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("True", "DriftDetected")
    message = drifting["message"]
    assert message.startswith(("f3 PSI", "f7 PSI"))
    assert "f3 PSI" in message
    assert "f7 PSI" in message
    assert "over 6,000 rows in the last 60s" in message
    flagged = [f["name"] for f in loop.body["status"]["monitoring"]["features"] if f["drifting"]]
    assert sorted(flagged) == ["f3", "f7"]
    assert loop.body["status"]["monitoring"]["features"][0]["name"] in ("f3", "f7")  # worst first
    assert loop.gauge("modelfleet_monitoring_drifting", "f3") == 1
    assert loop.gauge("modelfleet_monitoring_drifting", "f4") == 0
    assert loop.gauge("modelfleet_monitoring_ks", "f7") == pytest.approx(0.197, abs=0.01)
    warnings = [e for e in loop.kube.events if e[0] == "Warning"]
    assert [reason for _, reason, _ in warnings] == ["DriftDetected"]
    # CloudEvents: Drifting False, DataQuality False at the first look, Drifting True at the second
    types = [(e["type"], e["data"]["condition"]["status"]) for e in loop.receiver.events]
    assert types == [
        ("io.modelfleet.monitoring.drifting", "False"),
        ("io.modelfleet.monitoring.dataquality", "False"),
        ("io.modelfleet.monitoring.drifting", "True"),
    ]
    last = loop.receiver.events[-1]
    assert last["data"]["condition"]["message"] == message
    assert {f["name"] for f in last["data"]["features"] if f.get("drifting")} == {"f3", "f7"}
    assert loop.receiver.authorization == [None, None, None]
    webhook = loop.body["status"]["monitoring"]["webhook"]
    assert webhook["failures"] == 0


def test_missing_values_on_one_feature_are_a_data_quality_problem() -> None:
    loop = Loop(FakeReader(_counts(6000, missing={"f5": 0.10})))
    loop.run()
    quality = loop.condition("DataQuality")
    assert (quality["status"], quality["reason"]) == ("True", "DataQualityDegraded")
    assert quality["message"].startswith("f5 missing 10.0 % vs 0.0 % in baseline")
    assert loop.gauge("modelfleet_monitoring_missing_ratio", "f5") == pytest.approx(0.1)


def test_too_few_rows_is_no_verdict() -> None:
    loop = Loop(FakeReader(_counts(300)))
    loop.run()
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "TooFewSamples")
    assert loop.gauge("modelfleet_monitoring_drifting", "f0") is None  # no verdict, no series


def test_no_series_at_all_is_no_verdict_that_says_so() -> None:
    nothing = SlotCounts(0, 0.0, {}, {}, {}, {}, BaselineFigures())
    loop = Loop(FakeReader(nothing))
    loop.run()
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "TooFewSamples")
    assert drifting["message"] == (
        "no monitoring series of slot blue (revision rev1) in Prometheus over the last 60s"
    )


def test_pods_without_their_baseline_say_so() -> None:
    loop = Loop(FakeReader(_counts(6000, loaded=False)))
    loop.run()
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "NoBaseline")
    assert "have not loaded the baseline" in drifting["message"]
    assert loop.condition("DataQuality")["status"] == "False"  # judged without a baseline


def test_no_active_slot_yet_is_unknown_and_reads_nothing() -> None:
    body = _monitored()
    body["status"] = {}
    loop = Loop(FakeReader(_counts(6000)), body)
    loop.run()
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "NoActiveSlot")
    assert loop.reader.read_targets == []


def test_an_unreachable_prometheus_is_unknown_and_keeps_the_last_figures() -> None:
    reader = FakeReader(_counts(6000), PrometheusError("unreachable (ConnectError: refused)"))
    loop = Loop(reader)
    loop.run(looks=2)
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "MetricsUnavailable")
    assert drifting["message"] == (
        "Prometheus at http://prometheus:9090: unreachable (ConnectError: refused)"
    )
    assert loop.body["status"]["monitoring"]["rows"] == 6000  # the last figures stay


def test_a_failing_evaluation_is_an_unknown_condition_never_a_crash() -> None:
    loop = Loop(FakeReader(ValueError("a malformed answer")))
    assert loop.run() == [5.0]
    drifting = loop.condition("Drifting")
    assert (drifting["status"], drifting["reason"]) == ("Unknown", "MonitoringError")
    assert "a malformed answer" in drifting["message"]


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("api server down"), KubeError(500, "etcd"), RuntimeError("bug")]
)
def test_a_failed_status_write_is_retried_not_raised(error: Exception) -> None:
    class BrokenKube(FakeKube):
        async def patch_status(self, *args: Any) -> Any:
            raise error

    loop = Loop(FakeReader(_counts(6000)), kube=BrokenKube())
    assert loop.run() == [10.0]
    assert loop.kube.events == []


def test_the_reconcile_keeps_the_conditions_and_figures_the_loop_wrote() -> None:
    loop = Loop(FakeReader(_counts(6000, shifted={"f3": 1.0})))
    loop.run()
    before = loop.body["status"]
    asyncio.run(reconcile(loop.body, _context(loop.kube), T0 + timedelta(seconds=30)))
    after = loop.body["status"]
    assert after["phase"]  # the reconcile did write its status
    for type_ in ("Drifting", "DataQuality"):
        assert loop.condition(type_) == next(c for c in before["conditions"] if c["type"] == type_)
    assert after["monitoring"] == before["monitoring"]


def test_the_status_write_waits_for_the_reconcile_but_the_read_does_not() -> None:
    loop = Loop(FakeReader(_counts(6000)))

    async def go() -> None:
        lock = asyncio.Lock()  # the object's lock, shared with its reconciles
        async with httpx.AsyncClient() as http:
            monitor = Monitor(
                loop.deps(http), "ml", "fraud", lock=lock, on_written=loop.written.append
            )
            await lock.acquire()  # a reconcile in progress
            looking = asyncio.create_task(monitor.evaluate(loop.body, T0))
            for _ in range(100):
                await asyncio.sleep(0)
            assert loop.reader.read_targets  # Prometheus was read meanwhile
            assert not loop.kube.writes  # but nothing written under the reconcile's feet
            lock.release()
            assert await looking == 5.0
            await monitor.sender.close()

    asyncio.run(go())
    assert loop.kube.writes == [("status", "fraud")]
    assert loop.written[-1]["status"]["monitoring"]["rows"] == 6000  # handed back for _freshest


class SlowReader(FakeReader):
    """A reader that takes a while and records how many reads ran at once."""

    def __init__(self, window: SlotCounts) -> None:
        super().__init__(window)
        self.running = self.most = 0

    async def read(self, target: Slot, window_s: float, now: float) -> SlotCounts:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.01)
            return await super().read(target, window_s, now)
        finally:
            self.running -= 1


@pytest.mark.parametrize(("bound", "most"), [(None, 6), (2, 2)])
def test_the_looks_of_every_deployment_read_prometheus_a_bounded_number_at_once(
    bound: int | None, most: int
) -> None:
    reader = SlowReader(_counts(6000))
    loop = Loop(reader)

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            deps = dataclasses.replace(
                loop.deps(http), looks=None if bound is None else asyncio.Semaphore(bound)
            )
            monitors = [Monitor(deps, "ml", "fraud", lock=asyncio.Lock()) for _ in range(6)]
            await asyncio.gather(*(monitor.evaluate(loop.body, T0) for monitor in monitors))
            for monitor in monitors:
                await monitor.sender.close()

    asyncio.run(go())
    assert reader.most == most


def test_the_bearer_token_is_read_from_the_secret() -> None:
    ref = {"name": "hook", "key": "token"}
    loop = Loop(
        FakeReader(_counts(6000)), _monitored(webhook={"url": HOOK, "bearerTokenSecretRef": ref})
    )
    loop.kube.objects[("Secret", "ml", "hook")] = {
        "data": {"token": base64.b64encode(b"s3cret\n").decode()}
    }
    loop.run()
    assert loop.receiver.authorization == ["Bearer s3cret", "Bearer s3cret"]


def test_stop_with_clear_removes_the_conditions_figures_and_gauges() -> None:
    loop = Loop(FakeReader(_counts(6000)))
    loop.run()
    assert b"modelfleet_monitoring_psi{" in generate_latest(loop.metrics.registry)

    async def go() -> None:
        async with httpx.AsyncClient() as http:
            monitor = Monitor(loop.deps(http), "ml", "fraud", lock=asyncio.Lock())
            await monitor.stop(clear=True)

    asyncio.run(go())
    assert "monitoring" not in loop.body["status"]
    assert [c["type"] for c in loop.body["status"]["conditions"]] == []
    assert b"modelfleet_monitoring_psi{" not in generate_latest(loop.metrics.registry)
