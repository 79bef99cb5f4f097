"""A load generator that counts what a client sees, for the real tier's gateway.

It sends OIP v2 infer requests at a steady rate to one URL (the gateway's listener through a
loopback forwarder, or any loopback address) and records every answer: when it was sent, the
HTTP code (0 for a transport error), the `model_version` the server put in the body, and how long
the answer took. It is bounded in requests and in time and stops by itself; `stop()` ends it
sooner.

    load = Load("http://127.0.0.1:18000/v2/models/fraud/infer", body, rate=60, seconds=300)
    load.start()
    ...
    share = load.summary(since, until).share("v2")   # canary's share in that window
    load.stop(); load.summary().failed                 # failed requests over the whole run

Requests are paced by a schedule (request i is due at start + i / rate), taken by a few worker
threads with one keep-alive connection each, so one slow answer does not stall the rate.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

TRANSPORT_ERROR = 0  # the code recorded when no HTTP answer came back


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the request was sent
    code: int  # HTTP status, or TRANSPORT_ERROR
    version: str | None  # the body's model_version, when the answer was a 200 with one
    error: str = ""  # the transport error or a short body of a failed answer
    elapsed: float = 0.0  # seconds from sending to the whole answer (or the transport error)

    @property
    def ok(self) -> bool:
        return self.code == 200 and self.version is not None


@dataclass
class Summary:
    """Counts over a set of answers."""

    answers: list[Answer] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.answers)

    @property
    def by_version(self) -> Counter[str]:
        return Counter(a.version for a in self.answers if a.ok and a.version is not None)

    @property
    def by_code(self) -> Counter[int]:
        return Counter(a.code for a in self.answers)

    @property
    def failed(self) -> int:
        return sum(not a.ok for a in self.answers)

    def share(self, version: str) -> float:
        """Share (0-100) of the successful answers that came from `version`."""
        counted = self.by_version
        total = sum(counted.values())
        return 100.0 * counted[version] / total if total else 0.0

    def failures(self, limit: int = 5) -> list[str]:
        return [f"HTTP {a.code}: {a.error}" for a in self.answers if not a.ok][:limit]


def buckets(answers: Iterable[Answer], start: float, width: float) -> list[Summary]:
    """The answers in consecutive time buckets of `width` seconds from `start`."""
    out: list[Summary] = []
    for answer in answers:
        index = int((answer.sent - start) // width)
        if index < 0:
            continue
        while len(out) <= index:
            out.append(Summary())
        out[index].answers.append(answer)
    return out


def parse(code: int, body: bytes) -> Answer:
    """What one answer says: its code and, on a 200, the model_version of its body."""
    version = None
    error = ""
    if code == 200:
        try:
            document = orjson.loads(body)
            version = document.get("model_version") if isinstance(document, dict) else None
        except orjson.JSONDecodeError:
            error = "the body is not JSON"
        if version is None and not error:
            error = "no model_version in the body"
    else:
        error = body[:200].decode(errors="replace")
    return Answer(0.0, code, str(version) if version is not None else None, error)


class Load:
    """Steady OIP v2 traffic to `url`; bounded by `max_requests` and `seconds`."""

    def __init__(
        self,
        url: str,
        body: Mapping[str, Any],
        rate: float = 60.0,
        seconds: float = 300.0,
        max_requests: int | None = None,
        workers: int = 4,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if rate <= 0 or seconds <= 0:
            raise ValueError("rate and seconds must be positive")
        self.url = url
        self.payload = orjson.dumps(dict(body))
        self.rate = rate
        self.seconds = seconds
        self.max_requests = max_requests if max_requests is not None else int(rate * seconds)
        self.timeout = timeout
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.started = 0.0
        self._next = 0
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            for i in range(workers)
        ]

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> Load:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Summary:
        """End it now; in-flight requests finish (at most `timeout` each)."""
        self._stopping.set()
        return self.wait(self.timeout + 5)

    def wait(self, timeout: float | None = None) -> Summary:
        """Until every worker is done (a bound reached, or stopped); the whole run's summary."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
        return self.summary()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- results ---------------------------------------------------------------------------
    def answers(self) -> list[Answer]:
        with self._lock:
            return sorted(self._answers, key=lambda a: a.sent)

    def summary(self, since: float | None = None, until: float | None = None) -> Summary:
        """Answers to requests sent in [since, until) (monotonic clock), or all of them."""
        low = since if since is not None else float("-inf")
        high = until if until is not None else float("inf")
        return Summary([a for a in self.answers() if low <= a.sent < high])

    def buckets(self, width: float = 1.0) -> list[Summary]:
        return buckets(self.answers(), self.started, width)

    # --- the workers -------------------------------------------------------------------------
    def _take(self) -> float | None:
        """The due time of the next request, or None once a bound is reached."""
        with self._lock:
            index = self._next
            if index >= self.max_requests:
                return None
            self._next += 1
        due = self.started + index / self.rate
        if due - self.started >= self.seconds:
            return None
        return due

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            while not self._stopping.is_set() and (due := self._take()) is not None:
                if self._stopping.wait(max(0.0, due - time.monotonic())):
                    return
                sent = time.monotonic()
                try:
                    response = client.post(self.url, content=self.payload)
                    answer = parse(response.status_code, response.content)
                except httpx.HTTPError as error:
                    answer = Answer(0.0, TRANSPORT_ERROR, None, f"{type(error).__name__}: {error}")
                elapsed = time.monotonic() - sent
                with self._lock:
                    self._answers.append(
                        Answer(sent, answer.code, answer.version, answer.error, elapsed)
                    )
