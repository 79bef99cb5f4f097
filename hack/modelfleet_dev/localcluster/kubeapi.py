"""A small HTTP client for the few API calls the process runner makes (pods, secrets, configmaps).

httpx with the runner's client certificate: explicit content types for each kind of patch, and a
watch that is a plain streamed GET.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from .pki import Pki

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class KubeApi:
    def __init__(self, api_url: str, keys: Pki, user: str = "runner") -> None:
        context = ssl.create_default_context(cafile=str(keys.ca_cert))
        client = keys.client(user)
        context.load_cert_chain(str(client.cert), str(client.key))
        self.http = httpx.Client(base_url=api_url, verify=context, timeout=httpx.Timeout(10.0))
        self._context = context
        self.api_url = api_url

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: str) -> dict[str, Any] | None:
        response = self.http.get(path, params=params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def patch(self, path: str, body: Mapping[str, Any], content_type: str = STRATEGIC) -> int:
        response = self.http.patch(
            path, content=json.dumps(body), headers={"Content-Type": content_type}
        )
        if response.status_code not in (404, 409, 422):
            response.raise_for_status()
        return response.status_code

    def delete(self, path: str, body: Mapping[str, Any]) -> int:
        response = self.http.request(
            "DELETE", path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        if response.status_code not in (404, 409):
            response.raise_for_status()
        return response.status_code

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int, **params: str
    ) -> Iterator[dict[str, Any]]:
        """Stream watch events (dicts with `type` and `object`) until the server ends the watch."""
        query = {
            **params,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = httpx.Timeout(10.0, read=timeout_seconds + 10.0)
        with (
            httpx.Client(base_url=self.api_url, verify=self._context, timeout=timeout) as client,
            client.stream("GET", path, params=query) as response,
        ):
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}" + (f"/{sub}" if sub else "")
