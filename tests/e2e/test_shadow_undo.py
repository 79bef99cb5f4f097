"""Shadow step and instant undo end to end: the operator, a real Prometheus, process-backed pods.

The scenarios route through a Gateway API HTTPRoute or an NGINX Ingress (the replica-ratio split
cannot mirror) and send steady load with the traffic driver, which copies the mirrored share of
requests to the canary's pods the way a proxy would and counts those answers apart from the user's.

- A canary answering 10 % of requests with 500 is caught in its shadow step: rolled back before
  any live weight, the users saw no failure, and the mirrored copies did reach the canary.
- On a Gateway whose class does not list `HTTPRouteRequestMirror` (as Traefik's does not), the
  shadow step is refused before anything is written: no canary, no mirror filter, the condition and
  one Event name the class and the feature; dropping `shadow` from the spec lets v2 roll out.
- After a promotion, `kubectl modelfleet undo` puts all traffic back on the warm previous slot in
  one router write, with no failed request; the time from the command to that write is printed
  (`pytest -s`; bench/rollout/undo.py measures it over several runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest
from modelfleet_dev.harness.driver import TrafficDriver
from modelfleet_dev.harness.gateway import BASE_FEATURES, MIRRORING, install_gateway
from modelfleet_dev.harness.rollout import (
    StatusRecorder,
    apply,
    apply_healthy,
    healthy_at,
    kubectl_modelfleet,
    model_deployment,
    read_status,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster

NAME = "fraud"
GATEWAY = "e2e"
RPS = 60.0
ROUTERS: dict[str, dict[str, Any]] = {
    "gateway": {"gateway": {"parentRefs": [{"name": GATEWAY}]}},
    "ingress": {"ingress": {"host": "fraud.e2e.example"}},
}


def manifest(cluster: LocalCluster, router: str = "gateway", **changes: Any) -> dict[str, Any]:
    """The harness manifest on a router, with optional `shadow` and `keep_previous`."""
    shadow = changes.pop("shadow", None)
    keep_previous = changes.pop("keep_previous", "0")
    body = model_deployment(
        NAME, prometheus_url=cluster.prometheus_url, traffic=ROUTERS[router], **changes
    )
    body["spec"]["rollout"]["keepPrevious"] = keep_previous
    if shadow is not None:
        body["spec"]["rollout"]["shadow"] = shadow
    return body


@dataclass
class Live:
    cluster: LocalCluster
    namespace: str
    router: str
    recorder: StatusRecorder
    driver: TrafficDriver

    def apply(self, **changes: Any) -> None:
        apply(self.cluster, self.namespace, manifest(self.cluster, self.router, **changes))

    def wait(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        return dict(wait_for(self.cluster, self.namespace, NAME, predicate, timeout, what))


def _live(
    cluster: LocalCluster,
    namespace: str,
    router: str = "gateway",
    features: Sequence[str] = MIRRORING,
    **first: Any,
) -> Iterator[Live]:
    if router == "gateway":  # the operator reads what the parent Gateway's class supports
        class_name = "modelfleet-e2e-" + ("mirroring" if features == MIRRORING else "no-mirror")
        install_gateway(cluster.api_client(), namespace, GATEWAY, class_name, features)
    apply_healthy(cluster, namespace, manifest(cluster, router, **first))
    driver = traffic_driver(cluster, namespace, NAME, RPS)
    with StatusRecorder(cluster, namespace, NAME) as recorder, driver.running():
        yield Live(cluster, namespace, router, recorder, driver)


SHADOW = {"duration": "30s", "percent": 100}


@pytest.fixture(params=sorted(ROUTERS))
def shadowed(
    cluster: LocalCluster, namespace: str, operator: Any, request: pytest.FixtureRequest
) -> Iterator[Live]:
    """A Healthy v1 on each router whose rollouts begin with a 30 s shadow step mirroring all."""
    yield from _live(cluster, namespace, request.param, shadow=SHADOW)


@pytest.fixture
def refused(cluster: LocalCluster, namespace: str, operator: Any) -> Iterator[Live]:
    """A Healthy v1 on an HTTPRoute whose Gateway's class, like Traefik's, lists no mirror."""
    yield from _live(cluster, namespace, features=BASE_FEATURES, shadow=SHADOW)


@pytest.fixture
def kept(cluster: LocalCluster, namespace: str, operator: Any) -> Iterator[Live]:
    """A Healthy v1 on an HTTPRoute whose previous slot stays warm 10 minutes after a promotion."""
    yield from _live(cluster, namespace, keep_previous="10m")


def test_a_failing_canary_is_rolled_back_in_shadow_before_any_live_weight(
    shadowed: Live,
) -> None:
    v1_revision = read_status(shadowed.cluster, shadowed.namespace, NAME)["activeRevision"]
    shadowed.apply(
        model="model-v2.txt",
        version="v2",
        shadow=SHADOW,
        env={"MODELFLEET_FAULT_ERROR_RATE": "0.1"},
    )
    status = shadowed.wait(lambda s: s.get("phase") == "Degraded", 150, "rolled back in shadow")

    entry = status["history"][0]
    assert entry["outcome"] == "RolledBack"
    assert entry["message"].startswith("error rate "), entry["message"]
    assert entry["message"].endswith(" in shadow")
    assert status["activeRevision"] == v1_revision
    assert set(shadowed.recorder.weights()) <= {0}  # never a live weight
    time.sleep(2)  # the driver re-reads the router objects every 0.5 s
    tally = shadowed.driver.snapshot_tally()
    canary = entry["revision"]
    assert tally.failed() == 0, tally.counts  # no user saw the canary's errors
    assert tally.total(revision=canary) == 0  # nor any answer of the canary at all
    assert tally.mirrored_total(revision=canary) > 50, tally.mirrored  # the copies reached it
    assert tally.mirrored_failed(revision=canary) > 0  # and it failed some of them
    canary_slot = "green" if status["activeSlot"] == "blue" else "blue"
    assert {canary_slot: 100.0} in [shares for _, shares in tally.mirror_shares]
    assert tally.mirror_shares[-1][1] == {}  # the mirror is gone with the canary
    assert tally.shares[-1][1] == {status["activeSlot"]: 100.0}


def _progressing(status: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
    return found[0] if found else {}


def test_a_shadow_the_gateway_class_cannot_mirror_is_refused_and_nothing_is_written(
    refused: Live,
) -> None:
    v1_revision = read_status(refused.cluster, refused.namespace, NAME)["activeRevision"]
    refused.apply(model="model-v2.txt", version="v2", shadow=SHADOW, steps=(50, 100))
    status = refused.wait(
        lambda s: _progressing(s).get("reason") == "ShadowRefused", 60, "shadow refused"
    )
    refusal = (
        "GatewayClass modelfleet-e2e-no-mirror does not support HTTPRouteRequestMirror "
        "(status.supportedFeatures): shadow refused"
    )
    assert _progressing(status)["message"] == refusal
    assert _progressing(status)["status"] == "False"
    assert status["message"] == refusal
    assert (status["phase"], status["activeRevision"]) == ("Healthy", v1_revision)
    assert status.get("canary") is None
    time.sleep(6)  # a few reconciles later: still nothing written, one Event
    still = read_status(refused.cluster, refused.namespace, NAME)
    assert (still.get("canary"), still["message"]) == (None, refusal)
    from kubernetes import client

    custom = client.CustomObjectsApi(refused.cluster.api_client())
    route = cast(
        "dict[str, Any]",
        custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", refused.namespace, "httproutes", NAME
        ),
    )
    assert "filters" not in route["spec"]["rules"][0]  # no mirror was ever written
    events = client.CoreV1Api(refused.cluster.api_client()).list_namespaced_event(
        refused.namespace, field_selector="reason=ShadowRefused"
    )
    assert [event.message for event in events.items] == [refusal]
    tally = refused.driver.snapshot_tally()
    assert tally.failed() == 0, tally.counts
    assert all(not shares for _, shares in tally.mirror_shares)

    # the user drops the shadow step: the rollout begins at its first live step, never mirrored
    refused.apply(model="model-v2.txt", version="v2", steps=(50, 100))
    promoted = refused.wait(healthy_at("v2"), 150, "v2 promoted without a shadow step")
    assert promoted["history"][0]["outcome"] == "Promoted"
    tally = refused.driver.snapshot_tally()
    assert all(not shares for _, shares in tally.mirror_shares)
    assert tally.failed() == 0, tally.counts


class RouteWatch:
    """Polls the HTTPRoute every 20 ms and keeps when its backendRefs first changed."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(cluster.api_client())
        self._namespace = namespace
        self._stop = threading.Event()
        self.initial = self.backends()
        self.changed_at: float | None = None
        self.changed_to: list[tuple[str, int]] | None = None
        self._thread = threading.Thread(target=self._loop, name="route-watch", daemon=True)

    def backends(self) -> list[tuple[str, int]]:
        route = cast(
            "dict[str, Any]",
            self._api.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self._namespace, "httproutes", NAME
            ),
        )
        refs = route["spec"]["rules"][0]["backendRefs"]
        return [(ref["name"], ref.get("weight", 1)) for ref in refs]

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.backends()
            if now != self.initial:
                self.changed_at, self.changed_to = time.time(), now
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_undo_inside_the_window_puts_all_traffic_back_in_one_write(kept: Live) -> None:
    v1_revision = read_status(kept.cluster, kept.namespace, NAME)["activeRevision"]
    kept.apply(model="model-v2.txt", version="v2", steps=(50, 100), keep_previous="10m")
    promoted = kept.wait(healthy_at("v2"), 150, "v2 promoted")
    assert promoted["previous"]["revision"] == v1_revision

    with RouteWatch(kept.cluster, kept.namespace) as watch:
        assert watch.initial == [(f"{NAME}-{promoted['activeSlot']}", 100)]
        started = time.time()
        done = kubectl_modelfleet(kept.cluster.kubeconfig, kept.namespace, NAME, "undo")
        assert done.returncode == 0, done.stderr
        status = kept.wait(healthy_at("v1"), 30, "v1 active again")
        deadline = time.monotonic() + 10
        while watch.changed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "v1 is still warm in slot " in done.stdout, done.stdout
    assert watch.changed_at is not None
    print(f"\nundo: command → HTTPRoute write {watch.changed_at - started:.2f} s")

    previous_slot = promoted["previous"]["slot"]
    assert watch.changed_to == [(f"{NAME}-{previous_slot}", 100)]  # one write: all traffic back
    assert status["activeRevision"] == v1_revision
    assert status["history"][0]["outcome"] == "Undone"
    assert status["history"][0]["version"] == "v2"
    time.sleep(2)  # the driver re-reads the router objects every 0.5 s
    tally = kept.driver.snapshot_tally()
    assert tally.failed() == 0, tally.counts
    assert tally.shares[-1][1] == {previous_slot: 100.0}
    assert tally.total(revision=v1_revision) > 0
