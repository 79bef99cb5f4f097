"""Rollout notifications delivered: one sender per receiver, retried, and every outcome accounted
for (the counter, and a NotificationFailed Event for one given up or dropped), through a fake
HTTP transport and a fake API client passed in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from modelfleet.operator.api import (
    CanaryStatus,
    ModelDeploymentStatus,
    RolloutSpec,
)
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.notifier import Notifier, default_targets
from modelfleet.operator.rollout.types import Event, Transition
from modelfleet.operator.settings import OperatorSettings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
OWNER = Owner(name="fraud", namespace="ml", uid="uid-1")
SLACK_URL = "https://hooks.example.org/services/T0/B0/SECRET"
CANARY = CanaryStatus(slot="green", revision="r2", version="v2", weight=10, steps=[10, 100])
BEFORE = ModelDeploymentStatus(active_slot="blue", active_version="v1", canary=CANARY)
ROLLED_BACK = Transition(
    ModelDeploymentStatus(active_slot="blue", active_version="v1"),
    (
        Event("Warning", "AnalysisFailed", "error rate 5 % > 1 % at 10%"),
        Event("Normal", "ScaledDown", "not told"),
    ),
)
PROMOTED = Transition(
    ModelDeploymentStatus(active_slot="green", active_version="v2"),
    (Event("Normal", "Promoted", "v2 promoted"),),
)


class FakeKube:
    """The two calls the notifier makes: read a Secret, post an Event."""

    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}
        self.events: list[tuple[str, str, str]] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind, namespace) == ("v1", "Secret", "ml")
        data = self.secrets.get(name)
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}

    async def post_event(self, involved: Any, kind: str, reason: str, message: str) -> None:
        assert involved["metadata"] == {"name": "fraud", "namespace": "ml", "uid": "uid-1"}
        self.events.append((kind, reason, message))


class Receivers:
    """Answers every POST with `status_of(url)` (holding it while `open` is clear); records them."""

    def __init__(self, status_of: Callable[[str], int] = lambda url: 200) -> None:
        self.status_of = status_of
        self.got: list[tuple[str, str, dict[str, Any]]] = []
        self.open = asyncio.Event()
        self.open.set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await self.open.wait()
        self.got.append(
            (str(request.url), request.headers["content-type"], json.loads(request.content))
        )
        return httpx.Response(self.status_of(str(request.url)))


def _counts(metrics: OperatorMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["target_type"], s.labels["result"]): s.value
        for family in metrics.registry.collect()
        if family.name == "modelfleet_notifications"
        for s in family.samples
        if s.name.endswith("_total")
    }


def _run(
    scenario: Callable[[Notifier], Awaitable[None]],
    receivers: Receivers,
    kube: FakeKube,
    metrics: OperatorMetrics,
    max_pending: int = 100,
    **settings: Any,
) -> None:
    async def go() -> None:
        transport = httpx.MockTransport(receivers.handle)
        async with httpx.AsyncClient(transport=transport) as http:
            notifier = Notifier(
                http,
                kube,  # type: ignore[arg-type]
                OperatorSettings(notify_first_retry_seconds=0.01, notify_attempts=3, **settings),
                metrics,
                max_pending=max_pending,
            )
            try:
                await scenario(notifier)
            finally:
                await notifier.close()

    asyncio.run(go())


async def _until(done: Callable[[], bool], limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.01)):
        if done():
            await asyncio.sleep(0.02)  # the Event tasks run
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time limit")


def _rollout(*targets: dict[str, Any]) -> RolloutSpec:
    return RolloutSpec.model_validate({"notify": list(targets)})


def test_each_receiver_gets_its_body_and_a_secret_url_is_read_from_its_secret() -> None:
    receivers, kube, metrics = (
        Receivers(),
        FakeKube({"slack": {"url": SLACK_URL}}),
        OperatorMetrics(),
    )
    rollout = _rollout(
        {"type": "slack", "urlSecretRef": {"name": "slack"}},
        {"type": "teams", "url": "https://teams.example.org/workflows/1"},
        {"type": "cloudevents", "url": "http://events.example.org/in", "events": ["Promoted"]},
    )

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, ROLLED_BACK, None, NOW)
        notifier.notify(OWNER, rollout, BEFORE, PROMOTED, None, NOW)
        await _until(lambda: len(receivers.got) == 5)

    _run(scenario, receivers, kube, metrics)
    by_url: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for url, content_type, body in receivers.got:
        by_url.setdefault(url, []).append((content_type, body))
    slack = by_url[SLACK_URL]
    assert [body["text"].split(":")[1] for _, body in slack] == [
        " v2 rolled back at 10%",
        " v2 promoted",
    ]
    assert {content_type for content_type, _ in slack} == {"application/json"}
    assert len(by_url["https://teams.example.org/workflows/1"]) == 2
    ((content_type, event),) = by_url["http://events.example.org/in"]
    assert content_type == "application/cloudevents+json"
    assert event["type"] == "io.modelfleet.rollout.promoted"  # the filter left the rollback out
    assert _counts(metrics) == {
        ("slack", "delivered"): 2,
        ("teams", "delivered"): 2,
        ("cloudevents", "delivered"): 1,
    }
    assert kube.events == []


def test_a_receiver_that_keeps_failing_is_an_event_and_a_count_and_the_next_one_goes_on() -> None:
    receivers = Receivers(lambda url: 500 if "broken" in url else 200)
    kube, metrics = FakeKube(), OperatorMetrics()
    rollout = _rollout(
        {"type": "cloudevents", "url": "http://broken.example.org/in"},
        {"type": "slack", "url": "http://fine.example.org/in"},
    )

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, ROLLED_BACK, None, NOW)
        notifier.notify(OWNER, rollout, BEFORE, PROMOTED, None, NOW)
        await _until(lambda: len(kube.events) == 2)

    _run(scenario, receivers, kube, metrics)
    broken = [url for url, _, _ in receivers.got if "broken" in url]
    assert len(broken) == 6  # 3 attempts for each of the two events, in order
    assert _counts(metrics) == {("cloudevents", "failed"): 2, ("slack", "delivered"): 2}
    kinds = {(kind, reason) for kind, reason, _ in kube.events}
    assert kinds == {("Warning", "NotificationFailed")}
    first = kube.events[0][2]
    assert first.startswith("notification io.modelfleet.rollout.rolledback to cloudevents target 0")
    assert "HTTP 500" in first
    assert "(after 3 attempts)" in first


def test_a_secret_that_cannot_be_read_fails_the_attempts_without_leaking_the_url() -> None:
    receivers, kube, metrics = Receivers(), FakeKube(), OperatorMetrics()
    rollout = _rollout({"type": "slack", "urlSecretRef": {"name": "gone", "key": "hook"}})

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, PROMOTED, None, NOW)
        await _until(lambda: len(kube.events) == 1)

    _run(scenario, receivers, kube, metrics)
    assert receivers.got == []
    ((_, _, message),) = kube.events
    assert "slack target 0 (Secret gone, key hook)" in message
    assert "url: Secret gone not found" in message
    assert _counts(metrics) == {("slack", "failed"): 1}


def test_a_full_queue_counts_as_failed_with_an_event() -> None:
    receivers, kube, metrics = Receivers(), FakeKube(), OperatorMetrics()
    receivers.open.clear()
    rollout = _rollout({"type": "teams", "url": "http://teams.example.org/in"})

    async def scenario(notifier: Notifier) -> None:
        # one in flight, one waiting, then the queue (of 2) is full: the waiting one goes
        for transition in (ROLLED_BACK, PROMOTED, PROMOTED):
            notifier.notify(OWNER, rollout, BEFORE, transition, None, NOW)
            await asyncio.sleep(0.02)
        await _until(lambda: len(kube.events) == 1)
        receivers.open.set()
        await _until(lambda: len(receivers.got) == 2)

    _run(scenario, receivers, kube, metrics, max_pending=2)
    assert "queue full" in kube.events[0][2]
    titles = [body["attachments"][0]["content"]["body"][0]["text"] for _, _, body in receivers.got]
    assert titles == ["ml/fraud: v2 rolled back at 10%", "ml/fraud: v2 promoted"]
    assert _counts(metrics) == {("teams", "failed"): 1, ("teams", "delivered"): 2}


@pytest.mark.parametrize(
    ("notify", "expected"),
    [(None, ["http://default.example.org/ce"]), ([], [])],
)
def test_the_operator_default_applies_only_where_the_spec_sets_no_notify(
    notify: list[Any] | None, expected: list[str]
) -> None:
    receivers, kube, metrics = Receivers(), FakeKube(), OperatorMetrics()
    rollout = RolloutSpec.model_validate({} if notify is None else {"notify": notify})

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, PROMOTED, None, NOW)
        await asyncio.sleep(0.1)

    _run(
        scenario,
        receivers,
        kube,
        metrics,
        notify_cloudevents_url="http://default.example.org/ce",
    )
    assert [url for url, _, _ in receivers.got] == expected


def test_default_targets_come_from_the_settings() -> None:
    settings = OperatorSettings(
        notify_slack_url="https://hooks.example.org/a", notify_teams_url="https://t.example.org/b"
    )
    assert [(t.type, t.url) for t in default_targets(settings)] == [
        ("slack", "https://hooks.example.org/a"),
        ("teams", "https://t.example.org/b"),
    ]
    assert "hooks.example.org/a" not in repr(settings)  # a secret: never in a log line


@pytest.mark.parametrize(
    ("target_type", "what"),
    [
        ("slack", "notification 'ml/fraud: v2 rolled back at 10%'"),
        ("teams", "notification 'ml/fraud: v2 rolled back at 10%'"),
        ("cloudevents", "notification io.modelfleet.rollout.rolledback"),
    ],
)
def test_a_failed_notification_is_named_by_its_title_not_by_its_body(
    target_type: str, what: str
) -> None:
    receivers, kube, metrics = Receivers(lambda url: 500), FakeKube(), OperatorMetrics()
    rollout = _rollout({"type": target_type, "url": "http://broken.example.org/in"})

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, ROLLED_BACK, None, NOW)
        await _until(lambda: len(kube.events) == 1)

    _run(scenario, receivers, kube, metrics)
    ((_, _, message),) = kube.events
    # the title only: a Slack body's text goes on with the message, which is not the title
    assert message.startswith(f"{what} to {target_type} target 0 (broken.example.org) not ")


def test_a_deleted_deployments_senders_finish_their_queue_then_are_freed() -> None:
    receivers, kube, metrics = Receivers(), FakeKube(), OperatorMetrics()
    receivers.open.clear()
    rollout = _rollout({"type": "slack", "url": "http://chat.example.org/in"})
    other = Owner(name="churn", namespace="ml", uid="uid-2")

    async def scenario(notifier: Notifier) -> None:
        notifier.notify(OWNER, rollout, BEFORE, ROLLED_BACK, None, NOW)
        notifier.notify(OWNER, rollout, BEFORE, PROMOTED, None, NOW)
        notifier.notify(other, rollout, BEFORE, PROMOTED, None, NOW)
        await asyncio.sleep(0.02)
        assert len(notifier._senders) == 2
        notifier.forget("ml", "fraud")
        assert list(notifier._senders) == [("ml", "churn", "slack target 0 (chat.example.org)")]
        receivers.open.set()  # what the deleted one had queued still goes out
        await _until(lambda: len(receivers.got) == 3 and not notifier._leaving)

    _run(scenario, receivers, kube, metrics)
    assert _counts(metrics) == {("slack", "delivered"): 3}
