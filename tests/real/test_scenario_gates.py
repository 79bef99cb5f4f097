"""Issue #17's gates on the real tier, under steady traffic through Traefik's Gateway:

S11 the built-in smoke test: the operator Pod scores rows on the canary slot's Service, by its
    cluster IP, before the canary gets any traffic. A v2 whose model cannot score the smoke rows
    (it takes 16 features, the rows carry 3, so the canary answers every row 400) is rolled
    back before its first weight: the history says so with the canary's answer, no weight above
    0 ever shows in status, and the client got v1's answers only, none failed (test_s11_…)
S12 a manual confirmPromotion gate: the steps passed, the canary holds 100 % of the traffic while
    nobody approves but is not promoted (v1's slot stays active), `kubectl modelfleet approve`
    (the plugin, with the cluster's kubeconfig) lets it be promoted, the history names the
    approver, and no request failed (test_s12_…)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from modelfleet_dev.realnode.load import Load

from tests.real.conftest import RealStack
from tests.real.test_scenarios import (
    REQUEST,
    SETTLE_S,
    _apply,
    _condition,
    _start_v1,
    _status,
    _wait,
    model_deployment,
)
from tests.real.test_scenarios_ops import _healthy_at, _plugin

pytestmark = pytest.mark.slow

ROWS = [[0.1, 0.2, 0.3]] * 8  # the example v2 model takes 16 features
RATE = 20  # requests a second through the Gateway while v2 is tried


def _v1_under_load(stack: RealStack, namespace: str, gateway: str) -> tuple[str, str, Load]:
    """`fraud` v1 Ready behind the Gateway, and a client sending it RATE requests a second."""
    name, host = _start_v1(stack, namespace, gateway)
    url = f"http://{gateway}/v2/models/{name}/infer"
    return name, host, Load(url, REQUEST, rate=RATE, seconds=300, headers={"host": host}).start()


def test_s11_a_canary_failing_the_smoke_test_is_rolled_back_before_any_user_request(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host, load = _v1_under_load(real_stack, real_namespace, gateway)
    weights: set[int] = set()
    try:
        time.sleep(2)
        v2 = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, smoke={"requests": ROWS}
        )
        _apply(real_stack, real_namespace, v2)

        def rolled_back() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            canary = status.get("canary")
            if canary is not None:
                weights.add(int(canary.get("weight", 0)))
            history = status.get("history") or [{}]
            rolled = history[0].get("outcome") == "RolledBack" and canary is None
            return status if rolled else None

        status = _wait("v2 rolled back by its smoke test", rolled_back, 240, every=0.25)
        time.sleep(3)  # traffic goes on after the rollback
    finally:
        summary = load.stop()
    entry = status["history"][0]
    print(f"history: {entry}; weights seen {sorted(weights)}; answers {summary.by_version}")
    assert entry["version"] == "v2"
    assert entry["message"].startswith("the smoke test failed: "), entry["message"]
    assert "HTTP 400" in entry["message"], entry["message"]
    assert entry["message"].endswith(" before any traffic"), entry["message"]
    assert weights <= {0}, f"the canary got a weight: {sorted(weights)}"
    assert status["activeVersion"] == "v1"
    assert summary.requests >= RATE * 10
    assert summary.failed == 0, (summary.by_code, summary.failures())
    assert summary.by_version == {"v1": summary.requests}, summary.by_version


def test_s12_a_manual_confirm_promotion_holds_the_canary_until_kubectl_modelfleet_approve(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host, load = _v1_under_load(real_stack, real_namespace, gateway)
    try:
        gate = {"name": "ops", "type": "confirmPromotion", "manual": True}
        v2 = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, steps=[50, 100], webhooks=[gate]
        )
        _apply(real_stack, real_namespace, v2)

        def awaiting() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            waiting = _condition(status, "Progressing").get("reason") == "AwaitingApproval"
            return status if waiting else None

        waiting = _wait("v2 waiting for approval", awaiting, 180)
        held_from = time.monotonic()
        time.sleep(10)  # the analysis goes on; nothing moves without the approval
        held = _status(real_stack, real_namespace, name)
        held_until = time.monotonic()
        done = _plugin(real_stack, real_namespace, "approve", name)
        assert done.returncode == 0, done.stderr
        status = _wait("v2 promoted", _healthy_at(real_stack, real_namespace, name, "v2"), 120)
        time.sleep(3)
    finally:
        summary = load.stop()
    message = _condition(waiting, "Progressing")["message"]
    print(f"waiting: {message}; approve: {done.stdout.strip()}; answers {summary.by_version}")
    assert waiting["canary"]["weight"] == 100, waiting["canary"]
    assert "confirmPromotion gate ops (kubectl modelfleet approve)" in message, message
    assert held["canary"]["weight"] == 100, held
    assert held["activeVersion"] == "v1", held  # not promoted without the approval
    during = load.summary(held_from + SETTLE_S, held_until)
    assert during.by_version == {"v2": during.requests}, during.by_version
    promoted, approved = status["history"][:2]
    assert promoted["outcome"] == "Promoted"
    assert approved["outcome"] == "Approved"
    assert approved["message"].startswith("confirmPromotion gate ops approved at 100%"), approved
    assert "(kubectl modelfleet approve by " in approved["message"], approved
    assert summary.failed == 0, (summary.by_code, summary.failures())
