"""The process runner: pods labelled app.kubernetes.io/name=modelfleet-server run as local processes.

kwok disregards these pods (its `--disregard-status-with-label-selector`), so the runner plays
kubelet for them: once the scheduler has bound a pod, it runs the first container's command with
the container's env (plus MODELFLEET_HOST/PORT/METRICS_PORT on free loopback ports), annotates the
pod with its real addresses, gives it a pod IP from kwok's range (never contacted), reports
phase, conditions and containerStatuses through the status subresource, follows the HTTP
readiness/liveness/startup probes, restarts a crashed process with back-off and reports why,
registers the metrics port in Prometheus' file SD, and on deletion stops the process (SIGTERM,
grace, SIGKILL) and then removes the pod.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from . import podspec
from .kubeapi import MERGE, KubeApi, pod_path
from .podstate import PodProcess, Probe, build_pod_status, now_iso
from .procs import ProcessGroup
from .prometheus import label_name

if TYPE_CHECKING:
    from .cluster import LocalCluster

LABEL_SELECTOR = "app.kubernetes.io/name=modelfleet-server"
LOCAL_ADDRESS = "modelfleet.io/local-address"
LOCAL_METRICS_ADDRESS = "modelfleet.io/local-metrics-address"
RUNNER_POD_CIDR = "10.244.128.0/17"  # the upper half of kwok's range; kwok hands out the lower half
MAX_GRACE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 20.0


def _key(pod: Mapping[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


class ProcessRunner:
    """Watches process-backed pods of one LocalCluster and plays kubelet for them."""

    def __init__(self, cluster: LocalCluster, probe_period_cap: float = 1.0) -> None:
        self.cluster = cluster
        self.api = KubeApi(cluster.api_url, cluster.pki)
        self._probes = _probe_client()
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runner-pod")
        self.probe_period_cap = probe_period_cap
        self.root = cluster.state_dir / "pods"
        self.shared_volumes = cluster.state_dir / "volumes"
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._procs: dict[tuple[str, str], PodProcess] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ips = (str(ip) for ip in ipaddress.ip_network(RUNNER_POD_CIDR).hosts())
        self._threads: list[threading.Thread] = []
        self._synced = threading.Event()
        self.errors: deque[str] = deque(maxlen=100)  # the latest failures, for debugging

    # --- public ------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in (
            (self._watch_loop, "runner-watch"),
            (self._reconcile_loop, "runner-reconcile"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._synced.wait(30):
            raise RuntimeError(f"process runner could not list pods: {list(self.errors)[-1:]}")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._workers.shutdown(wait=True)
        with self._lock:
            procs = list(self._procs.values())
        stoppers = [threading.Thread(target=self._kill, args=(proc, 5.0)) for proc in procs]
        for stopper in stoppers:  # all at once: SIGTERM everyone, then wait
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self.api.close()
        self._probes.close()

    def process(self, namespace: str, name: str) -> PodProcess | None:
        with self._lock:
            return self._procs.get((namespace, name))

    def address(self, namespace: str, name: str) -> str | None:
        proc = self.process(namespace, name)
        return proc.address if proc else None

    # --- watching ----------------------------------------------------------------------
    def _watch_loop(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                # Short watches: stop() never waits long for the stream to end.
                for event in self.api.watch(
                    "/api/v1/pods", version, 5, labelSelector=LABEL_SELECTOR
                ):
                    version = event["object"].get("metadata", {}).get("resourceVersion", version)
                    self._on_event(event)
                    if self._stop.is_set():
                        return
            except Exception as error:  # a broken watch (or 410 Gone) is re-listed, never fatal
                self.errors.append(f"watch: {error!r}")
                version = ""
                self._stop.wait(0.5)

    def _relist(self) -> str:
        listed = self.api.get("/api/v1/pods", labelSelector=LABEL_SELECTOR) or {}
        with self._lock:
            self._pods = {_key(pod): pod for pod in listed.get("items", [])}
        self._synced.set()
        self._wake.set()
        return str(listed.get("metadata", {}).get("resourceVersion", ""))

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind, pod = event["type"], event["object"]
        if kind == "ERROR":
            raise RuntimeError(f"watch error: {pod}")
        if kind == "BOOKMARK":
            return
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(_key(pod), None)
            else:
                self._pods[_key(pod)] = pod
        self._wake.set()

    # --- reconciling -------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            with self._lock:
                pods = dict(self._pods)
                keys = set(pods) | set(self._procs)
            # Pods in parallel: one slow probe (2 s timeout) must not hold up the others.
            ordered = sorted(keys)
            list(self._workers.map(self._reconcile_safely, ordered, [pods.get(k) for k in ordered]))

    def _reconcile_safely(self, key: tuple[str, str], pod: dict[str, Any] | None) -> None:
        try:
            self._reconcile(key, pod)
        except Exception as error:  # one bad pod must not stop the others
            self.errors.append(f"{key}: {error!r}")

    def _reconcile(self, key: tuple[str, str], pod: dict[str, Any] | None) -> None:
        proc = self._procs.get(key)
        if pod is None or (proc is not None and proc.uid != pod["metadata"]["uid"]):
            if proc is not None and not proc.terminating:  # gone from the API: stop at once
                self._begin_termination(proc, delete_pod=False)
            return
        if pod["metadata"].get("deletionTimestamp"):
            if proc is None:
                self._delete_pod(key, pod["metadata"]["uid"])
            elif not proc.terminating:
                grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
                self._begin_termination(proc, delete_pod=True, grace=grace)
            return
        if not pod["spec"].get("nodeName") or (proc and proc.terminating):
            return
        if proc is None:
            proc = self._adopt(pod)
        proc.pod = pod
        if proc.phase in ("Succeeded", "Failed"):
            return
        self._step(proc, pod)
        self._sync_status(proc, pod)

    def _adopt(self, pod: dict[str, Any]) -> PodProcess:
        namespace, name = _key(pod)
        directory = self.root / f"{namespace}_{name}"
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        node = self.api.get(f"/api/v1/nodes/{pod['spec']['nodeName']}") or {}
        host_ip = next(
            (
                a["address"]
                for a in node.get("status", {}).get("addresses", [])
                if a["type"] == "InternalIP"
            ),
            "10.245.0.254",
        )
        with self._lock:
            pod_ip = next(self._ips)
        proc = PodProcess(
            namespace,
            name,
            pod["metadata"]["uid"],
            pod_ip,
            host_ip,
            directory,
            ProcessGroup(directory),
        )
        with self._lock:
            self._procs[(namespace, name)] = proc
        return proc

    def _lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        found = self.api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if found is None:
            return None
        if kind == "Secret":
            return podspec.decode_secret(found.get("data"))
        data: dict[str, str] = found.get("data") or {}
        return data

    def _step(self, proc: PodProcess, pod: dict[str, Any]) -> None:
        """Start, watch, probe and restart the process: one step of kubelet's sync loop."""
        now = time.monotonic()
        if proc.managed is None:
            if proc.restart_at is None or now >= proc.restart_at:
                self._launch(proc, pod)
            return
        code = proc.managed.popen.poll()
        if code is not None:
            self._on_exit(proc, pod, code)
            return
        self._probe(proc, now)

    def _launch(self, proc: PodProcess, pod: dict[str, Any]) -> None:
        try:
            mounts = podspec.materialize_volumes(
                pod, proc.directory / "volumes", self.shared_volumes, self._lookup
            )
            plan = podspec.plan_launch(pod, proc.pod_ip, mounts, self._lookup, _free_port)
            container = pod["spec"]["containers"][0]
            probes = {
                kind: Probe.of(container.get(f"{kind}Probe"), plan.ports, period_cap)
                # Readiness and start-up are polled fast so tests need not wait 10 s periods;
                # liveness keeps the pod's own period so a busy server is not killed.
                for kind, period_cap in (
                    ("readiness", self.probe_period_cap),
                    ("startup", self.probe_period_cap),
                    ("liveness", float("inf")),
                )
            }
        except podspec.PodSpecError as error:
            proc.waiting = ("CreateContainerConfigError", str(error))
            proc.restart_at = time.monotonic() + 2.0
            return
        proc.plan, proc.probes = plan, probes
        proc.stderr_offset = proc.stderr_log.stat().st_size if proc.stderr_log.exists() else 0
        work = proc.directory / "work"
        work.mkdir(exist_ok=True)
        try:
            proc.managed = proc.group.start(
                "container",
                plan.argv,
                env=plan.env,
                cwd=work,
                log=proc.directory / "stdout.log",
                stderr_log=proc.stderr_log,
            )
        except OSError as error:
            proc.waiting = ("RunContainerError", f"cannot run {plan.argv[0]}: {error}")
            proc.restart_at = time.monotonic() + 2.0
            return
        proc.run_started, proc.running_since = time.monotonic(), now_iso()
        proc.started = probes["startup"].url is None
        proc.waiting, proc.restart_at, proc.phase = None, None, "Running"
        self._set_ready(proc, False)
        self._announce(proc, pod)

    def _announce(self, proc: PodProcess, pod: Mapping[str, Any]) -> None:
        """Annotate the pod with its real addresses and register its metrics port in Prometheus."""
        annotations = {LOCAL_ADDRESS: proc.address, LOCAL_METRICS_ADDRESS: proc.metrics_address}
        self.api.patch(
            pod_path(proc.namespace, proc.name),
            {"metadata": {"annotations": {k: v for k, v in annotations.items() if v}}},
            MERGE,
        )
        prometheus = self.cluster.prometheus
        if prometheus is not None and proc.metrics_address:
            labels = {label_name(k): v for k, v in (pod["metadata"].get("labels") or {}).items()}
            labels.update({"namespace": proc.namespace, "pod": proc.name})
            prometheus.add_target(f"{proc.namespace}_{proc.name}", proc.metrics_address, labels)

    def _probe(self, proc: PodProcess, now: float) -> None:
        startup, readiness, liveness = (
            proc.probes["startup"],
            proc.probes["readiness"],
            proc.probes["liveness"],
        )
        if not proc.started:
            if startup.due(now, proc.run_started):
                startup.record(_http_probe(self._probes, startup), now)
                if startup.successes >= 1:
                    proc.started = True
                elif startup.failures >= startup.failure_threshold:
                    self._restart(proc, "startup probe failed")
            return
        if readiness.url is None:
            self._set_ready(proc, True)
        elif readiness.due(now, proc.run_started):
            readiness.record(_http_probe(self._probes, readiness), now)
            if readiness.successes >= readiness.success_threshold:
                self._set_ready(proc, True)
            elif readiness.failures >= readiness.failure_threshold or not proc.ready:
                self._set_ready(proc, False)
        if liveness.due(now, proc.run_started):
            liveness.record(_http_probe(self._probes, liveness), now)
            if liveness.failures >= liveness.failure_threshold:
                self._restart(proc, "liveness probe failed")

    def _restart(self, proc: PodProcess, why: str) -> None:
        """Kill a process that failed its probe; `_on_exit` then reports and restarts it."""
        if proc.managed is not None:
            proc.group.stop("container", grace=5.0)
            with proc.stderr_log.open("a") as log:
                log.write(f"[local runner] {why}: container killed\n")

    def _on_exit(self, proc: PodProcess, pod: Mapping[str, Any], code: int) -> None:
        proc.group.stop("container", grace=0)
        proc.managed = None
        self._set_ready(proc, False)
        proc.last_terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "message": proc.stderr_tail(),
            "startedAt": proc.running_since,
            "finishedAt": now_iso(),
        }
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            proc.phase = "Succeeded" if code == 0 else "Failed"
            self._sync_status(proc, pod)
            return
        backoff = min(MAX_BACKOFF_SECONDS, 1.0 * 2**proc.restart_count)
        proc.restart_count += 1
        proc.restart_at = time.monotonic() + backoff
        proc.waiting = (
            "CrashLoopBackOff",
            f"back-off {backoff:.0f}s restarting failed container; "
            f"exit code {code}: {proc.last_terminated['message']}",
        )

    def _set_ready(self, proc: PodProcess, ready: bool) -> None:
        if proc.ready != ready:
            proc.ready, proc.ready_since = ready, now_iso()

    # --- status ------------------------------------------------------------------------
    def _sync_status(self, proc: PodProcess, pod: Mapping[str, Any]) -> None:
        status = build_pod_status(proc, pod)
        if status == proc.sent:
            return
        code = self.api.patch(pod_path(proc.namespace, proc.name, "status"), {"status": status})
        if code < 300:
            proc.sent = status

    # --- termination -------------------------------------------------------------------
    def _begin_termination(self, proc: PodProcess, delete_pod: bool, grace: float = 5.0) -> None:
        proc.terminating = True
        thread = threading.Thread(
            target=self._terminate,
            args=(proc, delete_pod, grace),
            name=f"runner-stop-{proc.name}",
            daemon=True,
        )
        thread.start()

    def _terminate(self, proc: PodProcess, delete_pod: bool, grace: float) -> None:
        """Not ready at once, SIGTERM, wait the grace period, SIGKILL, then remove the pod."""
        if delete_pod and proc.ready and proc.pod:
            self._set_ready(proc, False)
            with contextlib.suppress(Exception):  # the pod may be gone already
                self._sync_status(proc, proc.pod)
        self._kill(proc, grace=min(grace, MAX_GRACE_SECONDS))
        if delete_pod:
            with contextlib.suppress(Exception):
                self._delete_pod((proc.namespace, proc.name), proc.uid)
        with self._lock:
            if self._procs.get((proc.namespace, proc.name)) is proc:
                del self._procs[(proc.namespace, proc.name)]
        self._wake.set()

    def _kill(self, proc: PodProcess, grace: float) -> None:
        proc.group.stop("container", grace=grace)
        proc.managed = None
        prometheus = self.cluster.prometheus
        if prometheus is not None:
            prometheus.remove_target(f"{proc.namespace}_{proc.name}")

    def _delete_pod(self, key: tuple[str, str], uid: str) -> None:
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        self.api.delete(pod_path(*key), body)


def _probe_client() -> httpx.Client:
    """One client for every probe (a client per request builds a TLS context: ~20 ms of CPU);
    no keep-alive, like kubelet, so no connection outlives its probe."""
    return httpx.Client(
        headers={"User-Agent": "kube-probe/1.35"},
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _http_probe(client: httpx.Client, probe: Probe) -> bool:
    if probe.url is None:
        return True
    try:
        response = client.get(probe.url, timeout=probe.timeout)
    except httpx.HTTPError:
        return False
    return 200 <= response.status_code < 400


def _free_port() -> int:
    from .ports import free_port

    return free_port()
