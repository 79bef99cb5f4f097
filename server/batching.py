"""Dynamic micro-batching: concurrent requests merged into one predict call.

`submit` queues a request's rows and schedules one flush per batch (`call_soon`, or
`call_later(max_latency)` when asked to wait for more): every request parsed in the same
event-loop turn lands in the same predict call, up to `max_batch_size` rows. The flush
scores on the loop's thread: handing a one-row batch to a thread costs more (GIL
hand-off, wake-ups) than scoring it, measured on a 900-tree model. Tree models score
rows independently, so every result equals the unbatched one (tests check it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from modelfleet.server.errors import InferenceTimeoutError
from modelfleet.server.runtimes.base import Outputs

Predict = Callable[[npt.NDArray[np.generic]], Outputs]
BatchObserver = Callable[[int], None]
_Item = tuple[npt.NDArray[np.generic], "asyncio.Future[Outputs]"]


class MicroBatcher:
    """Queue rows from many requests; score them together once per event-loop turn."""

    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_latency_s: float = 0.0,
        observe_batch: BatchObserver | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max_batch_size
        self._max_latency_s = max_latency_s
        self._observe = observe_batch or (lambda rows: None)
        self._queue: list[_Item] = []
        self._queued_rows = 0
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None

    async def submit(
        self, rows: npt.NDArray[np.generic], timeout_s: float | None = None
    ) -> Outputs:
        """The model's outputs for these rows, scored together with whatever else is queued;
        InferenceTimeoutError when they are not back within `timeout_s`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append((rows, future))
        self._queued_rows += rows.shape[0]
        if self._queued_rows >= self._max_rows:
            self._schedule(loop, now=True)
        elif self._flush_handle is None:
            self._schedule(loop, now=self._max_latency_s <= 0)
        if timeout_s is None:
            return await future
        deadline = loop.time() + timeout_s
        outputs = await future
        if loop.time() > deadline:  # scoring runs on the loop: it is judged when it returns
            raise InferenceTimeoutError(
                f"the prediction took longer than {timeout_s:g} s "
                "(MODELFLEET_REQUEST_TIMEOUT_SECONDS); send fewer rows or retry"
            )
        return outputs

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: bool) -> None:
        if self._flush_handle is not None:
            if now and isinstance(self._flush_handle, asyncio.TimerHandle):
                self._flush_handle.cancel()  # full already: do not wait out the latency
            else:
                return
        self._flush_handle = (
            loop.call_soon(self._flush)
            if now
            else loop.call_later(self._max_latency_s, self._flush)
        )

    def _flush(self) -> None:
        self._flush_handle = None
        queue, self._queue, self._queued_rows = self._queue, [], 0
        batch: list[_Item] = []
        rows = 0
        for item in queue:
            if item[1].done():  # cancelled: the client went away
                continue
            if batch and rows + item[0].shape[0] > self._max_rows:
                self._score(batch)
                batch, rows = [], 0
            batch.append(item)
            rows += item[0].shape[0]
        if batch:
            self._score(batch)

    def _score(self, batch: list[_Item]) -> None:
        parts = [rows for rows, _ in batch]
        merged = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._observe(merged.shape[0])
        try:
            outputs = self._predict(merged)
        except Exception as error:  # a scoring failure fails this batch's requests, not the loop
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        if len(batch) == 1:
            batch[0][1].set_result(outputs)
            return
        start = 0
        for rows, future in batch:
            stop = start + rows.shape[0]
            if not future.done():
                future.set_result({name: value[start:stop] for name, value in outputs.items()})
            start = stop

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
