"""The modelfleet story in five chapters, six on the real tier (`python -m modelfleet_dev.demo [--real|--kwok]
[--keep]`).

On the real tier (the default, `--real`, demo/real.py): a real kubelet node running our images,
the operator as a Pod installed with `kubectl apply -k`, Traefik's Gateway, and a client counting
every answer it gets through Traefik by the model_version in its body. On the kwok tier
(`--kwok`): the local control plane, process-backed pods, the operator as a process and a traffic
driver that plays the proxy by following the HTTPRoute's weights.

1. v1 (the example LightGBM model) is applied and becomes Ready.
2. Under steady traffic, v2 (a good retrain) walks 10 → 25 → 50 → 100 % and is promoted.
3. v3 (the same model, but its server answers 5 % of requests with a 500) is rolled back by itself;
   the Degraded condition carries the measured error rate.
4. v4 (a silent bug: features permuted) passes the error, latency and drift gates; the paired gate
   rolls it back, the measured agreement in the condition (demo/model_chapters.py).
5. v5 (an honest retrain) is promoted through every gate, then undone in one router write: the
   time from `kubectl modelfleet undo` to the HTTPRoute flip is printed.
6. (real tier) After promotion the operator watches the model: calm traffic keeps `Drifting`
   False; then one feature shifts and another arrives null, and `Drifting` and `DataQuality` name
   them within seconds, measured, with the CloudEvents the demo's webhook receiver got
   (demo/monitor_chapter.py).

The exit code is 0 only if all of that happened and the traffic driver (the client, on the real
tier) saw no failed request outside the faulty canary. Steps are short (15 s, analysed every 3 s)
so it fits in ~6 minutes (~8 on the real tier).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelfleet_dev.harness.kube import kube_snapshot
from modelfleet_dev.harness.model_aware import VariedRowsDriver, row_payloads
from modelfleet_dev.harness.operator import install_crd
from modelfleet_dev.harness.rollout import apply, read_status

from . import model_chapters, monitor_chapter, real_story
from .cluster import BIN, DemoCluster
from .real import ClientTraffic, RealDemoCluster
from .spec import FAULT_RATE, LIMITS, NAME, NAMESPACE, ROWS_PER_REQUEST, RPS, manifest
from .view import Outcome, View
from .watch import RolloutWatch, condition, gates_text, measured_error_rate, percent


@dataclass
class Story:
    cluster: DemoCluster | RealDemoCluster
    view: View
    driver: VariedRowsDriver | ClientTraffic | None = None
    revisions: dict[str, str] = field(default_factory=dict)  # version → revision
    watches: dict[str, RolloutWatch] = field(default_factory=dict)
    ready_s: float | None = None
    rollback_rate: float | None = None  # from the Degraded condition's message
    agreements: dict[str, float | None] = field(default_factory=dict)  # from a paired-gate rollback
    undo_s: float | None = None  # `kubectl modelfleet undo` → HTTPRoute flipped
    monitoring_s: float | None = None  # the monitoring chapter's length (real tier)
    _api: Any = None
    traffic_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def real(self) -> bool:
        return isinstance(self.cluster, RealDemoCluster)

    @property
    def chapters(self) -> int:
        return 6 if self.real else 5  # the real tier adds monitoring after promotion

    def chapter(self, number: int, title: str) -> None:
        """A chapter's heading: '2/6  v2: …'."""
        self.view.chapter(f"{number}/{self.chapters}  {title}")

    def status(self) -> Mapping[str, Any]:
        return read_status(self.cluster, NAMESPACE, NAME)

    def api(self) -> Any:
        """One API client for the story's own reads (the HTTPRoute during `undo`)."""
        if self._api is None:
            self._api = self.cluster.api_client()
        return self._api

    def slot_versions(self, status: Mapping[str, Any]) -> dict[str, str]:
        slots = status.get("slots") or {}
        return {slot: str(info.get("version") or slot) for slot, info in slots.items()} | {
            "none": "no endpoint"
        }

    def follow(
        self, watch: RolloutWatch, done: Callable[[Mapping[str, Any]], bool], timeout: float
    ) -> Mapping[str, Any]:
        """Poll the status until `done`, printing events and refreshing the live view."""
        deadline = time.monotonic() + timeout
        with self.view.live():
            while True:
                status = self.status()
                for event in watch.observe(status, self.view.elapsed()):
                    self.view.say(f"{watch.version}: {event}")
                if self.driver is not None:
                    tally = self.driver.snapshot_tally()
                    self.view.update(watch, status, tally, self.slot_versions(status), LIMITS)
                if done(status):
                    watch.finish(self.view.elapsed())
                    return status
                if time.monotonic() > deadline:
                    watch.finish(self.view.elapsed())
                    raise TimeoutError(
                        f"{watch.version}: not finished after {timeout:.0f} s; last status:\n"
                        + json.dumps(status, indent=1)
                    )
                time.sleep(0.5)

    def new_watch(self, version: str) -> RolloutWatch:
        """A watch that reports phase changes from now on (not the phase it starts in)."""
        return RolloutWatch(version, self.view.elapsed(), phase=self.status().get("phase"))

    def check(self, ok: bool, what: str) -> None:
        self.view.say(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)

    # --- the chapters ----------------------------------------------------------------------------
    def chapter_v1(self) -> None:
        self.chapter(1, "v1: apply the example ModelDeployment and wait until Ready")
        apply(self.cluster, NAMESPACE, manifest(self.cluster, model="model.txt", version="v1"))
        self.view.say(
            f"applied ModelDeployment {NAME} (v1 = examples/models/model.txt, "
            f"{self.cluster.replicas} replica{'s' if self.cluster.replicas > 1 else ''})"
        )
        watch = self.new_watch("v1")
        status = self.follow(
            watch, lambda s: condition(s, "Ready").get("status") == "True", timeout=180
        )
        self.ready_s = self.view.elapsed() - watch.started
        self.revisions["v1"] = str(status.get("activeRevision"))
        self.watches["v1"] = watch
        ready = condition(status, "Ready")
        self.check(
            status.get("activeVersion") == "v1",
            f"RESULT v1 Ready in {self.ready_s:.0f}s ({ready.get('message', '')})",
        )

    def chapter_v2(self) -> None:
        self.chapter(2, "v2: a good retrain, 10 → 25 → 50 → 100 % under live traffic")
        apply(self.cluster, NAMESPACE, manifest(self.cluster, model="model-v2.txt", version="v2"))
        self.view.say(f"applied v2 (examples/models/model-v2.txt); {LIMITS.text()}")
        watch = self.new_watch("v2")
        self.watches["v2"] = watch
        status = self.follow(watch, _ended("v2"), timeout=420)
        last = (status.get("history") or [{}])[0]
        self.revisions["v2"] = str(last.get("revision") or watch.revision)
        promoted = last.get("version") == "v2" and last.get("outcome") == "Promoted"
        self.check(
            promoted and watch.weights() == list(LIMITS.steps),
            f"RESULT v2 {last.get('outcome')} after "
            f"{' → '.join(map(str, watch.weights()))} % in {watch.steps_seconds():.0f}s",
        )

    def chapter_v3(self) -> None:
        self.chapter(3, "v3: the same model, but its server fails 5 % of requests")
        apply(
            self.cluster,
            NAMESPACE,
            manifest(
                self.cluster,
                model="model-v2.txt",
                version="v3",
                env={"MODELFLEET_FAULT_ERROR_RATE": FAULT_RATE},
            ),
        )
        self.view.say("applied v3 with server env MODELFLEET_FAULT_ERROR_RATE=0.05 (injected 500s)")
        watch = self.new_watch("v3")
        self.watches["v3"] = watch
        status = self.follow(watch, _ended("v3"), timeout=360)
        last = (status.get("history") or [{}])[0]
        self.revisions["v3"] = str(last.get("revision") or watch.revision)
        message = str(condition(status, "Degraded").get("message") or last.get("message") or "")
        rate = measured_error_rate(message)
        self.rollback_rate = rate
        rolled_back = last.get("version") == "v3" and last.get("outcome") == "RolledBack"
        self.check(
            rolled_back and rate is not None and rate > LIMITS.max_error_rate,
            f"RESULT v3 {last.get('outcome')}: {message}",
        )
        self.check(
            status.get("activeVersion") == "v2",
            f"v2 still serves all traffic (active {status.get('activeVersion')})",
        )

    # --- the end ---------------------------------------------------------------------------------
    def traffic_checks(self) -> None:
        assert self.driver is not None
        time.sleep(2)  # the driver re-reads the weights every 0.5 s: let it see weight 0
        tally = self.driver.snapshot_tally()
        faulty = self.revisions.get("v3", "")
        outside = tally.failed() - tally.failed(revision=faulty)
        counter = (
            "the client counts every answer" if self.real else "the driver counts every answer"
        )
        self.check(
            outside == 0,
            f"no failed request outside the faulty canary: {outside} of "
            f"{tally.total() - tally.total(revision=faulty):,} ({counter})",
        )

    def summary(self) -> None:
        tally = self.driver.snapshot_tally() if self.driver else None
        rows = []
        for version, watch in self.watches.items():
            revision = self.revisions.get(version, "")
            measured = [step.analysis for step in watch.steps if step.analysis]
            rates = [a["errorRate"] for a in measured if a.get("errorRate") is not None]
            p99s = [a["p99Ms"] for a in measured if a.get("p99Ms") is not None]
            rows.append(
                Outcome(
                    version=version,
                    outcome=_outcome(version, watch, self.status()),
                    steps=" · ".join(f"{s.weight}% {s.seconds(0):.0f}s" for s in watch.steps)
                    or f"Ready in {self.ready_s or 0:.0f}s",
                    error_rate=self._error_rate(version, rates),
                    p99=f"{max(p99s):.1f} ms" if p99s else "–",
                    requests=tally.total(revision=revision) if tally else 0,
                    failed=tally.failed(revision=revision) if tally else 0,
                    gates=gates_text(
                        [step.analysis for step in watch.steps], self.agreements.get(version)
                    ),
                )
            )
        self.view.summary(rows)
        self.view.say(
            "error rate and p99: the worst step's last analysis of the canary's own Prometheus "
            "series (for a rollback, the rate in the Degraded condition); PSI and agreement: the "
            "model-aware gates (largest PSI, lowest agreement measured; for a rollback, the "
            "agreement in the Degraded condition); requests and failed: "
            + (
                "what the client counted through Traefik per version (by the model_version in "
                "each answer; a failed one by the server's 'injected fault' body)"
                if self.real
                else "what the traffic driver saw per version"
            )
        )
        if self.monitoring_s is not None:
            self.view.say(
                f"monitoring after promotion: {self.monitoring_s:.0f}s for the calm look, the "
                "shift, both conditions, the CloudEvents and the figures"
            )
        if self.undo_s is not None:
            self.view.say(
                f"undo: {self.undo_s:.2f}s from `kubectl modelfleet undo` to the HTTPRoute "
                "sending all traffic to v2's warm slot (one router write, no steps replayed; "
                "most of it is the plugin's Python start-up on this busy machine)"
            )
        if tally and self.traffic_s:
            rate = real_story.RATE if self.real else RPS
            self.view.say(
                f"{'client through Traefik' if self.real else 'traffic driver'}: "
                f"{tally.total():,} answers in {self.traffic_s:.0f}s "
                f"({tally.total() / self.traffic_s:.0f}/s; target {rate:.0f}/s on a shared machine)"
            )

    def _error_rate(self, version: str, rates: list[float]) -> str:
        outcome = self.watches[version].phase
        if version == "v3" and self.rollback_rate is not None and outcome == "Degraded":
            return percent(self.rollback_rate)
        return percent(max(rates)) if rates else "–"


