"""How the operator signs in to the API server: credentials from a kubeconfig or from the pod.

The `kubernetes` package is used here only, and only to read credentials. Bound ServiceAccount
tokens rotate: `BearerToken` re-reads the in-cluster token file every minute (as client-go does;
the kubelet rewrites it at 80 % of its life), and after any 401 re-reads the token (or logs in
again from the kubeconfig) and sends the request once more.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_RELOAD_SECONDS = 60.0  # client-go's period for re-reading a projected token

log = logging.getLogger(__name__)


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
