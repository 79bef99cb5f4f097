"""The Kopf layer: handler registration and start-up settings (the process around it: process.py).

Create, update, resume and the per-object `requeue` daemon all delegate to `reconcile(...)`. Change
handlers reconcile at once and return; waiting is the daemon's, which reconciles again after the
delay the state machine asked for, when a slot's Deployment changes, or at the resync interval.
Which error is retried after how long: docs/architecture.md, "Errors and requeues". Progress lives
in annotations under `kopf.modelfleet.io/` and the diff-base in memory (`MemoryDiffBaseStorage`),
so status holds only our fields. A ModelDeployment with `spec.monitoring` also gets a `monitor`
daemon (`monitor_loop.Monitor`): its own task on its own interval, sharing only the object's
status lock with the reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

import httpx
import kopf
import orjson

from modelfleet.operator import api
from modelfleet.operator.apply import AppliedCache
from modelfleet.operator.kube import KubeError
from modelfleet.operator.livecache import resource_version
from modelfleet.operator.monitor_loop import Monitor, MonitorDeps
from modelfleet.operator.notifier import Notifier
from modelfleet.operator.reconcile import Context, InvalidSpecError, reconcile
from modelfleet.operator.settings import OperatorSettings

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
STORAGE_PREFIX = f"kopf.{api.GROUP}"
logger = logging.getLogger("modelfleet.operator")


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """All handlers on a fresh registry, with the state they share (no import-time globals: tests
    build their own)."""
    registry = kopf.OperatorRegistry()
    # (namespace, name) → the memo of that ModelDeployment's daemon, for wake-ups from child events
    wakers: dict[tuple[str, str], kopf.Memo] = {}

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
        settings.persistence.diffbase_storage = diffbase
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
    diffbase = MemoryDiffBaseStorage()

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
        wakers[key] = memo
        try:
            while not stopped:
                if not await _sleep(memo, memo.get("requeue_after") or settings.resync_seconds):
                    continue  # a change handler just reconciled: sleep on its requeue
                await _reconcile_quietly(body, memo)
        finally:  # the object was deleted (or this replica stopped acting): nothing of it kept
            wakers.pop(key, None)
            diffbase.forget(body)
            applied: AppliedCache | None = memo["ctx"].applied
            if applied is not None:
                applied.forget_owner(body.metadata.uid or "")
            notifier: Notifier | None = memo["ctx"].notifier
            if notifier is not None:  # its queued notices still go out, then its senders go
                notifier.forget(*key)

    @kopf.daemon(
        *RESOURCE, registry=registry, id="monitor", cancellation_timeout=5, when=_monitored
    )
    async def monitor(
        stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        """spec.monitoring's loop; kopf stops it when monitoring leaves the spec."""
        deps: MonitorDeps | None = memo.get("monitor")
        if deps is None:
            return  # a registry run without monitoring (unit tests)
        looker = Monitor(
            deps,
            body.metadata.namespace or "",
            body.metadata.name or "",
            lock=_lock(memo),
            on_written=lambda written: _remember(memo, written),
        )

        async def wait(delay: float) -> bool:
            await stopped.wait(delay)
            return bool(stopped)

        try:
            await looker.run(body, wait)
        finally:
            removed = stopped.reason is not None and bool(
                stopped.reason & kopf.DaemonStoppingReason.FILTERS_MISMATCH
            )
            await looker.stop(clear=removed)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        labels={"app.kubernetes.io/managed-by": "modelfleet"},
    )
    async def slot_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """Keep the slot cache current; when a slot's pods became (un)ready or someone else
        changed its spec, reconcile its ModelDeployment now, not at requeue."""
        labels, status = body.metadata.labels, body.get("status", {})
        key = (body.metadata.namespace or "", labels.get("modelfleet.io/deployment", ""))
        drifted = _track_deployment(memo["ctx"], type, body)
        readiness = (
            body.metadata.name,
            status.get("readyReplicas"),
            status.get("updatedReplicas"),
            status.get("observedGeneration"),
        )
        owner_memo = wakers.get(key)
        if owner_memo is None:
            return
        if not drifted and owner_memo.get(f"seen:{readiness[0]}") == readiness:
            return
        owner_memo[f"seen:{readiness[0]}"] = readiness
        owner_memo["kick"] = True
        _wake(owner_memo).set()

    return registry