def _ended(version: str) -> Callable[[Mapping[str, Any]], bool]:
    def check(status: Mapping[str, Any]) -> bool:
        last = (status.get("history") or [{}])[0]  # written when a rollout ends, newest first
        return last.get("version") == version and bool(last.get("outcome"))

    return check


def _outcome(version: str, watch: RolloutWatch, status: Mapping[str, Any]) -> str:
    if version == "v1":
        return "Ready"
    history: list[Mapping[str, Any]] = status.get("history") or []
    entry = next((h for h in history if h.get("version") == version), {})
    return str(entry.get("outcome") or watch.phase or "?")


def look_around(view: View, cluster: DemoCluster, keep: bool) -> None:
    env = cluster.env()
    lines = [
        f"export KUBECONFIG={env['KUBECONFIG']}",
        f"export PATH={BIN}:$PATH   # kubectl and the kubectl-modelfleet plugin",
        f"kubectl get md -n {NAMESPACE}",
        f"kubectl modelfleet status {NAME} -n {NAMESPACE}   (add -w to watch)",
        f"kubectl get deploy,svc,httproute -n {NAMESPACE}",
        f"Prometheus: {cluster.prometheus_url}   try:",
        f'  sum by (revision, code) (rate(modelfleet_requests_total{{deployment="{NAME}"}}[1m]))',
        f"operator log: {cluster.operator_log()}",
    ]
    view.say(
        "how to look around" + (":" if keep else " (next time, with `make demo DEMO_ARGS=--keep`):")
    )
    for line in lines:
        view.console.print(f"    {line}", markup=False, highlight=False)
    if keep:
        view.say(
            "everything keeps running; `make cluster-env` prints the env, `make cluster-down` stops it all"
        )


