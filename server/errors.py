"""One error hierarchy for the server, each class carrying the HTTP status it answers with.

    ServerError (500)                    anything we did not foresee: a bug, never the client's fault
    ├── ClientError (400)                the request is wrong; the message says what to fix
    │   ├── InvalidInputError (400)           wrong shape, datatype, ragged or non-numeric data, NaN unsupported
    │   ├── MalformedRequestError (400)       not JSON, or JSON that is not an inference request
    │   ├── AuthError                         the request may not be answered (counted apart, never as a request)
    │   │   ├── UnauthorizedError (401)       no credential, an unknown API key, a token that is not valid
    │   │   └── ForbiddenError (403)          a valid token without a required claim
    │   ├── ModelNotFoundError (404)          no model of that name (or version) is served here
    │   ├── RouteNotFoundError (404)          no such admin route, or the feature behind it is off
    │   ├── MethodNotAllowedError (405)       an admin route asked with the wrong HTTP method
    │   ├── LengthRequiredError (411)         an admin request body without Content-Length
    │   ├── PayloadTooLargeError (413)        body above max_body_bytes
    │   ├── TooManyRequestsError (429)        max_concurrency requests already in flight
    │   └── RateLimitedError (429)            the tenant's rate limit is spent (counted apart, never as a request)
    ├── InjectedFaultError (500)              fault injection for rollout drills (MODELFLEET_FAULT_ERROR_RATE)
    ├── NotReadyError (503)                   still loading, or draining after SIGTERM
    └── InferenceTimeoutError (504)           the prediction took longer than request_timeout_seconds

    ModelLoadError                       start-up only: the model cannot be fetched, verified or loaded

`render_error` is the one place that turns any of them into `{"error": "..."}` bodies;
`ServerError.headers()` adds what an answer needs beyond it (an auth error's WWW-Authenticate,
a rate limit's Retry-After) and `ServerError.details()` fields beside `error` in the body.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class ServerError(Exception):
    """Base of every error the HTTP layer renders; `status_code` is the HTTP answer."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Response headers the answer carries besides its content type."""
        return []

    def details(self) -> dict[str, Any]:
        """Fields the JSON body carries beside `error`."""
        return {}


class ClientError(ServerError):
    status_code = 400


class InvalidInputError(ClientError):
    status_code = 400


class MalformedRequestError(ClientError):
    status_code = 400


class AuthError(ClientError):
    """An auth refusal: `reason` is a fixed word for the metrics' label, the message says why
    (never with the credential in it), `bearer_error` is RFC 6750's error code."""

    bearer_error: ClassVar[str] = "invalid_token"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.reason == "missing":  # RFC 6750 3.1: no error code when nothing was offered
            return [(b"www-authenticate", b"Bearer")]
        description = "".join(
            c if " " <= c <= "~" and c not in '"\\' else "'" for c in self.message
        )
        challenge = f'Bearer error="{self.bearer_error}", error_description="{description}"'
        return [(b"www-authenticate", challenge.encode())]


class UnauthorizedError(AuthError):
    status_code = 401


class ForbiddenError(AuthError):
    status_code = 403
    bearer_error = "insufficient_scope"


class ModelNotFoundError(ClientError):
    status_code = 404


class RouteNotFoundError(ClientError):
    status_code = 404


class MethodNotAllowedError(ClientError):
    status_code = 405


class LengthRequiredError(ClientError):
    status_code = 411


class PayloadTooLargeError(ClientError):
    status_code = 413


class TooManyRequestsError(ClientError):
    status_code = 429


class RateLimitedError(ClientError):
    """The tenant's bucket is empty: `retry_after_s` whole seconds until a token."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self._details = details

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(self.retry_after_s).encode())]

    def details(self) -> dict[str, Any]:
        return self._details


class InjectedFaultError(ServerError):
    status_code = 500


class NotReadyError(ServerError):
    status_code = 503


class InferenceTimeoutError(ServerError):
    status_code = 504


class ModelLoadError(Exception):
    """The model cannot be fetched, verified or loaded: the server refuses to start."""


def render_error(error: ServerError) -> tuple[int, bytes]:
    """The status code and JSON body for an error."""
    return error.status_code, orjson.dumps({"error": error.message, **error.details()})
