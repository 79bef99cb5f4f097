"""Monitoring alerts to a webhook: CloudEvents 1.0 (structured JSON mode), delivered in order in the
background, retried with exponential backoff.

`cloud_event(...)` builds one event (pure). A `WebhookSender` per ModelDeployment holds a queue and
one delivery task: the monitoring loop only enqueues, so a slow or absent receiver never holds up
an evaluation, let alone a reconcile. An event is dropped only when the queue is full (the oldest
goes, and `on_problem` says so); every failed attempt is counted in `state()`, which goes into
`status.monitoring.webhook`, and the first failure of a streak is reported through `on_problem`
(the loop turns it into a Warning Event).
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
from typing import Any

import httpx
import orjson

from modelfleet.operator.api import GROUP, PLURAL, VERSION, WebhookStatus
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
        "source": f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
        "type": EVENT_TYPE_PREFIX + str(condition["type"]).lower(),
        "subject": name,
        "time": timestamp(now),
        "datacontenttype": "application/json",
        "data": {"condition": dict(condition), **data},
    }


@dataclass
class _Pending:
    url: str
    event: dict[str, Any]


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
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._status = WebhookStatus()

    def send(self, url: str, event: dict[str, Any]) -> None:
        """Queue `event` for `url`; returns at once."""
        if len(self._queue) >= self._max_pending:
            dropped = self._queue.popleft()
            self._status.last_error = (
                f"queue full ({self._max_pending} events): dropped the event {dropped.event['id']}"
                f" of type {dropped.event['type']}"
            )
            self._report(True, self._status.last_error)
        self._queue.append(_Pending(url, event))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver_all(), name="modelfleet-webhook")

    def state(self) -> WebhookStatus:
        """What `status.monitoring.webhook` says now."""
        return self._status.model_copy(update={"pending": len(self._queue)})

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
                if self._status.failures:
                    self._report(False, f"delivered after {self._status.failures} failures")
                self._status.last_delivered = timestamp(self._clock())
                self._status.failures, attempt = 0, 0
                continue
            self._status.failures += 1
            self._status.last_error = f"{timestamp(self._clock())} {error}"
            if self._status.failures == 1:
                self._report(True, f"webhook delivery to {pending.url} failed: {error}; retrying")
            delay = min(self._first_retry * 2**attempt, self._longest_retry)
            attempt += 1
            logger.warning("webhook %s: %s; next attempt in %.0f s", pending.url, error, delay)
            await self._sleep(delay)

    async def _post(self, pending: _Pending) -> str | None:
        """One attempt; None when the receiver accepted the event (2xx), else why not."""
        headers = {"Content-Type": CONTENT_TYPE}
        try:
            token = await self._token()
        except Exception as error:  # a missing Secret or key: say so, and retry
            return f"bearer token: {error}"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._client.post(
                pending.url,
                content=orjson.dumps(pending.event),
                headers=headers,
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"

    def _report(self, problem: bool, message: str) -> None:
        async def tell() -> None:
            try:
                await self._on_problem(problem, message)
            except Exception:  # an Event that cannot be posted must not stop deliveries
                logger.exception("could not report a webhook problem")

        # the task is kept by the event loop until it ends; nothing waits for it
        asyncio.get_running_loop().create_task(tell())
