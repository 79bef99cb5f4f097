"""The live sample: the most recent inference rows, kept in memory for the rollout's paired
gate (`GET /modelfleet/v1/sample` on the metrics port). Off unless
MODELFLEET_LIVE_SAMPLE_ROWS > 0; never logged, never written to disk.

Cheap on the hot path: each scored micro-batch only appends a reference to its rows to a
pending queue (a deque: no lock). The rows are copied into a fixed ring of `capacity` rows
in bulk, when about `capacity` rows or `FLUSH_BATCHES` batches are pending (only the newest
`capacity` rows of them matter) and before every read. The event loop never waits for a
reader: when a read holds the ring, the loop leaves its rows pending for the next time.
Memory is bounded by the ring plus at most about `capacity` pending rows.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from modelfleet.server.predictions import FLUSH_BATCHES

Rows = npt.NDArray[np.generic]


class LiveSample:
    """A ring of the last `capacity` rows scored, `width` features each (0: taken from the
    first batch, for models whose input width is dynamic)."""

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 1:
            raise ValueError("a live sample needs a capacity of at least one row")
        self.capacity = capacity
        self.width = width
        self._ring: npt.NDArray[np.float64] | None = None
        self._next = 0  # where the next row goes
        self._filled = 0
        self._pending: deque[Rows] = deque()
        self._pending_rows = 0
        self._lock = threading.Lock()

    def observe(self, rows: Rows) -> None:
        """Note one scored batch (as given to the model); copied into the ring later."""
        pending = self._pending
        pending.append(rows)  # deque: atomic, no lock against a reader
        self._pending_rows += rows.shape[0]  # approximate under a concurrent fold: a hint
        if self._pending_rows >= self.capacity or len(pending) >= FLUSH_BATCHES:
            self.fold(wait=False)

    def fold(self, wait: bool = True) -> None:
        """Copy what is pending into the ring; without `wait`, skip when a reader holds it."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._pending_rows = 0
            popleft, batches = self._pending.popleft, []
            try:
                while True:  # what is appended meanwhile is folded now or next time
                    batches.append(popleft())
            except IndexError:
                pass
            newest = self._newest(batches)
            if newest is not None:
                self._write(newest)
        finally:
            self._lock.release()

    def _newest(self, batches: list[Rows]) -> npt.NDArray[np.float64] | None:
        """The newest `capacity` rows of these batches (oldest first), of the ring's width."""
        if self.width <= 0:
            shaped = [b for b in batches if b.ndim == 2 and b.shape[1] > 0]
            if not shaped:
                return None
            self.width = shaped[0].shape[1]
        kept: list[Rows] = []
        count = 0
        for rows in reversed(batches):
            if rows.ndim != 2 or rows.shape[1] != self.width or not rows.shape[0]:
                continue
            room = self.capacity - count
            kept.append(rows[-room:] if rows.shape[0] > room else rows)
            count += kept[-1].shape[0]
            if count >= self.capacity:
                break
        if not kept:
            return None
        return np.concatenate(kept[::-1]).astype(np.float64, copy=False)

    def _write(self, rows: npt.NDArray[np.float64]) -> None:
        if self._ring is None:
            self._ring = np.empty((self.capacity, self.width), dtype=np.float64)
        count = rows.shape[0]  # at most capacity
        end = self._next + count
        if end <= self.capacity:
            self._ring[self._next : end] = rows
        else:
            first = self.capacity - self._next
            self._ring[self._next :] = rows[:first]
            self._ring[: count - first] = rows[first:]
        self._next = end % self.capacity
        self._filled = min(self.capacity, self._filled + count)

    def recent(self, limit: int | None = None) -> npt.NDArray[np.float64]:
        """A copy of the newest `limit` rows (all kept by default), oldest first."""
        self.fold()
        with self._lock:
            count = self._filled if limit is None else max(0, min(limit, self._filled))
            if self._ring is None or count == 0:
                return np.empty((0, max(self.width, 0)), dtype=np.float64)
            index = (self._next - count + np.arange(count)) % self.capacity
            return self._ring[index]  # fancy indexing copies