TIERS = {
    "kwok": "local control plane + kwok nodes + Prometheus, the operator as a process",
    "real": "a real kubelet node running our images, the operator as a Pod (kubectl apply -k), "
    "Traefik's Gateway, Prometheus",
}


def start_cluster(tier: str, view: View) -> DemoCluster | RealDemoCluster:
    if tier == "real":
        started = time.monotonic()
        real = RealDemoCluster.up()
        view.say(
            f"real tier started in {time.monotonic() - started:.0f}s ({real.timings_text()}) "
            f"in network namespace {real.netns}; operator "
            f"Pods Available; Gateway at {real.gateway}, Prometheus at {real.prometheus_url} "
            "(both inside the namespace)"
        )
        return real
    cluster = DemoCluster.up()
    view.say(
        f"control plane {'started' if cluster.started_here else 'already running, reused'}; "
        f"Prometheus at {cluster.prometheus_url}"
    )
    return cluster


@contextlib.contextmanager
def live_traffic(story: Story) -> Iterator[VariedRowsDriver | ClientTraffic]:
    """The story's traffic while the rollouts run: the driver (kwok) or the client (real)."""
    if isinstance(story.cluster, RealDemoCluster):
        with real_story.client(story, story.cluster) as client:
            yield client
        return
    driver = VariedRowsDriver(
        kube_snapshot(story.cluster.api_client(), NAMESPACE, NAME),
        rps=RPS,
        path=f"/v2/models/{NAME}/infer",
        payloads=row_payloads(rows=ROWS_PER_REQUEST),
    )
    story.view.say(
        f"traffic: {RPS:.0f} requests/s of {ROWS_PER_REQUEST} varied rows each, through the "
        "live HTTPRoute weights, every answer counted"
    )
    with driver.running():
        yield driver


