"""The traffic driver: steady paced load through the pods' real local addresses.

Requests start on a fixed schedule (`rps`), whatever the answers' latency, as long as fewer
than `max_inflight` (64) are waiting for theirs; beyond that the next one waits for a slot, so a
server that stalls slows the driver instead of piling up unbounded requests.

It re-reads the live router objects every `refresh_s` (HTTPRoute weights, the NGINX canary
annotations, or the replica ratio of Ready pods; see `weights`), sends `rps` requests a second
split by those weights, and counts every answer by (slot, revision, HTTP code). Code 0 is a
request that got no answer at all; slot "none" with 503 is a share of traffic whose backend had no
Ready pod (what a real proxy would answer). It also records each change of the per-slot shares
with its wall-clock time, which is how the benchmark times "error onset → canary weight 0".

Mirrors (an HTTPRoute `RequestMirror` filter, NGINX `mirror-target`) are honoured like a proxy does:
for the share given, a copy of the request goes to a Ready pod of the mirror backend at the same
time, and its answer is counted apart in `Tally.mirrored`, never as the user's.

With `retry` (what an HTTPRoute rule's `retry` asks of a gateway that serves it), an answer whose
code is listed is retried up to `attempts` times, each attempt picking a backend by the weights
again (the retry may land on the stable slot: the case that could hide a bad canary). The user's
answer is the last attempt's; the answers retried are counted apart in `Tally.retried`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .weights import Endpoint, RetryPolicy, mirror_shares, slot_shares

Snapshot = Callable[[], Awaitable[Sequence[Endpoint]]]


@dataclass
class Tally:
    """Answers counted by (slot, revision, code), and the share history."""

    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    shares: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    refresh_errors: int = 0
    mirrored: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # copies' answers
    mirror_shares: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    retried: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # answers retried

    def mirrored_total(self, slot: str | None = None, revision: str | None = None) -> int:
        return _count(self.mirrored, slot, revision, lambda code: True)

    def mirrored_failed(self, slot: str | None = None, revision: str | None = None) -> int:
        """Mirrored copies answered 5xx or not at all (nobody saw them: not the user's failures)."""
        return _count(self.mirrored, slot, revision, _is_failure)

    def total(self, slot: str | None = None, revision: str | None = None) -> int:
        return _count(self.counts, slot, revision, lambda code: True)

    def failed(self, slot: str | None = None, revision: str | None = None) -> int:
        """The user's answers that were not a success: 5xx, and no answer at all (code 0)."""
        return _count(self.counts, slot, revision, _is_failure)

    def first_time(self, predicate: Callable[[Mapping[str, float]], bool]) -> float | None:
        return next((at for at, shares in self.shares if predicate(shares)), None)


def _is_failure(code: int) -> bool:
    return code >= 500 or code == 0


def _count(
    counts: Counter[tuple[str, str, int]],
    slot: str | None,
    revision: str | None,
    keep: Callable[[int], bool],
) -> int:
    return sum(
        n
        for (s, r, code), n in counts.items()
        if keep(code) and (slot is None or s == slot) and (revision is None or r == revision)
    )


class TrafficDriver:
    def __init__(
        self,
        snapshot: Snapshot,
        *,
        rps: float,
        path: str,
        payload: Any,
        refresh_s: float = 0.5,
        timeout_s: float = 10.0,
        max_inflight: int = 64,
        seed: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._snapshot = snapshot
        self.rps = rps
        self._path = path
        self._payload = payload
        self._refresh_s = refresh_s
        self._timeout_s = timeout_s
        self._inflight = asyncio.Semaphore(max_inflight)
        self._random = random.Random(seed)
        self._endpoints: Sequence[Endpoint] = ()
        self._mirrors: Sequence[Endpoint] = ()
        self._copies: set[asyncio.Task[None]] = set()
        self._retry = retry
        self.tally = Tally()
        self._lock = threading.Lock()

    # --- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send load until `stop` is set, then wait for the requests in flight."""
        await self._refresh()
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            refresher = asyncio.create_task(self._refresh_until(stop))
            pending: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not stop.is_set():
                await self._inflight.acquire()
                task = asyncio.create_task(self._send(client))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += 1 / self.rps
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            await refresher
            if pending:
                await asyncio.wait(pending)
            if self._copies:
                await asyncio.wait(set(self._copies))

    async def _refresh_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh_s)
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            found = tuple(await self._snapshot())
        except Exception:  # an API hiccup: keep routing by the last objects seen
            with self._lock:
                self.tally.refresh_errors += 1
            return
        self._endpoints = tuple(e for e in found if not e.mirror)
        self._mirrors = tuple(e for e in found if e.mirror)
        shares, mirrored = slot_shares(found), mirror_shares(found)
        now = time.time()
        with self._lock:
            if not self.tally.shares or self.tally.shares[-1][1] != shares:
                self.tally.shares.append((now, shares))
            history = self.tally.mirror_shares
            if (history[-1][1] if history else {}) != mirrored:
                history.append((now, mirrored))

    def _pick(self) -> Endpoint | None:
        if not self._endpoints:
            return None
        return self._random.choices(self._endpoints, weights=[e.share for e in self._endpoints])[0]

    def _pick_mirror(self) -> Endpoint | None:
        """The mirror pod this request is copied to, if its share says so."""
        if not self._mirrors:
            return None
        if self._random.random() >= min(1.0, sum(e.share for e in self._mirrors)):
            return None
        return self._random.choices(self._mirrors, weights=[e.share for e in self._mirrors])[0]

    async def _copy(self, client: httpx.AsyncClient, endpoint: Endpoint) -> None:
        """A mirrored copy: sent alongside the user's request, its answer discarded but counted."""
        code = 503 if endpoint.address is None else await self._post(client, endpoint.address)
        with self._lock:
            self.tally.mirrored[(endpoint.slot, endpoint.revision, code)] += 1

    async def _send(self, client: httpx.AsyncClient) -> None:
        try:
            mirror = self._pick_mirror()
            if mirror is not None:
                copy = asyncio.create_task(self._copy(client, mirror))
                self._copies.add(copy)
                copy.add_done_callback(self._copies.discard)
            retries = self._retry.attempts if self._retry is not None else 0
            while True:
                slot, revision, code = await self._attempt(client)
                if retries == 0 or self._retry is None or code not in self._retry.codes:
                    break
                retries -= 1
                with self._lock:
                    self.tally.retried[(slot, revision, code)] += 1
            self._count(slot, revision, code)
        finally:
            self._inflight.release()

    async def _attempt(self, client: httpx.AsyncClient) -> tuple[str, str, int]:
        """One try at a backend picked by the weights: (slot, revision, code)."""
        endpoint = self._pick()
        if endpoint is None or endpoint.address is None:
            return (endpoint.slot if endpoint else "none"), "none", 503
        return endpoint.slot, endpoint.revision, await self._post(client, endpoint.address)

    async def _post(self, client: httpx.AsyncClient, address: str) -> int:
        """The payload POSTed to one pod: its answer's status code, 0 when none came."""
        try:
            response = await client.post(f"http://{address}{self._path}", json=self._payload)
        except httpx.HTTPError:
            return 0
        return response.status_code

    def _count(self, slot: str, revision: str, code: int) -> None:
        with self._lock:
            self.tally.counts[(slot, revision, code)] += 1

    # --- for synchronous tests ----------------------------------------------------------------

    def snapshot_tally(self) -> Tally:
        """A copy of the counts so far (safe while the driver runs in its thread)."""
        with self._lock:
            return Tally(
                Counter(self.tally.counts),
                list(self.tally.shares),
                self.tally.refresh_errors,
                Counter(self.tally.mirrored),
                list(self.tally.mirror_shares),
                Counter(self.tally.retried),
            )

    @contextlib.contextmanager
    def running(self) -> Iterator[TrafficDriver]:
        """Run the driver on its own event loop in a thread for the `with` block."""
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                loop.run_until_complete(self.run(stop))
            except BaseException as error:  # surfaced to the test below
                failure.append(error)
            finally:
                loop.close()

        thread = threading.Thread(target=main, name="traffic-driver", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            with contextlib.suppress(RuntimeError):  # the loop already ended on a failure
                loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
        if failure:
            raise RuntimeError("the traffic driver failed") from failure[0]
