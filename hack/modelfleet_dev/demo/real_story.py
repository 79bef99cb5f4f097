"""What the story adds on the real tier: the client through Traefik and what it measured.

- `client(story, cluster)`: a loopback forwarder to Traefik's listener and the client
  (demo/real.py `ClientTraffic`) sending RATE requests/s of varied rows through it.
- `after_chapter(story, version, began)`: what the client counted during the chapter (answers by
  model_version, failed requests by code); after v2, the share of v2 answers it measured at each
  step against the step's weight; after the undo, that every answer is v2's again.
- `look_around(view, cluster, keep)`: how to reach the tier; with `--keep`, loopback forwarders
  to the Gateway and Prometheus stay open until Ctrl-C, then the tier stops.
On the kwok tier `after_chapter` does nothing: the traffic driver already plays the proxy exactly.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelfleet_dev.harness.model_aware import row_payloads

from .cluster import BIN
from .real import ClientTraffic, RealDemoCluster, describe_answers
from .spec import NAME, NAMESPACE, ROWS_PER_REQUEST
from .view import View

if TYPE_CHECKING:
    from .story import Story

RATE = 50.0  # requests/s through Traefik (the kwok driver's 100/s does not fit beside a real node)
SETTLE_S = 2.0  # after a weight shows in status, before the client's window opens
SHARE_TOLERANCE = 3.0  # points: the bound for a step's measured share
FAULTY = "v3"  # the version whose server injects 500s (its body says so)
# the versions a chapter deploys: the active one before it and its canary
EXPECTED = {"v2": {"v1", "v2"}, "v3": {"v2", "v3"}, "v4": {"v2", "v4"}, "v5": {"v2", "v5"}}


@contextlib.contextmanager
def client(story: Story, cluster: RealDemoCluster) -> Iterator[ClientTraffic]:
    with cluster.forwarded(cluster.gateway) as local:
        traffic = ClientTraffic(
            f"http://{local}/v2/models/{NAME}/infer",
            row_payloads(rows=ROWS_PER_REQUEST),
            rate=RATE,
            revisions=story.revisions,
            faulty=FAULTY,
        )
        story.view.say(
            f"traffic: a client sends {RATE:.0f} requests/s of {ROWS_PER_REQUEST} varied rows "
            f"each to Traefik's listener {cluster.gateway} (through a loopback forwarder into "
            "the namespace) and counts every answer by the model_version in its body"
        )
        with traffic.running():
            yield traffic


def after_chapter(story: Story, version: str, began: float) -> None:
    traffic = story.driver
    if not isinstance(traffic, ClientTraffic):
        return
    if version == "v2":
        step_shares(story, traffic)
    if version == "v5" and story.undo_s is not None:
        time.sleep(SETTLE_S + 1)  # Traefik reloads the route within about 2 s
        since = time.monotonic()
        time.sleep(3)
        after = traffic.summary(since)
        story.check(
            after.requests > 0 and after.by_version == {"v2": after.requests},
            f"client after the undo: {describe_answers(after)} (all v2 again)",
        )
    during = traffic.summary(began)
    story.view.say(f"client during {version}'s chapter: {describe_answers(during)}")
    # A canary's slot may still hold the previous rollout's pods (the old slot kept warm, a
    # rolled-back canary): the weight must wait until they are gone, or users get the old model.
    # Counted from SETTLE_S in: the previous chapter's last route write (a rollback's weight 0)
    # takes up to ~2 s to reach Traefik, and its answers then are that chapter's.
    settled = traffic.summary(began + SETTLE_S)
    others = {v: n for v, n in settled.by_version.items() if v not in EXPECTED[version]}
    story.check(
        not others,
        f"no answers from any other version during {version}'s chapter "
        f"(from {SETTLE_S:g} s in, once the previous route write reached Traefik)"
        + (f" (got {', '.join(f'{n:,} from {v}' for v, n in others.items())})" if others else ""),
    )


def step_shares(story: Story, traffic: ClientTraffic) -> None:
    """The share of v2 answers the client counted in each step, against the step's weight."""
    watch = story.watches["v2"]
    parts, worst = [], 0.0
    for step in watch.steps:
        if step.ended is None:
            continue
        since = story.view.started + step.started + SETTLE_S
        until = story.view.started + step.ended - 0.5
        window = traffic.summary(since, until)
        share = window.share("v2")
        worst = max(worst, abs(share - step.weight))
        parts.append(f"{step.weight} % → {share:.1f} % of {window.requests:,}")
    story.check(
        bool(parts) and worst <= SHARE_TOLERANCE,
        f"client-measured v2 share per step (weight → share of answers): {' · '.join(parts)}; "
        f"worst {worst:.1f} points (≤ {SHARE_TOLERANCE:.0f})",
    )


def look_around(view: View, cluster: RealDemoCluster, keep: bool) -> None:
    env = cluster.env()
    view.say("how to look around" + (":" if keep else " (next time, with DEMO_ARGS=--keep):"))
    lines = [
        f"export KUBECONFIG={env['KUBECONFIG']}",
        f"export PATH={BIN}:$PATH   # kubectl and the kubectl-modelfleet plugin",
        f"kubectl get md,deploy,svc,httproute,pods -n {NAMESPACE} -o wide",
        f"kubectl modelfleet status {NAME} -n {NAMESPACE}   (add -w to watch)",
        "kubectl -n modelfleet-system get pods   # the operator, 2 replicas (one acting)",
        f"the tier's addresses live in network namespace {cluster.netns}",
    ]
    for line in lines:
        view.console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    if not keep:
        return
    with (
        cluster.forwarded(cluster.gateway) as gateway,
        cluster.forwarded(cluster.prometheus_url.removeprefix("http://")) as prometheus_address,
    ):
        for line in (
            f"curl -s http://{gateway}/v2/models/{NAME}/infer -d @examples/models/request.json",
            f"Prometheus: http://{prometheus_address}",
        ):
            view.console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
        view.say("everything keeps running until Ctrl-C; then the tier stops and leaves nothing")
        _wait_for_interrupt()


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
