"""The one module that talks to the Kubernetes API (an import-linter contract enforces it).

`KubeClient` is what the rest of the operator is given: a Protocol, so the reconcile and the
monitoring loop depend on its methods alone and the unit tests pass a fake. `HttpKubeClient` is the
real one. `kubernetes` is used only to read credentials (kubeconfig or in-cluster); requests go
through one async httpx client, so every kind is handled the same way: server-side apply with field manager
`modelfleet`, GET/LIST that answer None/[] for 404, DELETE that ignores 404, status merge-patches
and core Events. 404 and 409 are normal outcomes in a reconcile; anything else raises `KubeError`.

Bound ServiceAccount tokens rotate: the in-cluster token file is re-read every minute (as client-go
does; the kubelet rewrites it at 80 % of its life), and any 401 re-reads the token (or logs in
again from the kubeconfig) and retries once. Discovery answers (`has_api`) expire after a minute,
so an API installed after start, such as KEDA, is used without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from modelfleet.operator.api import GROUP, KIND, PLURAL, VERSION
from modelfleet.operator.timestamps import timestamp

API_VERSION = f"{GROUP}/{VERSION}"  # the ModelDeployment's
FIELD_MANAGER = "modelfleet"

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_RELOAD_SECONDS = 60.0  # client-go's period for re-reading a projected token
DISCOVERY_TTL_SECONDS = 60.0

log = logging.getLogger(__name__)

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
    (API_VERSION, KIND): PLURAL,
    ("kopf.dev/v1", "ClusterKopfPeering"): "clusterkopfpeerings",
}


class KubeError(Exception):
    """An API answer the reconcile cannot treat as normal (not 404/409 where those are expected)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Credentials:
    host: str
    ssl_context: ssl.SSLContext
    token: str | None
    # reads the current token again (None: keep the last one); None when nothing can be re-read
    reload_token: Callable[[], str | None] | None = None
    # seconds between periodic re-reads (a token file); None: only after a 401 (a new login)
    reload_every: float | None = None


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """Credentials from a kubeconfig (KUBECONFIG or ~/.kube/config) or, failing that, in-cluster."""
    from kubernetes import config  # the operator extra; loaded only when connecting

    try:
        cfg = _kubeconfig_configuration(kubeconfig)
    except config.ConfigException:
        return in_cluster_credentials()
    return Credentials(
        host=cfg.host.rstrip("/"),
        ssl_context=_ssl_context(cfg),
        token=_bearer_token(cfg),
        reload_token=lambda: _kubeconfig_token(kubeconfig),
    )


def in_cluster_credentials(
    token_path: Path = SERVICE_ACCOUNT_DIR / "token",
    ca_path: Path = SERVICE_ACCOUNT_DIR / "ca.crt",
    environ: Mapping[str, str] = os.environ,
) -> Credentials:
    """A pod's credentials: KUBERNETES_SERVICE_HOST/PORT, the CA and the projected token file."""
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    cfg = Configuration()
    InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(token_path),
        cert_filename=str(ca_path),
        try_refresh_token=False,  # the refresh hook serves `kubernetes`' client; ours is below
        environ=environ,
    ).load_and_set(cfg)
    return Credentials(
        host=cfg.host.rstrip("/"),
        ssl_context=_ssl_context(cfg),
        token=_bearer_token(cfg),
        reload_token=lambda: _read_token_file(token_path),
        reload_every=TOKEN_RELOAD_SECONDS,
    )


def _kubeconfig_configuration(kubeconfig: str | None) -> Any:
    from kubernetes import config
    from kubernetes.client import Configuration

    cfg = Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=cfg, persist_config=False
    )
    return cfg


def _ssl_context(cfg: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _bearer_token(cfg: Any) -> str | None:
    api_key = cfg.api_key or {}
    value = str(api_key.get("authorization") or api_key.get("BearerToken") or "").strip()
    scheme, _, token = value.partition(" ")  # "Bearer x" from a kubeconfig, "bearer x" in-cluster
    return token.strip() if scheme.lower() == "bearer" else value or None


def _kubeconfig_token(kubeconfig: str | None) -> str | None:
    """Log in again from the kubeconfig (a tokenFile is re-read, an exec plugin runs again)."""
    from kubernetes import config

    try:
        return _bearer_token(_kubeconfig_configuration(kubeconfig))
    except (config.ConfigException, OSError) as error:
        log.warning("could not reload the token from the kubeconfig: %s", error)
        return None


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError as error:
        log.warning("could not re-read the token file %s: %s", path, error)
        return None


class BearerToken(httpx.Auth):
    """The Authorization header of every request, from a token that is re-read every
    `reload_every` seconds and after a 401 (then the request is sent once more)."""

    def __init__(self, credentials: Credentials, clock: Callable[[], float]) -> None:
        self._token = credentials.token
        self._reload = credentials.reload_token
        self._reload_every = credentials.reload_every
        self._clock = clock
        self._read_at = clock()

    def _reread(self) -> None:
        assert self._reload is not None
        self._token = self._reload() or self._token
        self._read_at = self._clock()

    def _current(self) -> str | None:
        every = self._reload_every
        if self._reload and every is not None and self._clock() - self._read_at >= every:
            self._reread()
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self._current()
        if sent:
            request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code != 401 or self._reload is None:
            return
        # concurrent requests share one re-read: retry whenever the token differs from the sent one
        if self._token == sent:
            self._reread()
        if self._token and self._token != sent:
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


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


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig's current context (or of the pod), else "default"."""
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        context = None
    if context and context.get("context", {}).get("namespace"):
        return str(context["context"]["namespace"])
    try:
        with open(SERVICE_ACCOUNT_DIR / "namespace") as handle:
            return handle.read().strip()
    except OSError:
        return "default"
