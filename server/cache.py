"""The prediction cache (`spec.server.cache`): answers kept per input row, so a row asked
again within the TTL is answered without scoring.

A key is the served model's identity (name, version, file sha256, revision and the scoring
engine: `namespace`) followed by the exact bytes of the decoded row (the model's input dtype,
in its feature order), so an answer is never shared between revisions or engines, and
`1` and `1.0` in JSON are the same row. Batched requests are looked up row by row: the rows
found are answered from the cache, the rest are scored together and stored.

Two stores behind one small protocol: `MemoryStore` (default; a bounded LRU with a TTL, in
the process) and `RedisStore` (shared by every pod that names the same Redis; the TTL is
Redis's own expiry, its size Redis's `maxmemory`). A Redis that fails is a miss and a
logged warning, never a failed request: a lookup waits 0.25 s at most, and after a failure the
pod leaves Redis alone for a second. `CachedScorer` is the part the data plane calls;
it hands cached answers to the same observer as scored ones, so the prediction metrics
(and drift monitoring, which reads them) count every answered row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.server.runtimes.base import Outputs

log = logging.getLogger(__name__)

Rows = npt.NDArray[np.generic]
Score = Callable[[Rows], Awaitable[Outputs]]
Observe = Callable[[Rows, Outputs], None]
CountLookups = Callable[[int, int], None]  # hits, misses
_REDIS_PREFIX = b"modelfleet:prediction:"
_WARN_EVERY_S = 60.0
# A lookup waits at most this long for Redis; after a failure Redis is left alone this long,
# so an outage costs one slow request a second, not every request a timeout.
REDIS_TIMEOUT_S = 0.25
REDIS_COOLDOWN_S = 1.0


class Store(Protocol):
    """Where answers are kept: one `Outputs` of a single row per key."""

    async def get_many(self, keys: Sequence[bytes]) -> list[Outputs | None]: ...

    def put_many(self, keys: Sequence[bytes], answers: Sequence[Outputs]) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """A least-recently-used map of at most `max_entries` answers, each kept `ttl_s`."""

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Outputs]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Outputs | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    def put(self, key: bytes, answer: Outputs) -> None:
        self._entries[key] = (self._clock() + self.ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_many(self, keys: Sequence[bytes]) -> list[Outputs | None]:
        return [self.get(key) for key in keys]

    def put_many(self, keys: Sequence[bytes], answers: Sequence[Outputs]) -> None:
        for key, answer in zip(keys, answers, strict=True):
            self.put(key, answer)

    async def close(self) -> None:
        self._entries.clear()


def encode_answer(answer: Outputs) -> bytes:
    """One row's outputs as bytes: a JSON header (name, dtype, shape) and the raw arrays.
    Never pickle: whoever can write to a shared Redis must not be able to run code here."""
    header = [[name, value.dtype.str, list(value.shape)] for name, value in answer.items()]
    head = orjson.dumps(header)
    body = b"".join(np.ascontiguousarray(value).tobytes() for value in answer.values())
    return len(head).to_bytes(4, "big") + head + body


def decode_answer(data: bytes) -> Outputs:
    size = int.from_bytes(data[:4], "big")
    header = orjson.loads(data[4 : 4 + size])
    answer: Outputs = {}
    offset = 4 + size
    for name, dtype_str, shape in header:
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            raise ValueError("object arrays are never cached")
        count = int(np.prod(shape)) if shape else 1
        value = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        answer[name] = value
        offset += count * dtype.itemsize
    return answer


class RedisStore:
    """Answers in a Redis shared by the pods: MGET for the rows of a request, and the
    misses written back after the answer (in the background: the client does not wait)."""

    def __init__(
        self, url: str, ttl_s: float, client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if client is None:
            import redis.asyncio as redis_asyncio

            client = redis_asyncio.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        self._client = client
        self._clock = clock
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._writes: set[asyncio.Task[None]] = set()
        self._warned_at = -_WARN_EVERY_S
        self._resting_until = -REDIS_COOLDOWN_S

    async def get_many(self, keys: Sequence[bytes]) -> list[Outputs | None]:
        if self._clock() < self._resting_until:
            return [None] * len(keys)
        try:
            found = await self._client.mget([_REDIS_PREFIX + key for key in keys])
            return [None if data is None else decode_answer(data) for data in found]
        except Exception as error:  # the cache is an optimisation: score instead
            self._failed("read", error)
            return [None] * len(keys)

    def put_many(self, keys: Sequence[bytes], answers: Sequence[Outputs]) -> None:
        if self._clock() < self._resting_until:
            return
        task = asyncio.get_running_loop().create_task(self._write(keys, answers))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, keys: Sequence[bytes], answers: Sequence[Outputs]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, answer in zip(keys, answers, strict=True):
                    pipe.set(_REDIS_PREFIX + key, encode_answer(answer), px=self._ttl_ms)
                await pipe.execute()
        except Exception as error:
            self._failed("write", error)

    def _failed(self, what: str, error: Exception) -> None:
        now = self._clock()
        self._resting_until = now + REDIS_COOLDOWN_S
        if now - self._warned_at >= _WARN_EVERY_S:  # one line a minute, not one per request
            self._warned_at = now
            log.warning(
                "prediction cache: Redis %s failed, scoring without it for %g s: %r",
                what, REDIS_COOLDOWN_S, error,
            )  # fmt: skip

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._client.aclose()


def _row_answers(outputs: Outputs, rows: int) -> list[Outputs]:
    """One `Outputs` per row, copied: a slice would keep the whole batch's arrays alive."""
    return [{name: value[i : i + 1].copy() for name, value in outputs.items()} for i in range(rows)]


def _stack(answers: Sequence[Outputs]) -> Outputs:
    if len(answers) == 1:
        return answers[0]
    return {name: np.concatenate([a[name] for a in answers]) for name in answers[0]}


class CachedScorer:
    """Answers rows from `store` where it can, scores the rest with `score`."""

    def __init__(
        self, store: Store, namespace: bytes, observe: Observe, count: CountLookups
    ) -> None:
        self.store = store
        self.namespace = namespace  # replaced when the scoring engine changes (data plane)
        self._observe = observe  # what the scored rows feed: the prediction metrics
        self._count = count

    def keys(self, rows: Rows) -> list[bytes]:
        namespace = self.namespace
        return [namespace + row.tobytes() for row in rows]

    async def score(self, rows: Rows, score: Score) -> Outputs:
        if rows.ndim != 2 or rows.shape[0] == 0:
            return await score(rows)
        keys = self.keys(rows)
        found = await self.store.get_many(keys)
        missing = [index for index, answer in enumerate(found) if answer is None]
        hits = len(keys) - len(missing)
        self._count(hits, len(missing))
        if not missing:
            outputs = _stack(found)  # type: ignore[arg-type]  # none is None here
            self._observe(rows, outputs)
            return outputs
        if not hits:
            scored = await score(rows)
            self.store.put_many(keys, _row_answers(scored, len(keys)))
            return scored
        scored = await score(rows[missing])
        self.store.put_many([keys[i] for i in missing], _row_answers(scored, len(missing)))
        present = [index for index, answer in enumerate(found) if answer is not None]
        cached = _stack([found[i] for i in present])  # type: ignore[misc]
        self._observe(rows[present], cached)
        merged: Outputs = {}
        for name, value in scored.items():
            whole = np.empty((len(keys), *value.shape[1:]), dtype=value.dtype)
            whole[missing] = value
            whole[present] = cached[name]
            merged[name] = whole
        return merged
