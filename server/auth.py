"""Optional auth for inference and model-metadata routes: API keys, bearer JWTs, or both.

`Authenticator` is what the HTTP layer asks: with both set, a request passes when either
accepts it. Health, readiness and metrics never need a credential.

API keys come from a file (one per line, `#` comments and blank lines ignored), typically a
mounted Kubernetes Secret; the file is re-read when its modification time changes, so a
rotated Secret takes effect without a restart. Clients send `Authorization: Bearer <key>`
or `x-api-key: <key>`. JWTs (`jwt_auth.py`) come as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path
from typing import Any

from modelfleet.server.errors import ModelLoadError, UnauthorizedError
from modelfleet.server.jwt_auth import JwtVerifier

_RECHECK_S = 1.0


def _read_keys(path: Path) -> tuple[bytes, ...]:
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ModelLoadError(f"cannot read the API keys file {path}: {error}") from error
    keys = tuple(ln.strip().encode() for ln in lines if ln.strip() and not ln.startswith("#"))
    if not keys:
        raise ModelLoadError(f"the API keys file {path} holds no key")
    return keys


class ApiKeys:
    """The accepted keys, and the check of one request's headers against them."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._keys = _read_keys(path)
        self._mtime = os.stat(path).st_mtime_ns
        self._checked = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_S:
            return
        self._checked = now
        try:
            mtime = os.stat(self._path).st_mtime_ns
            if mtime != self._mtime:
                self._keys, self._mtime = _read_keys(self._path), mtime
        except (OSError, ModelLoadError):
            pass  # keep the last good keys while a Secret is being swapped

    def accepts(self, offered: bytes) -> bool:
        """Whether `offered` is one of the keys (compared in constant time)."""
        self._refresh()
        return any(hmac.compare_digest(offered, key) for key in self._keys)


def _bearer(authorization: bytes | None) -> bytes | None:
    if authorization is None:
        return None
    scheme, _, credential = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return credential.strip() or None


def _looks_like_jwt(credential: bytes) -> bool:
    return credential.count(b".") == 2


class Authenticator:
    """The check of one request's headers against the API keys, the JWT rules, or both."""

    def __init__(self, keys: ApiKeys | None = None, jwt: JwtVerifier | None = None) -> None:
        if keys is None and jwt is None:
            raise ValueError("an Authenticator needs API keys, a JWT verifier or both")
        self.keys = keys
        self.jwt = jwt
        if jwt is None:
            self._missing = "an API key is required: send 'Authorization: Bearer <key>'"
        elif keys is None:
            self._missing = "a bearer token is required: send 'Authorization: Bearer <token>'"
        else:
            self._missing = (
                "an API key or a bearer token is required: send 'Authorization: Bearer <key>' "
                "or 'Authorization: Bearer <token>'"
            )

    async def check(
        self, authorization: bytes | None, api_key: bytes | None
    ) -> dict[str, Any] | None:
        """Return when a credential is accepted (with the token's claims when a JWT passed, for
        the rate limit's `subject`); else UnauthorizedError (401) or, for a valid token without
        a required claim, ForbiddenError (403), saying why."""
        bearer = _bearer(authorization)
        if self.keys is not None:
            offered = api_key if api_key is not None else bearer
            if offered is not None and self.keys.accepts(offered):
                return None
        if self.jwt is not None and bearer is not None and _looks_like_jwt(bearer):
            return await self.jwt.verify(bearer)
        if bearer is None and api_key is None:
            raise UnauthorizedError(self._missing, "missing")
        if self.keys is None:
            raise UnauthorizedError("the token is not a well-formed JWT", "malformed")
        raise UnauthorizedError("the API key is not valid", "invalid_api_key")
