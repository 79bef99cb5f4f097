"""Optional API-key auth for inference and model-metadata routes.

Keys come from a file (one per line, `#` comments and blank lines ignored), typically a
mounted Kubernetes Secret; the file is re-read when its modification time changes, so a
rotated Secret takes effect without a restart. Clients send `Authorization: Bearer <key>`
or `x-api-key: <key>`. Health, readiness and metrics never need a key.
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path

from modelfleet.server.errors import ModelLoadError, UnauthorizedError

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

    def check(self, authorization: bytes | None, api_key: bytes | None) -> None:
        """Raise UnauthorizedError unless one of the headers carries a known key."""
        self._refresh()
        offered = api_key
        if authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            if scheme.lower() == b"bearer":
                offered = token.strip()
        if offered is None:
            raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'")
        if not any(hmac.compare_digest(offered, key) for key in self._keys):
            raise UnauthorizedError("the API key is not valid")
