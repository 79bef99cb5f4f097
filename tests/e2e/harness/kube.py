"""Reading the live router objects of one ModelDeployment from the API server (for the driver)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .driver import Snapshot
from .weights import (
    Backend,
    Endpoint,
    backends_from_httproute,
    backends_from_ingresses,
    endpoints,
)

INSTANCE_LABEL = "app.kubernetes.io/instance"


def _get(api_client: Any, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    """GET a path as JSON; None when the object (or its kind) does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = api_client.call_api(
            path,
            "GET",
            query_params=query or [],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=5,
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return json.loads(response.data)


def read_endpoints(api_client: Any, namespace: str, name: str) -> list[Endpoint]:
    """Endpoints with their shares, from whichever router object exists (HTTPRoute, Ingress, none)."""
    base = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"
    route = _get(api_client, base)
    backends: list[Backend]
    if route is not None:
        backends = backends_from_httproute(route)
    else:
        ingresses = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses"
        stable = _get(api_client, f"{ingresses}/{name}")
        if stable is not None:
            backends = backends_from_ingresses(
                stable, _get(api_client, f"{ingresses}/{name}-canary")
            )
        else:
            backends = [Backend(name, 100)]
    selector = [("labelSelector", f"{INSTANCE_LABEL}={name}")]
    core = f"/api/v1/namespaces/{namespace}"
    services = {
        backend.service: _get(api_client, f"{core}/services/{backend.service}") or {}
        for backend in backends
    }
    pods = (_get(api_client, f"{core}/pods", selector) or {}).get("items", [])
    return endpoints(backends, services, pods)


def kube_snapshot(api_client: Any, namespace: str, name: str) -> Snapshot:
    """The driver's snapshot function for one ModelDeployment."""

    async def snapshot() -> list[Endpoint]:
        return await asyncio.to_thread(read_endpoints, api_client, namespace, name)

    return snapshot
