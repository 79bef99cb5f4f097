"""The `monitor` daemon in the Kopf layer: only for objects with spec.monitoring, looks on the
spec's interval, and clears what it wrote when monitoring leaves the spec (not on a shutdown)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import kopf
import pytest

from modelfleet.operator.handlers import build_registry
from modelfleet.operator.monitor_loop import MonitorDeps, judge_window
from modelfleet.operator.settings import OperatorSettings
from tests.unit.operator.test_monitor_loop import FakeReader, _counts, _monitored
from tests.unit.operator.test_reconcile import FakeKube

KEY = ("ModelDeployment", "ml", "fraud")


class Stopped:
    """Kopf's DaemonStopped, set after `looks` waits, with the reason kopf would give."""

    def __init__(self, looks: int, reason: kopf.DaemonStoppingReason) -> None:
        self.looks, self.stop_reason = looks, reason
        self.waited: list[float] = []

    def __bool__(self) -> bool:
        return len(self.waited) >= self.looks

    @property
    def reason(self) -> kopf.DaemonStoppingReason | None:
        return self.stop_reason if self else None

    async def wait(self, delay: float) -> Stopped:
        self.waited.append(delay)
        return self


def _daemon() -> Any:
    registry = build_registry(OperatorSettings(server_image="example.org/server:1"))
    return next(h for h in registry._spawning.get_all_handlers() if h.id == "monitor")


def _run(stopped: Stopped, memo: kopf.Memo, kube: FakeKube) -> None:
    body = kopf.Body(kube.objects[KEY])  # type: ignore[arg-type]
    asyncio.run(_daemon().fn(stopped=stopped, body=body, memo=memo))


def _memo(kube: FakeKube, http: httpx.AsyncClient | None = None) -> kopf.Memo:
    deps = MonitorDeps(
        kube=kube,
        http=http or httpx.AsyncClient(),
        reader_for=lambda url: FakeReader(_counts(6000)),
        default_prometheus_url="http://prometheus:9090",
        judge=judge_window,
    )
    return kopf.Memo(monitor=deps)


def test_the_daemon_runs_only_where_the_spec_asks_for_monitoring() -> None:
    when = _daemon().when
    assert when(spec={"monitoring": {"interval": "1m"}}) is True
    assert when(spec={"model": {"uri": "s3://m/model.onnx"}}) is False


@pytest.mark.parametrize(
    ("reason", "cleared"),
    [
        (kopf.DaemonStoppingReason.FILTERS_MISMATCH, True),  # monitoring left the spec
        (kopf.DaemonStoppingReason.OPERATOR_EXITING, False),  # a shutdown: status stays
        (kopf.DaemonStoppingReason.RESOURCE_DELETED, False),
    ],
)
def test_the_daemon_looks_on_the_interval_and_clears_only_when_monitoring_is_removed(
    reason: kopf.DaemonStoppingReason, cleared: bool
) -> None:
    kube = FakeKube()
    kube.objects[KEY] = _monitored()
    stopped = Stopped(looks=3, reason=reason)
    memo = _memo(kube)
    _run(stopped, memo, kube)
    assert stopped.waited == [5.0, 5.0, 5.0]  # spec.monitoring.interval
    types = [c["type"] for c in kube.objects[KEY]["status"].get("conditions", [])]
    if cleared:
        assert types == []
        assert "monitoring" not in kube.objects[KEY]["status"]
    else:
        assert types == ["Drifting", "DataQuality"]
        assert kube.objects[KEY]["status"]["monitoring"]["rows"] == 6000
    assert "written" in memo  # the reconcile starts from what the monitor wrote
    assert isinstance(memo["lock"], asyncio.Lock)  # the same lock the reconcile takes


def test_without_monitor_dependencies_the_daemon_does_nothing() -> None:
    kube = FakeKube()
    kube.objects[KEY] = _monitored()
    stopped = Stopped(looks=1, reason=kopf.DaemonStoppingReason.OPERATOR_EXITING)
    _run(stopped, kopf.Memo(), kube)
    assert stopped.waited == []
    assert kube.writes == []
