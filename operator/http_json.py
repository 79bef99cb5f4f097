"""One mapping of httpx failures for the operator's JSON calls to Prometheus and to pods.

A call that cannot be made or read raises the caller's own error (`PrometheusError`,
`ReplayError`) with the same words everywhere: timed out after N s, unreachable (what httpx said),
HTTP code without a JSON answer. What a JSON answer means is the caller's to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout_s: float,
    error: Callable[[str], Exception],
    **kwargs: Any,
) -> tuple[int, Any]:
    """The answer's status code and decoded JSON body; `error(reason)` raised when there is none."""
    try:
        response = await client.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.TimeoutException as failure:
        raise error(f"timed out after {timeout_s:g} s") from failure
    except httpx.HTTPError as failure:
        raise error(f"unreachable ({type(failure).__name__}: {failure})") from failure
    try:
        return response.status_code, response.json()
    except ValueError as failure:
        raise error(f"HTTP {response.status_code}, not a JSON answer") from failure
