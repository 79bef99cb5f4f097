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
    mirror_endpoints,
    mirrors_from_httproute,
    mirrors_from_ingress,
)

INSTANCE_LABEL = "app.kubernetes.io/instance"


def _json(call: Any, *args: Any, **kwargs: Any) -> Any:
    """One typed API call as the raw JSON object; None when it (or its kind) does not exist."""
    from kubernetes.client.exceptions import ApiException

    try:
        response = call(*args, _preload_content=False, _request_timeout=5, **kwargs)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return json.loads(response.data)


def read_endpoints(api_client: Any, namespace: str, name: str) -> list[Endpoint]:
    """Endpoints with their shares, from whichever router object exists (HTTPRoute, Ingress, none)."""
    from kubernetes import client

    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    networking = client.NetworkingV1Api(api_client)
    route = _json(
        custom.get_namespaced_custom_object,
        "gateway.networking.k8s.io",
        "v1",
        namespace,
        "httproutes",
        name,
    )
    backends: list[Backend]
    mirrors: list[Backend] = []
    if route is not None:
        backends, mirrors = backends_from_httproute(route), mirrors_from_httproute(route)
    else:
        stable = _json(networking.read_namespaced_ingress, name, namespace)
        if stable is not None:
            canary = _json(networking.read_namespaced_ingress, f"{name}-canary", namespace)
            backends, mirrors = (
                backends_from_ingresses(stable, canary),
                mirrors_from_ingress(stable),
            )
        else:
            backends = [Backend(name, 100)]
    services = {
        backend.service: _json(core.read_namespaced_service, backend.service, namespace) or {}
        for backend in [*backends, *mirrors]
    }
    pods = _json(core.list_namespaced_pod, namespace, label_selector=f"{INSTANCE_LABEL}={name}")
    items = (pods or {}).get("items", [])
    return endpoints(backends, services, items) + mirror_endpoints(mirrors, services, items)


def kube_snapshot(api_client: Any, namespace: str, name: str) -> Snapshot:
    """The driver's snapshot function for one ModelDeployment."""

    async def snapshot() -> list[Endpoint]:
        return await asyncio.to_thread(read_endpoints, api_client, namespace, name)

    return snapshot
