"""The reconcile's hook: a transition's told events are queued to the Notifier after the status is
written, and a receiver that never answers holds up no reconcile (against the fake API server of
test_reconcile and a fake HTTP transport)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx

from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.notifier import Notifier
from modelfleet.operator.reconcile import reconcile
from modelfleet.operator.settings import OperatorSettings
from tests.unit.operator.test_reconcile import T0, FakeKube, _context, _md

KEY = ("ModelDeployment", "ml", "fraud")


def _blue_green(
    answer: Callable[[], Awaitable[httpx.Response]],
) -> tuple[list[dict[str, Any]], list[float]]:
    """v1 deployed, then v2 switched in one step ([100]); the bodies received and each
    reconcile's duration."""
    got: list[dict[str, Any]] = []
    durations: list[float] = []

    async def receive(request: httpx.Request) -> httpx.Response:
        got.append(json.loads(request.content))
        return await answer()

    async def go() -> None:
        kube = FakeKube()
        target = {"type": "cloudevents", "url": "http://events.example.org/in"}
        kube.objects[KEY] = _md(rollout={"steps": [100], "notify": [target]})
        transport = httpx.MockTransport(receive)
        async with httpx.AsyncClient(transport=transport) as http:
            settings = OperatorSettings(notify_attempts=1)
            notifier = Notifier(http, kube, settings, OperatorMetrics())
            ctx = dataclasses.replace(_context(kube), notifier=notifier)
            for second in range(8):
                if second == 3:
                    kube.objects[KEY]["spec"]["model"] = {
                        "uri": "s3://m/v2/model.onnx",
                        "version": "v2",
                    }
                started = time.perf_counter()
                await reconcile(kube.objects[KEY], ctx, T0 + timedelta(seconds=second))
                durations.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)
            await notifier.close()

    asyncio.run(go())
    return got, durations


def test_a_blue_green_switch_is_told_started_then_promoted() -> None:
    async def accept() -> httpx.Response:
        return httpx.Response(202)

    got, _ = _blue_green(accept)
    assert [event["type"] for event in got] == [
        "io.modelfleet.rollout.started",
        "io.modelfleet.rollout.promoted",
    ]
    promoted = got[1]["data"]
    assert (promoted["version"], promoted["activeVersion"], promoted["weight"]) == ("v2", "v2", 100)


def test_a_receiver_that_never_answers_holds_up_no_reconcile() -> None:
    async def hang() -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("never answered")

    got, durations = _blue_green(hang)
    assert len(got) == 1  # the first notice is in flight, for ever
    assert max(durations) < 1.0
