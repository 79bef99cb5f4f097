"""The one module that talks to the Kubernetes API.

`KubeClient` is what the rest of the operator is given: a Protocol, so the reconcile and the
monitoring loop depend on its methods alone and the unit tests pass a fake. `HttpKubeClient` is the
real one: one async httpx client signed in through `kube_credentials`, so every kind is handled the
same way: server-side apply with field manager `modelfleet`, GET/LIST that answer None/[] for 404,
DELETE that ignores 404, status merge-patches and core Events. 404 and 409 are normal outcomes in a
reconcile; anything else raises `KubeError`. Discovery answers (`has_api`) expire after a minute,
so an API installed after start, such as KEDA, is used without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson

from modelfleet.operator.api import API_VERSION, KIND, PLURAL
from modelfleet.operator.kube_credentials import BearerToken, Credentials, load_credentials
from modelfleet.operator.timestamps import timestamp

FIELD_MANAGER = "modelfleet"

DISCOVERY_TTL_SECONDS = 60.0

# (apiVersion, kind) → plural; every kind the operator reads or writes
RESOURCES: dict[tuple[str, str], str] = {
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "Secret"): "secrets",  # read only: a monitoring webhook's bearer token
    ("v1", "Namespace"): "namespaces",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitors",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateways",
    ("gateway.networking.k8s.io/v1", "GatewayClass"): "gatewayclasses",
    # read only: whether the installed HTTPRoute schema declares a rule's timeouts and retry
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "customresourcedefinitions",
    (API_VERSION, KIND): PLURAL,
    ("kopf.dev/v1", "ClusterKopfPeering"): "clusterkopfpeerings",
}


class KubeError(Exception):
    """An API answer the reconcile cannot treat as normal (not 404/409 where those are expected)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def resource_path(
    api_version: str, kind: str, namespace: str | None = None, name: str | None = None
) -> str:
    plural = RESOURCES[(api_version, kind)]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


class KubeClient(Protocol):
    """What the operator asks of the API server; 404 answers None (or False, or []), anything
    else that is not a success raises `KubeError`."""

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]: ...

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = ...,
        label_selector: Mapping[str, str] | None = ...,
    ) -> list[dict[str, Any]]:
        """Every object of `kind`, in `namespace` or the cluster, with the labels asked for."""

    async def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> bool: ...

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any
    ) -> dict[str, Any] | None: ...

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None: ...

    async def has_api(self, api_version: str, kind: str) -> bool: ...

    async def post_event(
        self,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: datetime | None = ...,
    ) -> None:
        """A core/v1 Event on `involved`, dated `now` (default: the clock)."""


class HttpKubeClient:
    """`KubeClient` over httpx; one instance per process, shared by every reconcile."""

    def __init__(
        self,
        credentials: Credentials,
        timeout: float = 30.0,
        max_in_flight: int = 32,
        *,
        discovery_ttl: float = DISCOVERY_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=credentials.host,
            verify=credentials.ssl_context,
            auth=BearerToken(credentials, clock),
            headers={"Accept": "application/json"},
            transport=transport,
            # waiting for a pooled connection is not an API failure: no pool timeout
            timeout=httpx.Timeout(timeout, pool=None),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
        )
        # many reconciles at once queue here instead of flooding the API server
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._discovery_ttl = discovery_ttl
        # apiVersion → (monotonic expiry, kinds served); a missing group is cached with no kinds
        self._api_groups: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> HttpKubeClient:
        return cls(load_credentials(kubeconfig))

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        async with self._in_flight:
            response = await self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise KubeError(response.status_code, message)
        data: dict[str, Any] = response.json() if response.content else {}
        return data

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply; an unchanged object is not written (its resourceVersion stays)."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        result = await self._request(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", params=params
        )
        assert result is not None
        return result

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        path = resource_path(api_version, kind, namespace, name)
        return await self._request("GET", path, missing_ok=True)

    async def who_am_i(self) -> str | None:
        """The user these credentials authenticate as (a SelfSubjectReview); None when the API
        server does not say (an older one, or a review this user may not create)."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            answer = await self._request(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review
            )
        except KubeError:
            return None
        name = (((answer or {}).get("status") or {}).get("userInfo") or {}).get("username")
        return str(name) if name else None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if label_selector:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in label_selector.items())
        path = resource_path(api_version, kind, namespace)
        result = await self._request("GET", path, params=params, missing_ok=True)
        return list((result or {}).get("items", []))

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete if present; True when something was deleted."""
        path = resource_path(api_version, kind, namespace, name)
        return await self._request("DELETE", path, missing_ok=True) is not None

    async def merge_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any
    ) -> dict[str, Any] | None:
        path = resource_path(api_version, kind, namespace, name)
        return await self._request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json", missing_ok=True
        )

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return await self._request(
            "PATCH",
            path,
            body={"status": status},
            content_type="application/merge-patch+json",
            missing_ok=True,
        )

    async def has_api(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. KEDA's ScaledObject); the answer is kept
        per group for `discovery_ttl` seconds, so an API installed or removed later is seen."""
        cached = self._api_groups.get(api_version)
        if cached is None or self._clock() >= cached[0]:
            result = await self._request("GET", f"/apis/{api_version}", missing_ok=True)
            kinds = frozenset(item["kind"] for item in (result or {}).get("resources", []))
            cached = (self._clock() + self._discovery_ttl, kinds)
            self._api_groups[api_version] = cached
        return kind in cached[1]

    async def post_event(
        self,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: datetime | None = None,
    ) -> None:
        """A core/v1 Event on the object (what `kubectl describe` and `kubectl events` show)."""
        meta = involved["metadata"]
        stamp = timestamp(now or datetime.now(UTC))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": "modelfleet-operator"},
            "reportingComponent": "modelfleet-operator",
        }
        await self._request("POST", resource_path("v1", "Event", meta["namespace"]), body=event)


async def read_secret_key(kube: KubeClient, namespace: str, name: str, key: str) -> str:
    """One key of a Secret, decoded and stripped; LookupError names what is missing."""
    secret = await kube.get("v1", "Secret", namespace, name)
    if secret is None:
        raise LookupError(f"Secret {name} not found")
    encoded = (secret.get("data") or {}).get(key)
    if encoded is None:
        raise LookupError(f"Secret {name} has no key {key}")
    return base64.b64decode(encoded).decode().strip()


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new` (nulls delete keys)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    return patch
