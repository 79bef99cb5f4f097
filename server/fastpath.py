"""The inference routes as a lean ASGI callable in front of the FastAPI app.

`POST /v2/models/{m}[/versions/{v}]/infer` and `POST /v1/models/{m}:predict` are answered
here without FastAPI's routing and validation layers (they dominate a sub-millisecond
request); every other request goes to the FastAPI app, with the same request id
handling. Both paths share the data plane, error classes and `render_error`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelfleet.server.auth import Authenticator
from modelfleet.server.dataplane import DataPlane
from modelfleet.server.errors import (
    AuthError,
    MalformedRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    TooManyRequestsError,
    render_error,
)
from modelfleet.server.ratelimit import RateLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("modelfleet.server.access")

_JSON = b"application/json"
_BINARY = b"application/octet-stream"
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


class ClientDisconnectedError(Exception):
    """The client went away before sending its whole body."""


def match_inference(path: str) -> tuple[str, str, str | None] | None:
    """("v2"|"v1", model, version) for an inference path, else None."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        name, sep, version = path[11:-6].partition("/versions/")
        if name and "/" not in name and (not sep or (version and "/" not in version)):
            return "v2", name, version or None
    elif path.startswith("/v1/models/") and path.endswith(":predict"):
        name = path[11:-8]
        if name and "/" not in name:
            return "v1", name, None
    return None


def request_id_of(headers: dict[bytes, bytes]) -> bytes:
    """The client's x-request-id (trimmed to 128 printable bytes), or a fresh one."""
    given = headers.get(b"x-request-id")
    if given and given.isascii() and given.decode().isprintable():
        return given[:128]
    return f"{_ID_PREFIX}-{next(_ids)}".encode()


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"the body is larger than {limit} bytes (MODELFLEET_MAX_BODY_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"the body is larger than {limit} bytes (MODELFLEET_MAX_BODY_BYTES)"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Server:
    """The ASGI application: inference fast path, everything else through `api`."""

    def __init__(
        self,
        plane: DataPlane,
        api: ASGIApp,
        auth: Authenticator | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.plane = plane
        self.api = api
        self.auth = auth
        self.limiter = limiter
        self.inflight = 0
        self._limit = plane.settings.max_body_bytes
        self._max_inflight = plane.settings.max_concurrency
        self._access_log = plane.settings.access_log
        plane.metrics.track_inflight(lambda: float(self.inflight))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = match_inference(scope["path"]) if scope["method"] == "POST" else None
            headers = dict(scope["headers"])
            request_id = request_id_of(headers)
            if route is not None:
                await self._infer(route, headers, request_id, receive, send)
                return
            scope["modelfleet.request_id"] = request_id  # the answer's, for feedback (app.py)
            await self.api(scope, receive, _with_request_id(send, request_id))
            return
        await self.api(scope, receive, send)

    async def answer(
        self,
        route: tuple[str, str, str | None],
        headers: dict[bytes, bytes],
        body: bytes,
        request_id: bytes | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for one inference request whose body has been read;
        `request_id` (the answer's x-request-id) keys the answer for a later label."""
        kind, name, version = route
        if kind == "v1":
            answer = await self.plane.predict_v1(name, body, request_id)
            return 200, [(b"content-type", _JSON)], answer
        length = headers.get(b"inference-header-content-length")
        if length is not None and not length.isdigit():
            raise MalformedRequestError("Inference-Header-Content-Length must be an integer")
        payload, json_length = await self.plane.infer_v2(
            name, version, body, int(length) if length is not None else None, request_id
        )
        if json_length is None:
            return 200, [(b"content-type", _JSON)], payload
        return (
            200,
            [
                (b"content-type", _BINARY),
                (b"inference-header-content-length", str(json_length).encode()),
            ],
            payload,
        )

    async def _admit(self, route: tuple[str, str, str | None], headers: dict[bytes, bytes]) -> None:
        if self._max_inflight and self.inflight > self._max_inflight:
            raise TooManyRequestsError(
                f"{self._max_inflight} requests are already in flight "
                "(MODELFLEET_MAX_CONCURRENCY); retry later"
            )
        claims = None
        if self.auth is not None:  # before the model lookup: no probing without a credential
            claims = await self.auth.check(headers.get(b"authorization"), headers.get(b"x-api-key"))
        self.plane.find(route[1], route[2])
        if self.limiter is not None:  # after auth: only a known tenant spends its tokens
            await self.limiter.admit(headers, claims)

    async def _infer(
        self,
        route: tuple[str, str, str | None],
        headers: dict[bytes, bytes],
        request_id: bytes,
        receive: Receive,
        send: Send,
    ) -> None:
        started = time.perf_counter()
        self.inflight += 1
        try:
            status, response_headers, body, counted = await self._respond(
                route, headers, request_id, receive
            )
            if self.plane.faults.latency_s:
                await asyncio.sleep(self.plane.faults.latency_s)
            response_headers.append((b"x-request-id", request_id))
            response_headers.append((b"content-length", str(len(body)).encode()))
            start = {"type": "http.response.start", "status": status, "headers": response_headers}
            await send(start)
            await send({"type": "http.response.body", "body": body})
        except ClientDisconnectedError:
            return
        finally:
            self.inflight -= 1
        elapsed = time.perf_counter() - started
        if counted:  # refusals are counted apart: the model never saw them (see `_respond`)
            self.plane.metrics.observe(status, elapsed)
        if status >= 400 or self._access_log:
            self._log(route, request_id, status, elapsed, body)

    def _log(
        self, route: tuple[str, str, str | None], request_id: bytes, status: int, elapsed: float,
        body: bytes,
    ) -> None:  # fmt: skip
        log.info(
            "inference",
            extra={
                "request_id": request_id.decode(),
                "route": route[0],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                **({"error": body[:300].decode(errors="replace")} if status >= 400 else {}),
            },
        )

    async def _respond(
        self,
        route: tuple[str, str, str | None],
        headers: dict[bytes, bytes],
        request_id: bytes,
        receive: Receive,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """The answer, and whether it counts as one in modelfleet_requests_total: auth and
        rate-limit refusals do not (the model never saw them, and requests_total is what a
        canary's gates judge: a flood of refusals would dilute its error rate and fill its
        minRequests); each has a counter of its own."""
        try:
            await self._admit(route, headers)
            body = await read_body(receive, self._limit, headers.get(b"content-length"))
            return (*await self.answer(route, headers, body, request_id), True)
        except (AuthError, RateLimitedError) as error:
            if isinstance(error, AuthError):
                self.plane.metrics.observe_auth_refusal(error.reason)
            status, payload = render_error(error)
            return status, [(b"content-type", _JSON), *error.headers()], payload, False
        except ServerError as error:
            status, payload = render_error(error)
        except ClientDisconnectedError:
            raise
        except Exception:  # a bug, never the client's fault: 500, logged with its traceback
            log.exception("inference failed")
            status, payload = 500, b'{"error":"internal error; see the server log"}'
        return status, [(b"content-type", _JSON)], payload, True


def _with_request_id(send: Send, request_id: bytes) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
        await send(message)

    return send_with_id
