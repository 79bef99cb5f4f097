"""The local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok, Prometheus.

Everything runs as a loopback process with free ports and state in one folder; `stop()` stops
exactly what `start()` started, by pid. See docs/local-cluster.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from . import components, nodes, pki
from .clients import (
    ClusterError,
    kube_api_client,
    kubectl_binary,
    run_kubectl,
    service_account_token,
    token_kubeconfig,
)
from .components import SERVICE_CIDR
from .kubeapi import KubeApi
from .paths import Artifacts
from .ports import free_port
from .procs import (
    ProcessGroup,
    RunRecord,
    clean_crashed_runs,
    live_owner,
    log_tail,
    start_time,
    stop_run_processes,
)
from .prometheus import Prometheus

# Imported from here by tests and hack/ (their homes are clients.py, components.py and ports.py).
__all__ = [
    "SERVICE_CIDR",
    "ClusterConfig",
    "ClusterError",
    "LocalCluster",
    "free_port",
    "kube_api_client",
    "kubectl_binary",
    "run_kubectl",
]

_GRACE = {"kube-apiserver": 30.0, "etcd": 10.0, "prometheus": 10.0}
# What a run writes into its state folder. A start removes all of it first: a restart keeps
# nothing but logs/ (docs/local-cluster.md, "What a restart keeps").
RUN_STATE = (
    "etcd",
    "prometheus",
    "pods",
    "volumes",
    "pids",
    "pki",
    "kubeconfigs",
    "apiserver",
    "controller-manager",
    "scheduler",
    "scheduler.yaml",
    "cluster.json",
)


@dataclass
class ClusterConfig:
    state_dir: Path | None = None  # None: a fresh temporary folder, removed by stop()
    scrape_interval: str = "2s"
    with_prometheus: bool = True
    with_runner: bool = True
    node_specs: tuple[nodes.NodeSpec, ...] = nodes.DEFAULT_NODES
    start_timeout: float = 120.0  # for each step of start(); generous: the cores may be shared
    # The address real nodes and their pods reach the API server at (hack/modelfleet_dev/realnode forwards it
    # to loopback): the `kubernetes` Service's endpoint and a SAN. None: no endpoint at all.
    advertise_address: str | None = None
    # The API server's egress selector config (hack/modelfleet_dev/realnode/egress.py): its way to the kubelets.
    egress_selector_config: Path | None = None


class LocalCluster:
    """A running local control plane. Use `with LocalCluster() as cluster:` or start()/stop()."""

    def __init__(
        self, config: ClusterConfig | None = None, artifacts: Artifacts | None = None
    ) -> None:
        self.config = config or ClusterConfig()
        self.artifacts = artifacts or Artifacts.current()
        self._temporary = self.config.state_dir is None
        self.state_dir = self.config.state_dir or Path(
            tempfile.mkdtemp(prefix="modelfleet-cluster-")
        )
        self.processes = ProcessGroup(self.state_dir)
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.prometheus: Prometheus | None = None
        self.runner: Any = None  # localcluster.runner.ProcessRunner once started
        self._record: RunRecord | None = None

    # --- addresses ---------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfigs" / "admin.kubeconfig"

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url if self.prometheus else ""

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.state_dir / "pki")

    def env(self) -> dict[str, str]:
        """What a client of this cluster needs in its environment."""
        values = {"KUBECONFIG": str(self.kubeconfig), "MODELFLEET_CLUSTER_DIR": str(self.state_dir)}
        if self.prometheus:
            values["PROMETHEUS_URL"] = self.prometheus_url
            values["MODELFLEET_PROMETHEUS_URL"] = self.prometheus_url
        return values

    # --- life cycle --------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        if not self.artifacts.is_complete():
            raise ClusterError(
                f"the control-plane binaries are not built ({self.artifacts.root}); "
                "run `make cluster-build` (or `make setup`)"
            )
        for line in clean_crashed_runs():
            print(f"[localcluster] cleaned a crashed run: {line}", file=sys.stderr)
        self._begin_empty()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._record = RunRecord.register(self.state_dir, remove_state=self._temporary)
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._start_all()
                break
            except BaseException as error:
                # A free port taken by someone else between our probe and the bind: start over.
                if attempt == 2 or "address already in use" not in str(error):
                    self.stop()
                    raise
                print(f"[localcluster] port taken, starting again: {error}", file=sys.stderr)
                self._stop_processes()
                for folder in ("etcd", "prometheus", "pods"):
                    shutil.rmtree(self.state_dir / folder, ignore_errors=True)
        self.timings["start_s"] = round(time.monotonic() - started, 2)
        self._write_info()
        return self

    def _begin_empty(self) -> None:
        """Remove what an earlier run left in the state folder (its processes first, by their
        pidfiles), so every start meets an empty store; refused while a live run owns the folder."""
        owner = live_owner(self.state_dir)
        if owner is not None:
            raise ClusterError(
                f"{self.state_dir} belongs to a running cluster (pid {owner}); "
                "stop it first (`make cluster-down`)"
            )
        for name in stop_run_processes(self.state_dir):
            print(f"[localcluster] stopped a leftover of an earlier run: {name}", file=sys.stderr)
        for name in RUN_STATE:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _start_all(self) -> None:
        for name in components.PORT_NAMES:
            self.ports[name] = free_port()
        advertised = self.config.advertise_address
        pki.generate(self.state_dir / "pki", extra_ips=(advertised,) if advertised else ())
        self._write_kubeconfigs()
        self._start_etcd()
        self._start_apiserver()
        self._start_controllers()
        if self.config.with_prometheus:
            self.prometheus = Prometheus(
                self.processes,
                self.state_dir / "prometheus",
                self.ports["prometheus"],
                self.config.scrape_interval,
            )
            self.prometheus.start()
        self._install_crds_and_nodes()
        self._wait_nodes_ready()
        self._wait_healthz("controller-manager")
        self._wait_healthz("scheduler")
        if self.config.with_runner:
            from .runner import ProcessRunner  # the runner needs the kubernetes client

            self.runner = ProcessRunner(self)
            self.runner.start()

    def _stop_processes(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        self.processes.stop_all(_GRACE)
        self.prometheus = None

    def stop(self) -> None:
        """Stop everything this cluster started (runner processes first), by pid."""
        self._stop_processes()
        if self._record is not None:
            self._record.path.unlink(missing_ok=True)
            self._record = None
        if self._temporary:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            (self.state_dir / "cluster.json").unlink(missing_ok=True)

    @property
    def _limit(self) -> float:
        return self.config.start_timeout

    # --- components --------------------------------------------------------------------
    @property
    def _layout(self) -> components.Layout:
        return components.Layout(
            self.artifacts,
            self.state_dir,
            self.ports,
            self.config.advertise_address,
            self.config.egress_selector_config,
        )

    def _start(self, name: str, args: list[str]) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state_dir)}
        self.processes.start(name, args, env=env, cwd=self.state_dir)

    def _start_etcd(self) -> None:
        self._start("etcd", components.etcd_command(self._layout))
        health = f"{self._layout.etcd_url}/health"
        self._wait("etcd healthy", lambda: _http_ok(health, verify=False), self._limit, ["etcd"])

    def _start_apiserver(self) -> None:
        self._start("kube-apiserver", components.apiserver_command(self._layout))
        readyz = f"{self.api_url}/readyz"
        trust = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._wait(
            "kube-apiserver ready",
            lambda: _http_ok(readyz, verify=trust),
            self._limit,
            ["etcd", "kube-apiserver"],
        )

    def _write_kubeconfigs(self) -> None:
        (self.state_dir / "kubeconfigs").mkdir(parents=True, exist_ok=True)
        for user in pki.CLIENTS:
            path = self._layout.kubeconfig_for(user)
            path.write_text(pki.kubeconfig(self.pki, self.api_url, user))
            path.chmod(0o600)

    def _start_controllers(self) -> None:
        layout = self._layout
        self._start("kube-controller-manager", components.controller_manager_command(layout))
        layout.scheduler_config_path.write_text(json.dumps(components.scheduler_config(layout)))
        self._start("kube-scheduler", components.scheduler_command(layout))
        self._start("kwok", components.kwok_command(layout))

    def _install_crds_and_nodes(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(self.artifacts.crd_dir))
        # applied, not created: a start must never fail on an object that is already there
        node_list = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [nodes.build_node(spec, i) for i, spec in enumerate(self.config.node_specs)],
        }
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(node_list))
        self.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", f"--timeout={self._limit:.0f}s"
        )

    def _wait_nodes_ready(self) -> None:
        wanted = {spec.name for spec in self.config.node_specs}

        def all_ready() -> bool:
            listed = api.get("/api/v1/nodes") or {"items": []}
            ready = {
                item["metadata"]["name"]
                for item in listed["items"]
                for condition in item.get("status", {}).get("conditions", [])
                if condition["type"] == "Ready" and condition["status"] == "True"
            }
            return wanted <= ready

        api = self.http()
        try:
            self._wait("all nodes Ready", all_ready, self._limit, ["kwok", "kube-apiserver"])
        finally:
            api.close()

    def _wait_healthz(self, name: str) -> None:
        url = f"https://127.0.0.1:{self.ports[name]}/healthz"
        self._wait(
            f"kube-{name} healthy",
            lambda: _http_ok(url, verify=False),
            self._limit,
            [f"kube-{name}"],
        )

    def _wait(
        self, what: str, check: Callable[[], bool], timeout: float, watch: Iterable[str]
    ) -> None:
        """Poll `check` until true; fail fast, naming the component, when a watched process died."""
        deadline = time.monotonic() + timeout
        watched = list(watch)
        while True:
            for name in watched:
                managed = self.processes.processes.get(name)
                if managed is not None and managed.popen.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with {managed.popen.returncode} while waiting for {what}; "
                        f"last lines of {managed.log}:\n{log_tail(managed.log)}"
                    )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {n}:\n{log_tail(self.processes.log_dir / f'{n}.log', 10)}"
                    for n in watched
                )
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(0.1)

    def _write_info(self) -> None:
        info = {
            "api_url": self.api_url,
            "kubeconfig": str(self.kubeconfig),
            "prometheus_url": self.prometheus_url,
            "state_dir": str(self.state_dir),
            "owner_pid": os.getpid(),
            "owner_started": start_time(os.getpid()),
            "ports": self.ports,
            "timings": self.timings,
            "env": self.env(),
        }
        (self.state_dir / "cluster.json").write_text(json.dumps(info, indent=2))

    # --- clients -----------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's kubectl against this cluster; raises ClusterError with stderr on failure."""
        return run_kubectl(self.kubeconfig, *args, input=input, check=check)

    def http(self) -> KubeApi:
        """A small httpx-based client as the admin user (`.http` is the raw httpx.Client)."""
        return KubeApi(self.api_url, self.pki, user="admin")

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, expiration_seconds: int = 86400
    ) -> Path:
        """Write a kubeconfig that authenticates as a ServiceAccount (a TokenRequest token), so
        a test can run the operator with exactly the RBAC of manifests/ instead of as admin."""
        api = self.http()
        try:
            token = service_account_token(api, namespace, name, expiration_seconds)
        finally:
            api.close()
        kubeconfig = token_kubeconfig(
            self.api_url, self.pki.ca_cert.read_bytes(), namespace, name, token
        )
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        return path

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for the admin user."""
        return kube_api_client(self.kubeconfig)


def _http_ok(url: str, verify: bool | ssl.SSLContext = True) -> bool:
    with httpx.Client(verify=verify, timeout=1.0) as client:
        return client.get(url).status_code == 200
