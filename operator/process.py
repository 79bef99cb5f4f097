"""The operator process: what `modelfleet operator` runs around the Kopf layer.

`serve` builds the process's parts once — the API client, the metrics and health ports, the
peering presence, one HTTP client each for the rollout's gates, monitoring and notifications, the
reconcile's `Context` and the monitor's dependencies — and hands them to `kopf.operator` with the
registry `handlers.build_registry` fills. `run` is the console entry: logging, then the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any, cast

import httpx
import kopf
from prometheus_client import start_http_server

from modelfleet.operator.apply import AppliedCache
from modelfleet.operator.feedback_read import PrometheusFeedbackReader
from modelfleet.operator.gates import PrometheusAndPairedGates, RolloutGates
from modelfleet.operator.handlers import build_registry
from modelfleet.operator.kube import HttpKubeClient
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.monitor_loop import MonitorDeps, judge_window
from modelfleet.operator.monitor_read import PrometheusWindowReader
from modelfleet.operator.notifier import Notifier
from modelfleet.operator.peering import Presence, own_identity, serve_health, start_priority
from modelfleet.operator.reconcile import Context
from modelfleet.operator.settings import OperatorSettings

# children are re-applied (drift corrected) after this many resync periods even when unchanged;
# a slot Deployment's drift is seen by its watch and corrected at once
REAPPLY_RESYNCS = 10
# glibc keeps memory freed after a burst of reconciles (response bodies, kopf's copies) unless
# asked to give it back; without this the RSS stayed at the burst's peak
TRIM_MEMORY_SECONDS = 30.0
# reconciles running at once: enough to keep the API requests in flight busy; the rest wait
# before building their children, so 1000 objects at once hold 32 desired states, not 1000
RECONCILES_AT_ONCE = 32
# Monitoring looks reading Prometheus at once, on their own HTTP client: at 100 monitored
# ModelDeployments and a 10 s interval, unbounded looks sharing the rollout analysis' client
# overran it (72 s a look, every query timing out; bench/results/monitoring.json), and a rollout's
# gates must never wait behind monitoring.
MONITOR_LOOKS_AT_ONCE = 8


async def serve(settings: OperatorSettings, stop: asyncio.Event | None = None) -> None:
    """Run the operator until cancelled (or until `stop` is set)."""
    kube = HttpKubeClient.from_environment()
    metrics = OperatorMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.bind_host, registry=metrics.registry)
    presence = Presence(
        kube,
        metrics,
        peering=settings.peering,
        identity=own_identity(),
        priority=settings.peering_priority or start_priority(),
        lifetime=settings.peering_lifetime_seconds,
    )
    health = (
        await serve_health(presence, settings.bind_host, settings.health_port)
        if settings.health_port
        else None
    )
    background = [
        asyncio.create_task(_return_freed_memory(TRIM_MEMORY_SECONDS)),
        asyncio.create_task(presence.run()),
    ]
    try:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            httpx.AsyncClient(timeout=10) as monitoring_http,
            httpx.AsyncClient(timeout=10) as notify_http,  # a slow receiver holds no gate's client
        ):
            analyzer = PrometheusAndPairedGates(http, settings.prometheus_url)
            notifier = Notifier(notify_http, kube, settings, metrics)
            ctx = Context(
                kube=kube,
                settings=settings,
                analyzer=analyzer,
                metrics=metrics,
                applied=AppliedCache(max_age=REAPPLY_RESYNCS * settings.resync_seconds),
                deployments=LiveDeployments(),
                notifier=notifier,
                gates=RolloutGates(http, kube),
            )
            monitor = MonitorDeps(
                kube=kube,
                http=monitoring_http,
                reader_for=lambda url: PrometheusWindowReader(monitoring_http, url),
                default_prometheus_url=settings.prometheus_url,
                judge=judge_window,
                metrics=metrics,
                feedback_reader_for=lambda url: PrometheusFeedbackReader(monitoring_http, url),
                looks=asyncio.Semaphore(MONITOR_LOOKS_AT_ONCE),
            )
            await kopf.operator(
                registry=build_registry(settings),
                memo=kopf.Memo(
                    ctx=ctx, reconciles=asyncio.Semaphore(RECONCILES_AT_ONCE), monitor=monitor
                ),
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                standalone=settings.peering is None,
                peering_name=settings.peering,
                priority=presence.priority,
                # kopf's Identity is a NewType of str that kopf does not export
                identity=cast(Any, presence.identity),
                stop_flag=stop,
            )
            await notifier.close()  # before its client closes: no attempt fails for the shutdown
    finally:
        for task in background:
            task.cancel()
        if health is not None:
            health.close()
        await kube.close()


async def _return_freed_memory(interval: float) -> None:
    """Every `interval`, hand the memory the C allocator holds free back to the OS (glibc only)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return  # not glibc: nothing to do
    while True:
        await asyncio.sleep(interval)
        trim(0)


def run(settings: OperatorSettings) -> None:
    """Entry of `modelfleet operator`: logging as configured, then the event loop."""
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(log_format=log_format, verbose=settings.log_level == "DEBUG")
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    asyncio.run(serve(settings))
