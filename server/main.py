"""Run the server process: load the model, expose metrics (and the admin routes of the
metrics port, `admin.py`), serve HTTP, drain on SIGTERM.

Start-up refuses to serve a model it cannot fetch, verify or load: the reason goes to the
JSON log and to the container's termination message, and the process exits 1.
SIGTERM (or SIGINT): readiness fails at once, requests keep being answered for
`shutdown_drain_seconds` (load balancers need that long to stop sending), then the
listener closes and in-flight requests get up to `shutdown_grace_seconds` to finish;
the process exits 0. A second SIGINT forces the exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from modelfleet.server.settings import ServerSettings

if TYPE_CHECKING:
    from modelfleet.server.dataplane import DataPlane
    from modelfleet.server.fastpath import ASGIApp

log = logging.getLogger("modelfleet.server")


def _limit_threads(threads: int) -> None:
    # LightGBM's OpenMP would otherwise take every core from the event loop.
    if threads > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _skip_optional_imports() -> None:
    """LightGBM imports scikit-learn, pandas and dask when they are installed (~80 MB of
    RSS); the server never hands it their types, so this process pretends they are absent."""
    for name in ("sklearn", "pandas", "dask", "pyarrow", "matplotlib", "graphviz"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _report_failure(settings: ServerSettings, message: str) -> None:
    log.error("the model cannot be served: %s", message, extra={"uri": settings.model_uri})
    with contextlib.suppress(OSError):  # no termination log outside a container
        settings.termination_log.write_text(message[:4000])


def _make_uvicorn_server(settings: ServerSettings, app: ASGIApp, plane: DataPlane) -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn, but a signal starts a drain instead of closing the listener at once,
        and a graceful stop exits 0 instead of re-raising the signal."""

        drain_until: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_until is not None:
                if sig == signal.SIGINT:
                    self.force_exit = True
                return
            plane.start_draining()
            self.drain_until = time.monotonic() + settings.shutdown_drain_seconds
            log.info("signal %s: not ready, draining", signal.Signals(sig).name)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                return True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_grace_seconds)),
        timeout_keep_alive=75,  # above common load-balancer idle timeouts
    )
    return DrainingServer(config)


def run(settings: ServerSettings) -> int:
    """Serve until told to stop; the process exit code."""
    from modelfleet.server.logs import configure_logging

    configure_logging(settings.log_level)
    _limit_threads(settings.intra_op_threads)
    _skip_optional_imports()
    from prometheus_client import disable_created_metrics

    from modelfleet.server.admin import AdminApp, serve_admin
    from modelfleet.server.app import create_app
    from modelfleet.server.auth import ApiKeys, Authenticator
    from modelfleet.server.dataplane import DataPlane
    from modelfleet.server.errors import ModelLoadError
    from modelfleet.server.jwt_auth import JwtVerifier
    from modelfleet.server.metrics import ServerMetrics
    from modelfleet.server.model import load_model
    from modelfleet.server.ratelimit import RateLimiter, RateLimitMetrics

    try:
        keys = ApiKeys(settings.api_key_file) if settings.api_key_file else None
        model = load_model(settings)
    except ModelLoadError as error:
        _report_failure(settings, str(error))
        return 1
    jwt = JwtVerifier.from_settings(settings) if settings.jwt_enabled else None
    if jwt is not None:
        jwt.keys.prefetch()  # a failure is logged: the keys are fetched again at first use
    auth = Authenticator(keys, jwt) if keys is not None or jwt is not None else None
    disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to every scrape
    metrics = ServerMetrics(settings.deployment, settings.slot, settings.revision, model.name)
    admin = AdminApp(metrics.registry)
    metrics_server, _ = serve_admin(settings.host, settings.metrics_port, admin)
    plane = DataPlane(model, settings, metrics)
    limiter = RateLimiter.from_settings(settings)
    if limiter is not None:
        metrics.registry.register(RateLimitMetrics(limiter, metrics.identity))
    admin.attach(plane)
    model.upgrade_in_background(settings, plane.backend_changed)
    server = _make_uvicorn_server(settings, create_app(plane, auth, limiter), plane)
    log.info(
        "serving",
        extra={"port": settings.port, "metrics_port": settings.metrics_port, "model": model.name},
    )
    try:
        server.run()
    finally:
        plane.close()
        metrics_server.shutdown()
    log.info("stopped")
    return 0


def main() -> None:
    """`python -m modelfleet.server.main`: settings from MODELFLEET_* env vars only."""
    sys.exit(run(ServerSettings()))  # model_uri and the rest come from MODELFLEET_* env vars


if __name__ == "__main__":
    main()
