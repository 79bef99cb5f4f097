"""The monitoring webhook: CloudEvents 1.0 in structured JSON, delivered in order in the background,
retried with exponential backoff, every failure counted and the first of a streak reported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from modelfleet.operator.webhook import CONTENT_TYPE, WebhookSender, cloud_event

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
URL = "http://alerts.example:8080/hook"
CONDITION = {"type": "Drifting", "status": "True", "reason": "FeaturesDrifting", "message": "f3"}


def _event(n: int = 0) -> dict[str, Any]:
    return cloud_event("ml", "fraud", {**CONDITION, "message": f"look {n}"}, {"rows": n}, NOW)


class Receiver:
    """Answers with the next status of `script` (then 200); records every attempt."""

    def __init__(self, script: list[int | Exception] | None = None) -> None:
        self.script = list(script or [])
        self.attempts: list[httpx.Request] = []
        self.accepted: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request)
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, Exception):
            raise outcome
        if outcome < 300:
            self.accepted.append(json.loads(request.content))
        return httpx.Response(outcome, text="busy" if outcome >= 300 else "")


class Problems:
    def __init__(self) -> None:
        self.said: list[tuple[bool, str]] = []

    async def __call__(self, problem: bool, message: str) -> None:
        self.said.append((problem, message))


def _run(
    receiver: Receiver,
    scenario: Callable[[WebhookSender], Any],
    token: str | Exception | None = None,
    **options: Any,
) -> Problems:
    problems = Problems()

    async def read_token() -> str | None:
        if isinstance(token, Exception):
            raise token
        return token

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(receiver.handle)) as client:
            sender = WebhookSender(
                client, read_token, problems, first_retry_s=0.01, clock=lambda: NOW, **options
            )
            try:
                await scenario(sender)
            finally:
                await sender.close()

    asyncio.run(go())
    return problems


async def _until(done: Callable[[], bool], limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.005)):
        if done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not within the time limit")


async def _until_delivered(sender: WebhookSender) -> None:
    await _until(lambda: sender.state().pending == 0)
    await asyncio.sleep(0.01)  # let the reports run


def test_a_cloud_event_is_structured_json_with_the_condition_and_figures() -> None:
    event = cloud_event("ml", "fraud", CONDITION, {"rows": 18400, "features": []}, NOW)
    assert event["specversion"] == "1.0"
    assert event["type"] == "io.modelfleet.monitoring.drifting"
    assert event["source"] == "/apis/modelfleet.io/v1alpha1/namespaces/ml/modeldeployments/fraud"
    assert event["subject"] == "fraud"
    assert event["time"] == "2026-12-05T12:00:00Z"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"condition": CONDITION, "rows": 18400, "features": []}
    quality = cloud_event("ml", "fraud", {**CONDITION, "type": "DataQuality"}, {}, NOW)
    assert quality["type"] == "io.modelfleet.monitoring.dataquality"
    assert quality["id"] != event["id"]


def test_events_are_delivered_in_order_with_the_bearer_token() -> None:
    receiver = Receiver()

    async def scenario(sender: WebhookSender) -> None:
        for n in range(3):
            sender.send(URL, _event(n))
        await _until_delivered(sender)
        state = sender.state()
        assert (state.pending, state.failures, state.last_error) == (0, 0, None)
        assert state.last_delivered == "2026-12-05T12:00:00Z"

    problems = _run(receiver, scenario, token="s3cret")
    assert [e["data"]["rows"] for e in receiver.accepted] == [0, 1, 2]
    request = receiver.attempts[0]
    assert request.headers["content-type"] == CONTENT_TYPE
    assert request.headers["authorization"] == "Bearer s3cret"
    assert problems.said == []


def test_a_failing_receiver_is_retried_with_backoff_and_the_streak_reported_once() -> None:
    refused = httpx.ConnectError("connection refused")
    receiver = Receiver([refused, 503, refused, 500])
    seen: list[tuple[int, int]] = []

    async def scenario(sender: WebhookSender) -> None:
        sender.send(URL, _event(1))
        sender.send(URL, _event(2))

        def watch() -> bool:
            state = sender.state()
            seen.append((state.failures, state.pending))
            return bool(receiver.accepted)

        await _until(watch)
        await _until_delivered(sender)

    problems = _run(receiver, scenario)
    assert [e["data"]["rows"] for e in receiver.accepted] == [1, 2]  # nothing lost, in order
    assert len(receiver.attempts) == 4 + 2
    assert (4, 2) in seen  # status said so while it failed
    assert problems.said[0][0] is True
    assert "connection refused" in problems.said[0][1]
    assert problems.said[1:] == [(False, "delivered after 4 failures")]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    receiver = Receiver([503] * 6)
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async def scenario(sender: WebhookSender) -> None:
        sender.send(URL, _event())
        await _until_delivered(sender)

    _run(receiver, scenario, longest_retry_s=0.1, sleep=sleep)
    assert sleeps == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    assert len(receiver.accepted) == 1


def test_an_unreadable_token_is_a_failed_attempt_not_a_crash() -> None:
    receiver = Receiver()

    async def scenario(sender: WebhookSender) -> None:
        sender.send(URL, _event())
        await _until(lambda: sender.state().failures >= 2)
        assert "Secret hook not found" in (sender.state().last_error or "")
        assert sender.state().pending == 1

    problems = _run(receiver, scenario, token=LookupError("Secret hook not found"))
    assert receiver.attempts == []
    assert problems.said
    assert problems.said[0][0] is True


@pytest.mark.parametrize("queued", [3, 5])
def test_a_full_queue_drops_the_oldest_event_and_says_so(queued: int) -> None:
    receiver = Receiver([503] * 1000)

    async def scenario(sender: WebhookSender) -> None:
        for n in range(queued):
            sender.send(URL, _event(n))
        if queued > 3:
            assert "dropped the event" in (sender.state().last_error or "")
        await asyncio.sleep(0.02)
        assert sender.state().pending == min(queued, 3)

    problems = _run(receiver, scenario, max_pending=3)
    dropped = [message for problem, message in problems.said if "dropped" in message]
    assert len(dropped) == max(queued - 3, 0)
