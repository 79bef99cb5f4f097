"""The real-node issue's operations scenarios on the real tier, through Traefik, counted by a
client (realnode.load):

S6  `kubectl modelfleet undo` after a promotion: 100 % back on v1, 0 failed requests (test_s6_…)
S7  the acting operator Pod deleted mid-rollout: the next one resumes at the same step and weight
    (same stepStartedAt), the proxy keeps that weight meanwhile, the next step comes when the
    first one's time is up, and no request fails (test_s7_…)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.realnode import clients, install
from modelfleet_dev.realnode.load import Load

from tests.real.conftest import RealStack
from tests.real.test_scenarios import (
    REQUEST,
    SETTLE_S,
    SHARE_TOLERANCE,
    _apply,
    _get,
    _pods,
    _ready,
    _start_v1,
    _status,
    _wait,
    model_deployment,
)

pytestmark = pytest.mark.slow


def _healthy_at(stack: RealStack, namespace: str, name: str, version: str) -> Any:
    def check() -> dict[str, Any] | None:
        status = _status(stack, namespace, name)
        healthy = status.get("activeVersion") == version and not status.get("canary")
        return status if healthy and status.get("phase") == "Healthy" else None

    return check


def _plugin(stack: RealStack, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "KUBECONFIG": str(stack.real.kubeconfig),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(bin_dir / "kubectl"), "modelfleet", *args, "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- S6 ------------------------------------------------------------------------------------
def test_s6_undo_after_a_promotion_puts_all_traffic_back_without_a_failed_request(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = _start_v1(real_stack, real_namespace, gateway, keepPrevious="10m")
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=240, headers={"host": host}).start()
    try:
        v2 = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, keepPrevious="10m", steps=[50, 100]
        )
        _apply(real_stack, real_namespace, v2)
        promoted = _wait("v2 promoted", _healthy_at(real_stack, real_namespace, name, "v2"), 180)
        assert promoted["previous"]["version"] == "v1"
        time.sleep(SETTLE_S + 3)
        undone_at = time.monotonic()
        done = _plugin(real_stack, real_namespace, "undo", name)
        assert done.returncode == 0, done.stderr
        status = _wait("v1 active again", _healthy_at(real_stack, real_namespace, name, "v1"), 30)
        time.sleep(SETTLE_S + 5)
    finally:
        summary = load.stop()
    print(f"undo: {done.stdout.strip()}; answers {summary.by_code}, versions {summary.by_version}")
    assert status["history"][0]["outcome"] == "Undone"
    before = load.summary(undone_at - 4, undone_at)
    assert before.by_version == {"v2": before.requests}, before.by_version
    after = load.summary(undone_at + SETTLE_S + 1)
    assert after.requests >= 100
    assert after.by_version == {"v1": after.requests}, after.by_version  # 100 % back
    assert summary.failed == 0, (summary.by_code, summary.failures())


# --- S7 ------------------------------------------------------------------------------------
def _route_weights(stack: RealStack, namespace: str, name: str) -> dict[str, int]:
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"
    rules = _get(stack, path).get("spec", {}).get("rules", [])
    return {ref["name"]: ref.get("weight", 1) for rule in rules for ref in rule["backendRefs"]}


def _operator_pods(stack: RealStack) -> list[dict[str, Any]]:
    return _pods(stack, install.OPERATOR_NAMESPACE, "app.kubernetes.io/name=modelfleet-operator")


def _acting(stack: RealStack) -> list[str]:
    """The operator pods whose /readyz body says `acting`: the standby replica is Ready too
    (operator/peering.py), so Ready alone does not tell which one acts."""
    acting = []
    for pod in _operator_pods(stack):
        if not _ready(pod) or "deletionTimestamp" in pod["metadata"]:
            continue
        container = pod["spec"]["containers"][0]
        health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
        target = f"http://{pod['status']['podIP']}:{health}/readyz"
        curl = ["curl", "-s", "--max-time", "3", target]
        body = clients.run_inside(stack.real.netns, curl).stdout
        if body and json.loads(body).get("state") == "acting":
            acting.append(pod["metadata"]["name"])
    return acting


def test_s7_the_operator_pod_deleted_mid_rollout_resumes_at_the_same_step_and_weight(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = _start_v1(real_stack, real_namespace, gateway)
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=360, headers={"host": host}).start()
    try:
        v2 = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, steps=[25, 100], stepDuration="60s"
        )
        _apply(real_stack, real_namespace, v2)

        def at_25() -> dict[str, Any] | None:
            canary = _status(real_stack, real_namespace, name).get("canary") or {}
            return canary if canary.get("weight") == 25 else None

        before = _wait("the canary at 25 %", at_25, 180, every=0.25)
        weight_at = time.monotonic()
        time.sleep(3)

        def one_acting() -> list[str] | None:
            found = _acting(real_stack)
            return found if len(found) == 1 else None

        (acting,) = _wait("exactly one operator replica acting", one_acting, 30)
        real_stack.real.control_plane.kubectl(
            "-n", install.OPERATOR_NAMESPACE, "delete", "pod", acting, "--wait=false"
        )
        deleted_at, deleted_wall = time.monotonic(), dt.datetime.now(dt.UTC)

        def next_leader() -> str | None:
            return next((p for p in _acting(real_stack) if p != acting), None)

        routes: list[dict[str, int]] = []

        def led_by_another() -> str | None:
            routes.append(_route_weights(real_stack, real_namespace, name))
            return next_leader()

        leader = _wait("another operator replica acting", led_by_another, 150, every=1)
        took_over_at = time.monotonic()

        def measured_by_the_new_leader() -> dict[str, Any] | None:
            canary = _status(real_stack, real_namespace, name).get("canary") or {}
            stamp = (canary.get("analysis") or {}).get("measuredAt")
            return canary if stamp and dt.datetime.fromisoformat(stamp) > deleted_wall else None

        after = _wait("a measurement after the deletion", measured_by_the_new_leader, 60)

        def next_step() -> dict[str, Any] | None:
            canary = _status(real_stack, real_namespace, name).get("canary") or {}
            return canary if canary.get("weight") == 100 else None

        # the step keeps its start: the new leader moves on 60 s after the old one began it
        moved_on = _wait("the next step (100 %)", next_step, 90)
        moved_at = time.monotonic()
        time.sleep(3)
    finally:
        summary = load.stop()
    print(
        f"operator {acting} deleted; {leader} acting after {took_over_at - deleted_at:.1f} s; "
        f"answers {summary.by_code}, versions {summary.by_version}"
    )
    # the replacement resumed the same step at the same weight: not restarted, not reset
    for key in ("weight", "stepIndex", "stepStartedAt", "revision", "slot"):
        assert after.get(key) == before.get(key), (key, before, after)
    # the proxy kept the weight while no operator acted
    canary_service = f"{name}-{before['slot']}"
    assert routes
    assert all(route.get(canary_service) == 25 for route in routes), routes
    window = load.summary(weight_at + SETTLE_S, took_over_at)
    assert window.requests >= 100
    assert abs(window.share("v2") - 25) <= SHARE_TOLERANCE, window.by_version
    assert moved_on["stepStartedAt"] > before["stepStartedAt"]
    assert moved_at - weight_at >= 50, "the step of 60 s was cut short"
    assert summary.failed == 0, (summary.by_code, summary.failures())
