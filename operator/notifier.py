"""Rollout notifications, delivered: the I/O around `notify`.

`Notifier.notify(...)` is called by the reconcile after it wrote a transition's status and posted its
events; it only queues, so a slow or absent receiver never holds up a reconcile. Each receiver of
each ModelDeployment has its own `webhook.WebhookSender` (bounded queue, in order, retried with
exponential backoff), given up after `notify_attempts`. What becomes of every notification is
counted in `modelfleet_notifications_total{target_type,result}`; one that failed after its attempts,
or that a full queue dropped, is also a Warning Event `NotificationFailed` on the ModelDeployment.
Nothing is lost without a trace.

Receivers are `spec.rollout.notify`, or when the spec does not set it the operator's defaults
(MODELFLEET_OPERATOR_NOTIFY_SLACK_URL, _TEAMS_URL, _CLOUDEVENTS_URL). A deleted ModelDeployment's
senders are freed (`forget`) once they have delivered or given up what they hold.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from modelfleet.operator import reasons
from modelfleet.operator.api import (
    API_VERSION,
    KIND,
    ModelDeploymentStatus,
    NotifyTarget,
    RolloutSpec,
)
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.kube import KubeClient, read_secret_key
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.notify import (
    CLOUDEVENT_TYPE_PREFIX,
    RolloutNotice,
    cloudevent_body,
    notices,
    receiver_label,
    slack_body,
    teams_body,
    wants,
)
from modelfleet.operator.rollout.types import Transition
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.webhook import (
    CONTENT_TYPE,
    MAX_PENDING,
    Delivery,
    UrlSource,
    WebhookSender,
)

logger = logging.getLogger(__name__)


async def _no_token() -> None:
    return None


async def _no_problem_report(problem: bool, message: str) -> None:
    """Retries are logged by the sender; only the final outcome becomes an Event."""


@dataclass(frozen=True)
class Receiver:
    """One receiver of one ModelDeployment's notifications."""

    target: NotifyTarget
    label: str  # names it in logs and Events without its URL


def default_targets(settings: OperatorSettings) -> list[NotifyTarget]:
    """The operator-wide receivers, for ModelDeployments whose spec sets no rollout.notify."""
    urls = (
        ("slack", settings.notify_slack_url),
        ("teams", settings.notify_teams_url),
        ("cloudevents", settings.notify_cloudevents_url),
    )
    return [
        NotifyTarget.model_validate({"type": kind, "url": url.get_secret_value()})
        for kind, url in urls
        if url is not None
    ]


def body_of(target: NotifyTarget, notice: RolloutNotice) -> tuple[dict[str, Any], str]:
    """The body a receiver of this type wants, and its content type."""
    if target.type == "slack":
        return slack_body(notice), "application/json"
    if target.type == "teams":
        return teams_body(notice), "application/json"
    return cloudevent_body(notice, str(uuid.uuid4())), CONTENT_TYPE


def what_of(target: NotifyTarget, notice: RolloutNotice) -> str:
    """Which notification this is, in an Event's words: its CloudEvent type, or its title."""
    if target.type == "cloudevents":
        return f"notification {CLOUDEVENT_TYPE_PREFIX}{notice.event.lower()}"
    return f"notification '{notice.title[:120]}'"


class Notifier:
    """Queues each rollout notice to every receiver that wants it; one sender per receiver."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        kube: KubeClient,
        settings: OperatorSettings,
        metrics: OperatorMetrics | None = None,
        *,
        max_pending: int = MAX_PENDING,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http, self._kube, self._metrics = http, kube, metrics
        self._defaults = default_targets(settings)
        self._attempts = settings.notify_attempts
        self._first_retry = settings.notify_first_retry_seconds
        self._max_pending = max_pending
        self._sleep = sleep
        self._senders: dict[tuple[str, str, str], WebhookSender] = {}
        self._leaving: set[WebhookSender] = set()  # a deleted ModelDeployment's, finishing
        self._tasks: set[asyncio.Task[None]] = set()  # kept until they end: the loop holds weakly

    def notify(
        self,
        owner: Owner,
        rollout: RolloutSpec,
        old: ModelDeploymentStatus,
        transition: Transition,
        measurement: Measurement | None,
        now: datetime,
    ) -> None:
        """Queue the transition's notices; returns at once."""
        told = notices(owner.namespace, owner.name, old, transition, measurement, now)
        if not told:
            return
        targets = self._defaults if rollout.notify is None else rollout.notify
        for index, target in enumerate(targets):
            receiver = Receiver(target, receiver_label(index, target))
            for notice in told:
                if wants(target, notice):
                    body, content_type = body_of(target, notice)
                    self._sender(owner, receiver).send(
                        self._url(owner, target),
                        body,
                        content_type=content_type,
                        label=receiver.label,
                        about=what_of(target, notice),
                    )

    def forget(self, namespace: str, name: str) -> None:
        """A ModelDeployment is gone: its senders deliver (or give up) what they hold, then go."""
        for key in [key for key in self._senders if key[:2] == (namespace, name)]:
            sender = self._senders.pop(key)
            self._leaving.add(sender)

            async def finish(sender: WebhookSender = sender) -> None:
                await sender.finish()
                self._leaving.discard(sender)

            self._keep(asyncio.get_running_loop().create_task(finish()))

    async def close(self) -> None:
        for sender in [*self._senders.values(), *self._leaving]:
            await sender.close()

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sender(self, owner: Owner, receiver: Receiver) -> WebhookSender:
        key = (owner.namespace, owner.name, receiver.label)
        sender = self._senders.get(key)
        if sender is None:
            sender = WebhookSender(
                self._http,
                _no_token,
                _no_problem_report,
                first_retry_s=self._first_retry,
                max_pending=self._max_pending,
                max_attempts=self._attempts,
                on_outcome=lambda delivery: self._account(owner, receiver.target, delivery),
                sleep=self._sleep,
            )
            self._senders[key] = sender
        return sender

    def _url(self, owner: Owner, target: NotifyTarget) -> str | UrlSource:
        if target.url is not None:
            return target.url
        ref = target.url_secret_ref
        assert ref is not None  # one of the two: the CRD and parse_spec say so

        async def from_secret() -> str:
            """Read at each attempt: a rotated URL is used at once."""
            return await read_secret_key(self._kube, owner.namespace, ref.name, ref.key)

        return from_secret

    def _account(self, owner: Owner, target: NotifyTarget, delivery: Delivery) -> None:
        result = "delivered" if delivery.result == "delivered" else "failed"
        if self._metrics is not None:
            self._metrics.notifications.labels(target.type, result).inc()
        if result == "delivered":
            return
        message = f"{delivery.about} to {delivery.receiver} not delivered: {delivery.error}"
        logger.warning("%s/%s: %s", owner.namespace, owner.name, message)
        self._keep(asyncio.get_running_loop().create_task(self._post_failure(owner, message)))

    async def _post_failure(self, owner: Owner, message: str) -> None:
        ref = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid},
        }
        try:
            await self._kube.post_event(ref, "Warning", reasons.NOTIFICATION_FAILED, message)
        except Exception:  # the counter has it; an Event that cannot be posted is logged
            logger.exception(
                "%s/%s: NotificationFailed event not posted", owner.namespace, owner.name
            )
