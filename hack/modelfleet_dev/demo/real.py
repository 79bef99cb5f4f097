"""The demo on the real tier (`python -m modelfleet_dev.demo --real`): a real kubelet node, our images, the
operator as a Pod installed with `kubectl apply -k`, Traefik's Gateway, Prometheus.

`RealDemoCluster.up()` starts the tier in this process with realnode's own code (what
`make real-up` and tests/real's `real_stack` run: `RealCluster.start()`, then Prometheus, the
example models over HTTP, Traefik, the operator), and `down()` stops all of it: processes,
mounts, cgroups and the network namespace (a crashed demo's leftovers are removed by the next
start of any real tier, from its run record). It offers what the story calls on a cluster
(`kubectl`, `api_client`, `kubeconfig`, `prometheus_url`, where models are, how traffic is
routed and how the models are monitored), so the chapters are the same code on both tiers. Beside
the model files it starts the demo's webhook receiver (demo/webhook_receiver.py) inside the
namespace: `spec.monitoring.webhook` of every manifest points at it, with a bearer token from a
Secret that `prepare` writes next to the namespace.

`ClientTraffic` is the story's client: steady OIP traffic of varied rows through Traefik's
listener (a loopback forwarder into the namespace), every answer counted by the `model_version`
in its body and its HTTP code (realnode.load); `switch` changes the rows it sends. `client_tally` turns those answers into the
`Tally` the live view and the summary read.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from modelfleet_dev.harness.driver import Tally
from modelfleet_dev.localcluster.paths import cache_root
from modelfleet_dev.realnode import clients, install, netns, prometheus, traefik
from modelfleet_dev.realnode.cluster import RealCluster, RealConfig
from modelfleet_dev.realnode.config import REAL_NODE_SELECTOR, REAL_TOLERATION
from modelfleet_dev.realnode.load import Answer, Load, Summary

from . import webhook_receiver
from .spec import MONITOR_INTERVAL, MONITOR_WINDOW

INJECTED = "injected fault"  # the server's 500 body under MODELFLEET_FAULT_ERROR_RATE
SHARE_WINDOW_S = 2.0  # the live view's share: the client's answers of the last 2 s
OPERATOR_LOG = "demo-real-operator.log"
WEBHOOK_PORT = 8091  # beside the model files (8090), on the namespace's API address
WEBHOOK_SECRET = "demo-alerts"  # its key `token` holds the receiver's bearer token
BASELINE_FILE = "reference.csv"  # the 512 reference rows: the paired gate's and the baseline
T = TypeVar("T")


class RealDemoCluster:
    """The real tier and its stack, started here; stopped by `down()`."""

    started_here = True
    kind = "real"
    replicas = 1  # a slot's pods share two cores with the whole cluster

    def __init__(self, real: RealCluster) -> None:
        self.real = real
        self.prometheus_url = ""  # inside the namespace: what the operator Pod queries
        self.models_url = ""
        self.gateway = ""  # <ClusterIP>:8000 of Traefik's Service, inside the namespace
        self.webhook_url = ""  # the demo's receiver, inside the namespace
        self.webhook_events = real.state_dir / "webhook-events.jsonl"
        self.webhook_token = secrets.token_hex(16)
        self.timings: dict[str, float] = {}

    @classmethod
    def up(cls) -> RealDemoCluster:
        started = time.monotonic()
        cluster = cls(RealCluster(RealConfig()))
        cluster.real.start()  # on failure it has stopped what it started
        cluster.timings["real_up_s"] = round(time.monotonic() - started, 1)
        try:
            cluster._install(started)
        except BaseException:
            cluster.down()
            raise
        return cluster

    def _install(self, started: float) -> None:
        """What tests/real's `real_stack` installs, in two lines at once (each mostly waits for
        its pods): Prometheus then the operator pointed at it; the model files then Traefik."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            monitored = pool.submit(self._prometheus_and_operator)
            self.webhook_url = self._timed("webhook_s", self._serve_webhook)
            self.models_url = self._timed("models_s", lambda: install.serve_models(self.real))
            self.gateway = self._timed("gateway_s", lambda: install.install_gateway(self.real))
            monitored.result()
        self.timings["stack_s"] = round(time.monotonic() - started, 1)

    def _prometheus_and_operator(self) -> None:
        self.prometheus_url = self._timed("prometheus_s", lambda: prometheus.start(self.real))
        self._timed("operator_s", lambda: install.install_operator(self.real, self.prometheus_url))

    def _serve_webhook(self) -> str:
        """The receiver as a process inside the namespace, like the model files; its URL."""
        address = f"{netns.API_ADDRESS}:{WEBHOOK_PORT}"
        cmd = [
            sys.executable, webhook_receiver.__file__, "--bind", netns.API_ADDRESS,
            "--port", str(WEBHOOK_PORT), "--out", str(self.webhook_events),
        ]  # fmt: skip
        env = {**os.environ, webhook_receiver.TOKEN_ENV: self.webhook_token}
        self.real.processes.start("webhook-receiver", netns.in_netns(self.real.netns, cmd), env)
        install.wait_answering(self.real, f"http://{address}/", timeout=30)
        return f"http://{address}{webhook_receiver.PATH}"

    def _timed(self, key: str, step: Callable[[], T]) -> T:
        started = time.monotonic()
        result = step()
        self.timings[key] = round(time.monotonic() - started, 1)
        return result

    def timings_text(self) -> str:
        """'node and control plane 22s (images 0s), then Prometheus 6s → operator 31s ∥ model
        files 1s → Traefik 25s'."""
        t = {key: round(value) for key, value in self.timings.items()}
        return (
            f"node and control plane {t['real_up_s']}s (image check "
            f"{round(self.real.timings.get('images_s', 0))}s), then Prometheus "
            f"{t.get('prometheus_s', '?')}s → operator {t.get('operator_s', '?')}s ∥ model files "
            f"{t.get('models_s', '?')}s (webhook receiver {t.get('webhook_s', '?')}s) → Traefik "
            f"{t.get('gateway_s', '?')}s"
        )

    def down(self) -> None:
        self.real.stop()

    # --- what the story and harness.rollout call -------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.real.kubeconfig

    @property
    def netns(self) -> str:
        return self.real.netns

    def env(self) -> dict[str, str]:
        return self.real.env()

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.real.control_plane.kubectl(*args, input=input, check=check)

    def api_client(self) -> Any:
        return self.real.control_plane.api_client()

    # --- what the ModelDeployment says on this tier ----------------------------------------
    def model_uri(self, file_name: str) -> str:
        return f"{self.models_url}/{file_name}"

    def traffic(self) -> dict[str, Any]:
        """An HTTPRoute on Traefik's Gateway, every path of any host."""
        parent = {"name": traefik.GATEWAY_NAME, "namespace": traefik.NAMESPACE}
        return {"gateway": {"parentRefs": [parent], "path": "/"}}

    def placement(self) -> dict[str, Any]:
        """The spec keys that put the slot pods on the real node."""
        return {
            "nodeSelector": dict(REAL_NODE_SELECTOR),
            "tolerations": [dict(REAL_TOLERATION)],
        }

    def monitoring(self) -> dict[str, Any]:
        """spec.monitoring: the reference rows as the training baseline, a short interval and
        window (the demo's), default thresholds, the receiver with the Secret's bearer token."""
        return {
            "baselineUri": self.model_uri(BASELINE_FILE),
            "interval": MONITOR_INTERVAL,
            "window": MONITOR_WINDOW,
            "webhook": {
                "url": self.webhook_url,
                "bearerTokenSecretRef": {"name": WEBHOOK_SECRET, "key": "token"},
            },
        }

    def prepare(self, namespace: str) -> None:
        """The story's namespace, and in it the Secret with the receiver's bearer token."""
        self.kubectl("create", "namespace", namespace)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": WEBHOOK_SECRET},
            "stringData": {"token": self.webhook_token},
        }
        self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))

    # --- the operator ------------------------------------------------------------------------
    def operator_log(self) -> Path:
        """The operator Pods' logs, copied out of the node's files (kept after `down`)."""
        path = cache_root() / OPERATOR_LOG
        with contextlib.suppress(Exception):  # a log is help, never a reason to fail
            listed = self.kubectl(
                "-n", install.OPERATOR_NAMESPACE, "get", "pods", "-o", "json", check=False
            )
            pods = json.loads(listed.stdout or "{}").get("items", [])
            parts = [
                f"=== {pod['metadata']['name']} ===\n"
                + self.real.pod_log(install.OPERATOR_NAMESPACE, pod["metadata"]["name"])
                for pod in pods
            ]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(parts))
        return path

    @contextlib.contextmanager
    def forwarded(self, address: str) -> Iterator[str]:
        """`127.0.0.1:<port>` forwarding to `address` inside the namespace."""
        host, _, port = address.rpartition(":")
        with clients.forward(self.netns, host, int(port)) as local:
            yield local


