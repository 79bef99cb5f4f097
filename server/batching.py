"""Dynamic micro-batching: concurrent requests merged into one predict call.

One worker task takes everything queued (up to `max_batch_size` rows), optionally waits
up to `max_latency` for more, scores the concatenated rows on a single scoring thread,
and hands each request its own slice. Tree models score rows independently, so every
result equals the unbatched one (tests/unit/server/test_batching.py checks it).
While one batch is scored, the event loop keeps parsing requests into the next.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from modelfleet.server.errors import InferenceTimeoutError
from modelfleet.server.runtimes.base import Outputs

Predict = Callable[[npt.NDArray[np.generic]], Outputs]
BatchObserver = Callable[[int], None]


class MicroBatcher:
    """Queue rows from many requests; score them in batches on one thread."""

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
        self._queue: collections.deque[tuple[npt.NDArray[np.generic], asyncio.Future[Outputs]]]
        self._queue = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    async def submit(
        self, rows: npt.NDArray[np.generic], timeout_s: float | None = None
    ) -> Outputs:
        """The model's outputs for these rows, scored together with whatever else is queued;
        InferenceTimeoutError when they are not back within `timeout_s`."""
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append((rows, future))
        assert self._wakeup is not None
        self._wakeup.set()
        if timeout_s is None:
            return await future
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    def _take(self) -> list[tuple[npt.NDArray[np.generic], asyncio.Future[Outputs]]]:
        batch: list[tuple[npt.NDArray[np.generic], asyncio.Future[Outputs]]] = []
        rows = 0
        while self._queue:
            item_rows = self._queue[0][0].shape[0]
            if batch and rows + item_rows > self._max_rows:
                break
            item = self._queue.popleft()
            if item[1].done():  # the caller gave up (timeout): do not score it
                continue
            batch.append(item)
            rows += item_rows
        return batch

    def _queued_rows(self) -> int:
        return sum(rows.shape[0] for rows, _ in self._queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._max_latency_s > 0 and self._queued_rows() < self._max_rows:
                await asyncio.sleep(self._max_latency_s)
            while self._queue:
                batch = self._take()
                if batch:
                    await self._score(loop, batch)

    async def _score(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[npt.NDArray[np.generic], asyncio.Future[Outputs]]],
    ) -> None:
        parts = [rows for rows, _ in batch]
        merged = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._observe(merged.shape[0])
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict, merged)
        except Exception as error:  # a scoring failure fails this batch's requests, not the loop
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for rows, future in batch:
            stop = start + rows.shape[0]
            if not future.done():
                future.set_result({name: value[start:stop] for name, value in outputs.items()})
            start = stop

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False)


def _expire(future: asyncio.Future[Outputs], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            InferenceTimeoutError(
                f"the prediction took longer than {timeout_s:g} s "
                "(MODELFLEET_REQUEST_TIMEOUT_SECONDS); send fewer rows or retry"
            )
        )