def run(keep: bool, tier: str = "real") -> int:
    view = View()
    view.say(
        f"modelfleet demo: {TIERS[tier]}, then four rollouts and an undo"
        + (", then drift after promotion" if tier == "real" else "")
    )
    view.say("short steps for the demo: " + LIMITS.text())
    cluster = start_cluster(tier, view)
    story = Story(cluster, view)
    finished = False
    try:
        prepare(cluster, view)
        story.chapter_v1()
        with live_traffic(story) as traffic:
            story.driver = traffic
            traffic_started = time.monotonic()
            for version, chapter in (
                ("v2", story.chapter_v2),
                ("v3", story.chapter_v3),
                ("v4", lambda: model_chapters.chapter_silent_bug(story)),
                ("v5", lambda: model_chapters.chapter_undo(story)),
            ):
                began = time.monotonic()
                chapter()
                real_story.after_chapter(story, version, began)
            if isinstance(cluster, RealDemoCluster) and isinstance(traffic, ClientTraffic):
                monitor_chapter.chapter_monitoring(story, cluster, traffic)
            story.traffic_checks()
            story.traffic_s = time.monotonic() - traffic_started
        story.summary()
        if isinstance(cluster, RealDemoCluster):
            real_story.look_around(view, cluster, keep)
        else:
            look_around(view, cluster, keep)
        finished = True
    except (TimeoutError, RuntimeError) as error:
        story.failures.append(str(error).splitlines()[0])
        view.say(f"FAILED: {error}")
        view.say(f"operator log: {cluster.operator_log()}")
    finally:
        # the real tier lives in this process: `--keep` waited in look_around until Ctrl-C
        if not keep or not finished or isinstance(cluster, RealDemoCluster):
            tear_down(cluster, view)
    if story.failures:
        view.say("the story did NOT happen as told: " + "; ".join(story.failures))
        return 1
    view.say(
        "the story happened as told: v1 Ready, v2 promoted, v3 rolled back by itself, v4's silent "
        "bug caught by the paired gate, v5 promoted and undone"
        + (", then v2's drift named by the operator and sent to the webhook" if story.real else "")
    )
    return 0


