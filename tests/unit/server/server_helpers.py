"""Helpers for the server's unit tests: a slow runtime wrapper, a sync ASGI client and a
metrics sample reader (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any


class SlowRuntime:
    """A real runtime that takes `delay_s` longer per predict call (a fake passed in)."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.calls: list[int] = []

    def metadata(self) -> Any:
        return self.inner.metadata()

    def predict(self, rows: Any) -> Any:
        import time

        self.calls.append(rows.shape[0])
        time.sleep(self.delay_s)
        return self.inner.predict(rows)


def sample(registry: Any, name: str, **labels: str) -> float:
    """The value of one sample in a prometheus_client registry (0 when absent)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


class SyncClient:
    """httpx over the ASGI app on one private event loop, called synchronously."""

    def __init__(self, app: Any) -> None:
        import asyncio

        import httpx

        self._runner = asyncio.Runner()
        transport = httpx.ASGITransport(app=app)
        self._http = httpx.AsyncClient(transport=transport, base_url="http://server")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._runner.run(self._http.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._runner.run(self._http.aclose())
        self._runner.close()
