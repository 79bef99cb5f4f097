"""Webhook and approval gates and the built-in smoke test end to end (issue #17): a real operator
process, the local control plane, a real Prometheus and process-backed server pods under load; the
webhooks are a real HTTP receiver on a loopback port of the test's own.

- A confirmPromotion gate that answers 403 holds the canary at 100 % for a minute, asked again at
  every look while the analysis keeps measuring it; the canary answers 5 % of its requests with
  500, which the first, lenient maxErrorRate (20 %) let through. Tightening the limit to 1 % (an
  edit that keeps the revision) turns the next look into a Fail: rolled back while the gate still
  holds, which is what an approval gate must never prevent (flagger#1801).
- A preRollout webhook that answers 500 rolls the canary back before any weight: not one user
  request reaches it.
- A smoke test whose rows the canary cannot score (the model takes 16 features, the rows carry 3:
  a contract the new model broke) rolls it back the same way, before any user request.
- A manual confirmStep gate waits at 50 % (the Progressing condition says AwaitingApproval and
  names it) until `kubectl modelfleet approve`; the approval is in the status history, and the
  rollout goes on to its promotion. The same rollout passes a preRollout webhook, which got the
  rollout's identity, and the smoke test on the example reference rows. Its notification receivers
  (CloudEvents and Slack) are told once that it waits, with the approve command and the figures,
  and then who approved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from modelfleet_dev.harness.driver import TrafficDriver
from modelfleet_dev.harness.model_aware import POD_ADDRESS_ANNOTATION, REFERENCE
from modelfleet_dev.harness.rollout import (
    Receiver,
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
RPS = 40.0
HELD_S = 60.0
APPROVAL_EVENTS = ["AwaitingApproval", "Approved"]


@dataclass
class Live:
    cluster: LocalCluster
    namespace: str
    receiver: Receiver
    recorder: StatusRecorder
    driver: TrafficDriver

    def apply(self, rollout: dict[str, Any], **changes: Any) -> None:
        apply(self.cluster, self.namespace, _manifest(self.cluster, rollout, **changes))

    def wait(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        return dict(wait_for(self.cluster, self.namespace, NAME, predicate, timeout, what))


def _manifest(cluster: LocalCluster, rollout: dict[str, Any], **changes: Any) -> dict[str, Any]:
    analysis = changes.pop("analysis", None)
    body = model_deployment(
        NAME, prometheus_url=cluster.prometheus_url, steps=(50, 100), analysis=analysis, **changes
    )
    body["spec"]["rollout"].update(rollout)
    return body


@pytest.fixture
def live(cluster: LocalCluster, namespace: str, start_operator: Any) -> Iterator[Live]:
    """A Healthy v1 under steady load, the operator reaching pods at their local address."""
    start_operator(namespace, env=dict(POD_ADDRESS_ANNOTATION))
    with Receiver(refusal=b"not approved: change freeze") as receiver:
        apply_healthy(cluster, namespace, _manifest(cluster, {}))
        driver = traffic_driver(cluster, namespace, NAME, RPS)
        with StatusRecorder(cluster, namespace, NAME) as recorder, driver.running():
            yield Live(cluster, namespace, receiver, recorder, driver)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def _no_user_request_reached(live: Live, status: dict[str, Any]) -> None:
    canary = status["history"][0]["revision"]
    assert set(live.recorder.weights()) <= {0}  # never a live weight
    time.sleep(2)  # the driver re-reads the Service's endpoints every 0.5 s
    tally = live.driver.snapshot_tally()
    assert tally.total(revision=canary) == 0, tally.counts  # not one user request reached it
    assert tally.failed() == 0, tally.counts
    assert tally.total() > 100  # while the users were served
    assert status["activeVersion"] == "v1"


def test_a_held_confirm_promotion_gate_does_not_stop_a_5xx_canary_from_being_rolled_back(
    live: Live,
) -> None:
    live.receiver.answer = lambda path: 403
    gate = {"name": "release", "type": "confirmPromotion", "url": live.receiver.url("release")}
    faulty = {"MODELFLEET_FAULT_ERROR_RATE": "0.05"}
    lenient = {"maxErrorRate": 0.2}
    live.apply(
        {"webhooks": [gate]}, model="model-v2.txt", version="v2", env=faulty, analysis=lenient
    )
    held = live.wait(
        lambda s: ((s.get("canary") or {}).get("gates") or {}).get("askedAt") is not None,
        120,
        "the confirmPromotion gate asked",
    )
    assert held["canary"]["weight"] == 100
    progressing = _condition(held, "Progressing")
    assert progressing["reason"] == "AwaitingApproval"
    time.sleep(HELD_S)
    status = read_status(live.cluster, live.namespace, NAME)
    assert status["canary"]["gates"]["stage"] == "confirmPromotion"  # still held after a minute
    assert status["canary"]["weight"] == 100
    assert "gate release (answered HTTP 403: not approved: change freeze)" in status["message"]
    asked = live.receiver.times("release")
    assert len(asked) >= HELD_S / 2 * 0.7  # asked again at every look (interval 2 s)
    assert status["canary"]["analysis"]["phase"] == "Pass"  # measured all along, 5 % < 20 %
    assert status["canary"]["analysis"]["measuredAt"] > held["canary"]["analysis"]["measuredAt"]

    live.apply({"webhooks": [gate]}, model="model-v2.txt", version="v2", env=faulty)  # limit 1 %
    rolled_back = live.wait(lambda s: s.get("phase") == "Degraded", 60, "rolled back while held")
    entry = rolled_back["history"][0]
    assert entry["outcome"] == "RolledBack"
    assert entry["message"].startswith("error rate "), entry["message"]
    assert entry["message"].endswith(" at 100%")
    assert rolled_back["activeVersion"] == "v1"
    assert all(h["outcome"] != "Approved" for h in rolled_back["history"])  # never approved


def test_a_failing_pre_rollout_webhook_rolls_back_before_any_user_request(live: Live) -> None:
    live.receiver.answer = lambda path: 500
    gate = {"name": "load-check", "type": "preRollout", "url": live.receiver.url("load-check")}
    live.apply({"webhooks": [gate]}, model="model-v2.txt", version="v2")
    status = live.wait(lambda s: s.get("phase") == "Degraded", 120, "rolled back")
    entry = status["history"][0]
    assert entry["outcome"] == "RolledBack"
    assert entry["message"] == (
        "preRollout gate load-check failed: HTTP 500: not approved: change freeze "
        "before any traffic"
    )
    assert _condition(status, "Degraded")["status"] == "True"
    (body,) = live.receiver.bodies("load-check")
    assert (body["gate"], body["type"], body["version"], body["activeVersion"]) == (
        "load-check",
        "preRollout",
        "v2",
        "v1",
    )
    assert body["weight"] == 0
    _no_user_request_reached(live, status)


def test_a_failing_smoke_test_rolls_back_before_any_user_request(live: Live) -> None:
    rows = [[0.1, 0.2, 0.3]] * 8  # the new model takes 16 features
    live.apply({"smoke": {"requests": rows}}, model="model-v2.txt", version="v2")
    status = live.wait(lambda s: s.get("phase") == "Degraded", 120, "rolled back")
    entry = status["history"][0]
    assert entry["outcome"] == "RolledBack"
    assert entry["message"].startswith("the smoke test failed: "), entry["message"]
    assert "HTTP 400" in entry["message"]
    assert entry["message"].endswith(" before any traffic")
    _no_user_request_reached(live, status)


def test_a_manual_confirm_step_waits_for_kubectl_modelfleet_approve(live: Live) -> None:
    rollout = {
        "webhooks": [
            {"name": "load-check", "type": "preRollout", "url": live.receiver.url("load-check")},
            {"name": "ops", "type": "confirmStep", "manual": True},
        ],
        "smoke": {},
        "notify": [  # the approver is told: the wait (once) and the approval
            {"type": kind, "url": live.receiver.url(kind), "events": APPROVAL_EVENTS}
            for kind in ("cloudevents", "slack")
        ],
    }
    analysis = {"replay": {"referenceUri": REFERENCE.resolve().as_uri()}}
    live.apply(rollout, model="model-v2.txt", version="v2", analysis=analysis)
    waiting = live.wait(
        lambda s: "(kubectl modelfleet approve)" in s.get("message", ""), 120, "waiting at 50%"
    )
    assert waiting["canary"]["weight"] == 50
    progressing = _condition(waiting, "Progressing")
    assert progressing["reason"] == "AwaitingApproval"
    assert progressing["message"] == (
        "canary v2 waiting for approval at 50%: confirmStep gate ops (kubectl modelfleet approve)"
    )
    time.sleep(8)  # the analysis goes on; nothing moves without the approval
    assert read_status(live.cluster, live.namespace, NAME)["canary"]["weight"] == 50
    (told,) = live.receiver.bodies("cloudevents")  # once, however many looks it waited
    assert told["type"] == "io.modelfleet.rollout.awaitingapproval"
    data = told["data"]
    assert (data["stage"], data["gates"], data["weight"], data["step"]) == (
        "confirmStep",
        ["ops"],
        50,
        1,
    )
    assert data["approveCommand"] == f"kubectl modelfleet approve {NAME} -n {live.namespace}"
    assert data["message"] == progressing["message"]
    assert data["analysis"]["phase"] == "Pass"  # the figures of the step that passed
    assert data["analysis"]["requests"] > 0

    done = kubectl_modelfleet(live.cluster.kubeconfig, live.namespace, NAME, "approve")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("approve acknowledged"), done.stdout
    status = live.wait(healthy_at("v2"), 120, "v2 promoted")
    promoted, approved = status["history"][:2]
    assert promoted["outcome"] == "Promoted"
    assert approved["outcome"] == "Approved"
    assert approved["version"] == "v2"
    # who: the user the plugin's credentials authenticate as (a SelfSubjectReview)
    assert approved["message"].startswith(
        "confirmStep gate ops approved at 50% (kubectl modelfleet approve by "
    ), approved["message"]
    assert 100 in live.recorder.weights()
    waited, approval = live.receiver.bodies("cloudevents")
    assert waited == told  # not told again while it waited
    assert approval["type"] == "io.modelfleet.rollout.approved"
    assert (approval["data"]["gates"], approval["data"]["weight"]) == (["ops"], 50)
    assert approval["data"]["approvedBy"].startswith("kubectl modelfleet approve by ")
    assert approval["data"]["approvedBy"] in approved["message"]  # as the history says it
    assert [m["blocks"][0]["text"]["text"] for m in live.receiver.bodies("slack")] == [
        f"{live.namespace}/{NAME}: v2 waiting for approval at 50%",
        f"{live.namespace}/{NAME}: v2 approved at 50%",
    ]
    (body,) = live.receiver.bodies("load-check")
    assert (body["namespace"], body["name"], body["type"]) == (live.namespace, NAME, "preRollout")
    events = json.loads(
        live.cluster.kubectl("get", "events", "-n", live.namespace, "-o", "json").stdout
    )["items"]
    passed = {e["message"] for e in events if e.get("reason") == "GatePassed"}
    assert "preRollout gate load-check passed: HTTP 200" in passed
    assert any(m.startswith("the smoke test passed: 64/") for m in passed), passed
