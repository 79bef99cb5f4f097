"""Monitoring alerts to a webhook: CloudEvents 1.0 (structured JSON mode), delivered in order in the
background, retried with exponential backoff.

`cloud_event(...)` builds one event (pure). A `WebhookSender` per ModelDeployment holds a queue and
one delivery task: the monitoring loop only enqueues, so a slow or absent receiver never holds up
an evaluation, let alone a reconcile. An event is dropped only when the queue is full (the oldest
one not in flight goes, and `on_problem` says so); every failed attempt is counted in `state()`,
which goes into `status.monitoring.webhook`, and the first failure of a streak is reported through
`on_problem` (the loop turns it into a Warning Event).

Rollout notifications (`notifier`) share the sender with two options: `max_attempts` gives an event
up after that many failures, and `on_outcome` is told what became of each event (delivered, failed
after its attempts, dropped from a full queue). Their bodies need not be CloudEvents (Slack, Teams:
plain JSON), their URL may be read from a Secret at each attempt, and `label` names the receiver in
logs and messages instead of the URL (a Slack or Teams webhook URL is itself a secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson

from modelfleet.operator.api import API_VERSION, PLURAL, WebhookStatus
from modelfleet.operator.timestamps import timestamp

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE_PREFIX = "io.modelfleet.monitoring."
MAX_PENDING = 100
FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 300.0
TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)

# reads the bearer token now (None: send none); raises when it cannot be read
TokenSource = Callable[[], Awaitable[str | None]]
# told about a delivery problem (first failure of a streak, a dropped event) or a recovery
ProblemSink = Callable[[bool, str], Awaitable[None]]
# reads the receiver's URL now (e.g. from a Secret); raises when it cannot be read
UrlSource = Callable[[], Awaitable[str]]


def cloud_event(
    namespace: str, name: str, condition: Mapping[str, Any], data: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """One CloudEvent for a change of the Drifting or DataQuality condition.

    `type` is io.modelfleet.monitoring.drifting or .dataquality; `data` carries the condition
    and the figures it was decided on.
    """
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
        "type": EVENT_TYPE_PREFIX + str(condition["type"]).lower(),
        "subject": name,
        "time": timestamp(now),
        "datacontenttype": "application/json",
        "data": {"condition": dict(condition), **data},
    }


@dataclass(eq=False)  # removed from the queue by identity: two bodies may be equal
class _Pending:
    url: str | UrlSource
    event: dict[str, Any]
    content_type: str = CONTENT_TYPE
    label: str = ""  # the receiver in logs and messages
    about: str = ""  # which event this is, in words, for messages (the sender's own phrase if "")

    @property
    def receiver(self) -> str:
        return self.label or str(self.url)

    @property
    def what(self) -> str:
        if self.about:
            return self.about
        if "id" in self.event and "type" in self.event:
            return f"the event {self.event['id']} of type {self.event['type']}"
        return f"a message for {self.receiver}"


Result = Literal["delivered", "failed", "dropped"]


@dataclass(frozen=True)
class Delivery:
    """What became of one event: delivered, failed (after max_attempts) or dropped (queue full)."""

    result: Result
    receiver: str
    event: dict[str, Any]
    error: str | None = None
    about: str = ""  # as given to `send`


# told what became of each event, at once (it must not block)
OutcomeSink = Callable[[Delivery], None]


class WebhookSender:
    """Delivers queued CloudEvents one at a time, in order, retrying each until it is accepted."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: TokenSource,
        on_problem: ProblemSink,
        *,
        first_retry_s: float = FIRST_RETRY_S,
        longest_retry_s: float = LONGEST_RETRY_S,
        max_pending: int = MAX_PENDING,
        max_attempts: int | None = None,
        on_outcome: OutcomeSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._token = token
        self._on_problem = on_problem
        self._first_retry = first_retry_s
        self._longest_retry = longest_retry_s
        self._queue: deque[_Pending] = deque()
        self._max_pending = max_pending
        self._max_attempts = max_attempts
        self._on_outcome = on_outcome
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._status = WebhookStatus()

    def send(
        self,
        url: str | UrlSource,
        event: dict[str, Any],
        *,
        content_type: str = CONTENT_TYPE,
        label: str = "",
        about: str = "",
    ) -> None:
        """Queue `event` for `url`; returns at once. `about` names the event in messages."""
        pending = _Pending(url, event, content_type, label, about)
        if len(self._queue) >= self._max_pending:
            dropped = self._oldest_waiting() or pending
            if dropped is not pending:
                self._queue.remove(dropped)
            self._status.last_error = (
                f"queue full ({self._max_pending} events): dropped {dropped.what}"
            )
            self._report(True, self._status.last_error)
            self._tell(dropped, "dropped", self._status.last_error)
            if dropped is pending:
                return
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver_all(), name="modelfleet-webhook")

    def _oldest_waiting(self) -> _Pending | None:
        """The oldest event not being posted right now (the one in flight is never dropped)."""
        in_flight = self._task is not None and not self._task.done()
        waiting = list(self._queue)[1:] if in_flight else list(self._queue)
        return waiting[0] if waiting else None

    def state(self) -> WebhookStatus:
        """What `status.monitoring.webhook` says now."""
        return self._status.model_copy(update={"pending": len(self._queue)})

    async def finish(self) -> None:
        """Wait until every queued event is delivered or given up (bounded only with
        `max_attempts`), then stop."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _deliver_all(self) -> None:
        attempt = 0
        while self._queue:
            pending = self._queue[0]
            error = await self._post(pending)
            if error is None:
                if self._queue and self._queue[0] is pending:
                    self._queue.popleft()
                self._tell(pending, "delivered", None)
                if self._status.failures:
                    self._report(False, f"delivered after {self._status.failures} failures")
                self._status.last_delivered = timestamp(self._clock())
                self._status.failures, attempt = 0, 0
                continue
            self._status.failures += 1
            self._status.last_error = f"{timestamp(self._clock())} {error}"
            if self._status.failures == 1:
                self._report(
                    True, f"webhook delivery to {pending.receiver} failed: {error}; retrying"
                )
            attempt += 1
            if self._max_attempts is not None and attempt >= self._max_attempts:
                if self._queue and self._queue[0] is pending:
                    self._queue.popleft()
                logger.warning(
                    "webhook %s: %s; gave up after %d attempts", pending.receiver, error, attempt
                )
                self._tell(pending, "failed", f"{error} (after {attempt} attempts)")
                attempt = 0
                continue
            delay = min(self._first_retry * 2 ** (attempt - 1), self._longest_retry)
            logger.warning("webhook %s: %s; next attempt in %.0f s", pending.receiver, error, delay)
            await self._sleep(delay)

    async def _post(self, pending: _Pending) -> str | None:
        """One attempt; None when the receiver accepted the event (2xx), else why not."""
        headers = {"Content-Type": pending.content_type}
        try:
            token = await self._token()
        except Exception as error:  # a missing Secret or key: say so, and retry
            return f"bearer token: {error}"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            url = pending.url if isinstance(pending.url, str) else await pending.url()
        except Exception as error:  # the same for a URL read from a Secret
            return f"url: {error}"
        try:
            response = await self._client.post(
                url,
                content=orjson.dumps(pending.event),
                headers=headers,
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _tell(self, pending: _Pending, result: Result, error: str | None) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(
                Delivery(result, pending.receiver, pending.event, error, pending.about)
            )
        except Exception:  # accounting must not stop deliveries
            logger.exception("could not account for a webhook delivery")

    def _report(self, problem: bool, message: str) -> None:
        async def tell() -> None:
            try:
                await self._on_problem(problem, message)
            except Exception:  # an Event that cannot be posted must not stop deliveries
                logger.exception("could not report a webhook problem")

        # the task is kept by the event loop until it ends; nothing waits for it
        asyncio.get_running_loop().create_task(tell())