class VariedLoad(Load):
    """realnode.load's client, each request carrying a batch of rows picked from a pool (the
    drift gate compares the slots' prediction distributions over real, varied traffic)."""

    def __init__(self, url: str, payloads: Sequence[Mapping[str, Any]], **kw: Any) -> None:
        self._pool = [orjson.dumps(dict(body)) for body in payloads]
        self._picker = random.Random(7)
        super().__init__(url, payloads[0], **kw)

    @property
    def payload(self) -> bytes:  # read once per request by Load._work
        return self._pool[self._picker.randrange(len(self._pool))]

    @payload.setter
    def payload(self, value: bytes) -> None:
        pass  # the pool is the payload

    def switch(self, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Send from another pool from now on (one assignment: a worker picks the old or new)."""
        self._pool = [orjson.dumps(dict(body)) for body in payloads]


def client_tally(
    answers: Sequence[Answer], revisions: Mapping[str, str], faulty: str, now: float
) -> Tally:
    """The client's answers as a `Tally`: counted by (version, its revision, code); a 500 whose
    body says the fault was injected is the faulty version's (the client cannot tell which pod
    sent any other failure: slot '?'); the share of each version over the last 2 s."""
    counts: Counter[tuple[str, str, int]] = Counter()
    for answer in answers:
        version = answer.version
        if version is None and INJECTED in answer.error:
            version = faulty
        counts[(version or "?", revisions.get(version or "", ""), answer.code)] += 1
    recent = Summary([a for a in answers if now - SHARE_WINDOW_S <= a.sent < now])
    answered = sum(recent.by_version.values())
    shares = {version: recent.share(version) for version in sorted(recent.by_version)}
    return Tally(counts, [(now, shares)] if answered else [])


class ClientTraffic:
    """Steady traffic through the Gateway while the story runs, counted by the client."""

    def __init__(
        self,
        url: str,
        payloads: Sequence[Mapping[str, Any]],
        rate: float,
        revisions: Mapping[str, str],
        faulty: str,
    ) -> None:
        self.load = VariedLoad(url, payloads, rate=rate, seconds=3600.0, workers=6)
        self.revisions = revisions  # the story's own dict: filled as chapters end
        self.faulty = faulty

    @contextlib.contextmanager
    def running(self) -> Iterator[ClientTraffic]:
        self.load.start()
        try:
            yield self
        finally:
            self.load.stop()

    def switch(self, payloads: Sequence[Mapping[str, Any]]) -> float:
        """Send these rows from now on; when the switch happened (time.monotonic())."""
        self.load.switch(payloads)
        return time.monotonic()

    def snapshot_tally(self) -> Tally:
        return client_tally(self.load.answers(), self.revisions, self.faulty, time.monotonic())

    def summary(self, since: float | None = None, until: float | None = None) -> Summary:
        return self.load.summary(since, until)


def describe_answers(summary: Summary) -> str:
    """'v1 1,204 · v2 302 answers, 0 failed' or '…, 12 failed (HTTP 500 ×12)'."""
    versions = " · ".join(f"{v} {n:,}" for v, n in sorted(summary.by_version.items()))
    text = f"{versions or 'no'} answers, {summary.failed:,} failed"
    codes = Counter(a.code for a in summary.answers if not a.ok)
    if codes:
        text += " (" + ", ".join(f"HTTP {c or 'none'} ×{n}" for c, n in sorted(codes.items())) + ")"
    return text