def prepare(cluster: DemoCluster | RealDemoCluster, view: View) -> None:
    if isinstance(cluster, RealDemoCluster):
        # the CRD and the operator came with `kubectl apply -k` when the tier started
        cluster.prepare(NAMESPACE)
        return
    install_crd(cluster)
    if cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0:
        view.say(f"namespace {NAMESPACE} exists (an earlier demo): deleting it first")
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=90s")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.start_operator(NAMESPACE)
    view.say(
        f"operator running (standalone, namespace {NAMESPACE}), log in {cluster.operator_log()}"
    )


def tear_down(cluster: DemoCluster | RealDemoCluster, view: View) -> None:
    if isinstance(cluster, RealDemoCluster):
        view.say(
            f"stopping the real tier: its pods, node, control plane and network namespace "
            f"{cluster.netns} (operator log kept in {cluster.operator_log()})"
        )
        cluster.down()
        return
    cluster.stop_operator()
    if cluster.started_here:
        view.say("stopping the control plane, Prometheus and the server processes")
        cluster.down()
    else:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        view.say(f"left the control plane running as found; deleted namespace {NAMESPACE}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet_dev.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tier = parser.add_mutually_exclusive_group()
    tier.add_argument(
        "--kwok",
        dest="tier",
        action="store_const",
        const="kwok",
        help="the kwok tier: process-backed pods, a traffic driver that plays the proxy",
    )
    tier.add_argument(
        "--real",
        dest="tier",
        action="store_const",
        const="real",
        help="the real tier: a real node, our images, the operator as a Pod, Traefik's Gateway "
        "(default)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave everything running afterwards (on the real tier: until Ctrl-C)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI job cancelled, `kill`) stops the story like Ctrl-C: the tier is torn down
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args.keep, args.tier or "real")
    except KeyboardInterrupt:
        return 130
    except RuntimeError as error:  # the cluster did not start: its output is above
        print(f"[demo] FAILED: {error}", file=sys.stderr)
        return 1