def _track_deployment(ctx: Context, event_type: str | None, body: kopf.Body) -> bool:
    """Record a watched slot Deployment; True when its spec moved past what we last applied
    (someone else's change: the applied cache must not hide it)."""
    if ctx.deployments is None:
        return False
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    cache_key = ("apps/v1", "Deployment", namespace, name)
    if event_type == "DELETED":
        ctx.deployments.forget(namespace, name)
        if ctx.applied is not None:
            ctx.applied.forget(cache_key)
        return True
    known = ctx.deployments.get(namespace, name)
    ctx.deployments.update(body)
    generation = body["metadata"].get("generation", 0)
    drifted = known is not None and generation > known["metadata"].get("generation", 0)
    if drifted and ctx.applied is not None:
        ctx.applied.forget(cache_key)
    return drifted


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's last-handled essence of each object, kept in this process instead of an annotation.

    The annotation cost one more PATCH (and one more watch event) per handled change. A restarted
    operator, or one that takes over, has none: kopf then sees every object as new and runs the
    same idempotent reconcile that `resume` would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, bytes] = {}

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[str | tuple[str, ...] | list[str] | None] | None = None,
    ) -> kopf.BodyEssence:
        """kopf's essence, without first deep-copying the whole body (managedFields, status):
        kopf builds it for every watch event of every Deployment the operator watches."""
        if extra_fields:
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata", {})
        trimmed = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        trimmed["metadata"] = {key: meta[key] for key in ("labels", "annotations") if key in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, trimmed)))

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        stored = self._essences.get(body.metadata.uid or "")
        return None if stored is None else cast(kopf.BodyEssence, orjson.loads(stored))

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        self._essences[body.metadata.uid or ""] = orjson.dumps(essence)

    def forget(self, body: kopf.Body) -> None:
        self._essences.pop(body.metadata.uid or "", None)


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


def _monitored(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("monitoring"))


def _lock(memo: kopf.Memo) -> asyncio.Lock:
    """The object's status lock: reconciles and the monitor's status writes take it in turn."""
    if "lock" not in memo:
        memo["lock"] = asyncio.Lock()
    lock: asyncio.Lock = memo["lock"]
    return lock


def _remember(memo: kopf.Memo, written: dict[str, Any]) -> None:
    """The object as our last status write left it: the next reconcile starts from it when the
    watch has not caught up yet (see `_freshest`)."""
    memo["written"] = {
        "resourceVersion": resource_version(written),
        "generation": written["metadata"].get("generation"),
        "status": orjson.dumps(written.get("status") or {}),  # bytes: a tenth of the dicts
    }


def _wake(memo: kopf.Memo) -> asyncio.Event:
    if "wake" not in memo:
        memo["wake"] = asyncio.Event()
    event: asyncio.Event = memo["wake"]
    return event


async def _reconcile(body: kopf.Body, memo: kopf.Memo) -> None:
    """One reconcile under the object's lock; records when to look again and wakes the daemon."""
    ctx: Context = memo["ctx"]
    async with _lock(memo), memo["reconciles"]:
        try:
            # after a failed reconcile, what our writes left is unknown: read the object
            fresh = None if memo.get("stale") else _freshest(body, memo.get("written"))
            if fresh is None:
                fresh = await ctx.kube.get(
                    api.API_VERSION, api.KIND, body.metadata.namespace, body.metadata.name
                )
            if fresh is None:
                return  # deleted meanwhile: the garbage collector removes the children
            memo["stale"] = True
            outcome = await reconcile(fresh, ctx)
            memo["stale"] = False
        except InvalidSpecError as error:
            raise kopf.PermanentError(str(error)) from error
        except KubeError as error:
            delay = 1 if error.status == 409 else 10
            raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=delay) from error
        except httpx.TransportError as error:
            raise kopf.TemporaryError(f"Kubernetes API unreachable: {error}", delay=5) from error
    if outcome.written is not None:
        _remember(memo, outcome.written)
    memo["requeue_after"] = outcome.requeue_after
    _wake(memo).set()


def _freshest(body: kopf.Body, written: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object to reconcile without asking the API server: kopf's body, or, when our last
    status write is newer than it (the watch lags), that body with the status we wrote. None when
    the spec may have moved on in between: then the caller reads it."""
    current = dict(body)
    if written is None or resource_version(current) >= written["resourceVersion"]:
        return current
    if written["generation"] != current["metadata"].get("generation"):
        return None
    metadata = {**current["metadata"], "resourceVersion": str(written["resourceVersion"])}
    return {**current, "metadata": metadata, "status": orjson.loads(written["status"])}
