"""The Kopf layer: handler registration, start-up settings and the process entry; nothing else.

Create, update, resume and the requeue daemon all delegate to `reconcile(...)`. Change handlers
reconcile at once and return (a delayed `kopf.TemporaryError` would hold back the next change); while a
rollout waits (pods coming up, a step's dwell, the next analysis), the per-object `requeue` daemon
reconciles again after the delay the state machine asked for, or at the resync interval. API
errors are `kopf.TemporaryError` with a short delay. A bad spec is a `kopf.PermanentError`.
Progress and diff-base live in annotations under `kopf.modelfleet.io/`, so status holds only our fields.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx
import kopf
from prometheus_client import start_http_server

from modelfleet.operator import api
from modelfleet.operator.kube import KubeClient, KubeError
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.prometheus import PrometheusAnalyzer
from modelfleet.operator.reconcile import (
    API_VERSION,
    AppliedCache,
    Context,
    InvalidSpecError,
    reconcile,
)
from modelfleet.operator.settings import OperatorSettings

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
# (namespace, name) → the memo of that ModelDeployment's daemon, for wake-ups from child events
_WAKERS: dict[tuple[str, str], kopf.Memo] = {}
STORAGE_PREFIX = f"kopf.{api.GROUP}"
logger = logging.getLogger("modelfleet.operator")


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """All handlers on a fresh registry (no import-time globals: tests build their own)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # not plain modelfleet.io/: kopf drops every annotation under its storage prefix from the
        # diff, and modelfleet.io/command must reach the update handler
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=STORAGE_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=STORAGE_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{api.GROUP}/finalizer"
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 30
        settings.posting.level = logging.WARNING
        settings.peering.clusterwide = True
        settings.peering.mandatory = operator_settings.peering is not None
        settings.peering.lifetime = operator_settings.peering_lifetime_seconds
        settings.peering.stealth = True

    operator_settings = settings

    @kopf.on.resume(*RESOURCE, registry=registry, backoff=5, id="reconcile")
    @kopf.on.create(*RESOURCE, registry=registry, backoff=5, id="reconcile")
    @kopf.on.update(*RESOURCE, registry=registry, backoff=5, id="reconcile")
    async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await _reconcile(body, memo)

    @kopf.daemon(*RESOURCE, registry=registry, id="requeue", cancellation_timeout=5)
    async def requeue(
        stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        """The periodic side of the reconcile: when the rollout asked to look again, when a slot's
        Deployment changed readiness, or at resync."""
        key = (body.metadata.namespace or "", body.metadata.name or "")
        _WAKERS[key] = memo
        try:
            while not stopped:
                if not await _sleep(memo, memo.get("requeue_after") or settings.resync_seconds):
                    continue  # a change handler just reconciled: sleep on its requeue
                await _reconcile_quietly(body, memo)
        finally:
            _WAKERS.pop(key, None)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        labels={"app.kubernetes.io/managed-by": "modelfleet"},
    )
    async def slot_changed(body: kopf.Body, **_: Any) -> None:
        """A slot's pods became (un)ready: reconcile its ModelDeployment now, not at requeue."""
        labels, status = body.metadata.labels, body.get("status", {})
        key = (body.metadata.namespace or "", labels.get("modelfleet.io/deployment", ""))
        readiness = (
            body.metadata.name,
            status.get("readyReplicas"),
            status.get("updatedReplicas"),
            status.get("observedGeneration"),
        )
        memo = _WAKERS.get(key)
        if memo is None or memo.get(f"seen:{readiness[0]}") == readiness:
            return
        memo[f"seen:{readiness[0]}"] = readiness
        memo["kick"] = True
        _wake(memo).set()

    return registry


async def _sleep(memo: kopf.Memo, delay: float) -> bool:
    """Wait `delay`; True when the daemon should reconcile (timeout or a slot's kick)."""
    wake = _wake(memo)
    try:
        await asyncio.wait_for(wake.wait(), timeout=delay)
    except TimeoutError:
        return True
    wake.clear()
    return bool(memo.pop("kick", False))


async def _reconcile_quietly(body: kopf.Body, memo: kopf.Memo) -> None:
    """The daemon's reconcile: errors become a requeue, the daemon itself never dies."""
    try:
        await _reconcile(body, memo)
    except kopf.TemporaryError as error:
        memo["requeue_after"] = error.delay
    except kopf.PermanentError:
        memo["requeue_after"] = None
    except Exception:
        logger.exception("reconcile failed; retrying in 10s")
        memo["requeue_after"] = 10.0


def _wake(memo: kopf.Memo) -> asyncio.Event:
    if "wake" not in memo:
        memo["wake"] = asyncio.Event()
    event: asyncio.Event = memo["wake"]
    return event


async def _reconcile(body: kopf.Body, memo: kopf.Memo) -> None:
    """One reconcile under the object's lock; records when to look again and wakes the daemon."""
    if "lock" not in memo:
        memo["lock"] = asyncio.Lock()
    ctx: Context = memo["ctx"]
    async with memo["lock"]:
        try:
            # the freshest object: kopf's body may predate the status the last reconcile wrote
            fresh = await ctx.kube.get(
                API_VERSION, api.KIND, body.metadata.namespace, body.metadata.name
            )
            if fresh is None:
                return  # deleted meanwhile: the garbage collector removes the children
            outcome = await reconcile(fresh, ctx)
        except InvalidSpecError as error:
            raise kopf.PermanentError(str(error)) from error
        except KubeError as error:
            delay = 1 if error.status == 409 else 10
            raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=delay) from error
        except httpx.TransportError as error:
            raise kopf.TemporaryError(f"Kubernetes API unreachable: {error}", delay=5) from error
    memo["requeue_after"] = outcome.requeue_after
    _wake(memo).set()


async def serve(settings: OperatorSettings, stop: asyncio.Event | None = None) -> None:
    """Run the operator until cancelled (or until `stop` is set)."""
    kube = KubeClient.from_environment()
    metrics = OperatorMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.bind_host, registry=metrics.registry)
    priority = settings.peering_priority or random.randint(1, 2**30)
    liveness = (
        f"http://{settings.bind_host}:{settings.health_port}/healthz"
        if settings.health_port
        else None
    )
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            analyzer = PrometheusAnalyzer(http, settings.prometheus_url)
            ctx = Context(
                kube=kube,
                settings=settings,
                analyzer=analyzer,
                metrics=metrics,
                applied=AppliedCache(max_age=settings.resync_seconds),
            )
            await kopf.operator(
                registry=build_registry(settings),
                memo=kopf.Memo(ctx=ctx),
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                standalone=settings.peering is None,
                peering_name=settings.peering,
                priority=priority,
                liveness_endpoint=liveness,
                stop_flag=stop,
            )
    finally:
        await kube.close()


def run(settings: OperatorSettings) -> None:
    """Entry of `modelfleet operator`: logging as configured, then the event loop."""
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, verbose=settings.log_level == "DEBUG")
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    asyncio.run(serve(settings))
