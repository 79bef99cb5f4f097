"""Rollout notifications end to end (issue #17): a real operator process tells a real HTTP receiver,
on a loopback port of the test's own, about a rollout that is promoted and one that is rolled back,
through the local control plane, a real Prometheus and process-backed server pods under load.

One ModelDeployment carries four receivers: a Slack one whose URL is in a Secret, a Teams one, a
CloudEvents one, and a CloudEvents one that answers 500 to everything (told only Promoted). The
checks: each working receiver gets the same events in the same order (Started, StepPassed at 10,
25 and 50 %, Promoted; Started, RolledBack), in its own format, with the figures the status holds;
the broken one costs a Warning Event NotificationFailed and modelfleet_notifications_total counts
it as failed, after the operator's two attempts.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from modelfleet_dev.harness.rollout import (
    Receiver,
    apply,
    apply_healthy,
    healthy_at,
    model_deployment,
    read_status,
    traffic_driver,
    wait_for,
)
from modelfleet_dev.localcluster import LocalCluster
from prometheus_client.parser import text_string_to_metric_families

NAME = "fraud"
RPS = 60.0
TOLD = ["Started", "StepPassed", "StepPassed", "StepPassed", "Promoted", "Started", "RolledBack"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(answer=lambda path: 500 if path == "/broken" else 202) as running:
        yield running


def _manifest(cluster: LocalCluster, receiver: Receiver, **changes: Any) -> dict[str, Any]:
    manifest = model_deployment(NAME, prometheus_url=cluster.prometheus_url, **changes)
    manifest["spec"]["rollout"]["notify"] = [
        {"type": "slack", "urlSecretRef": {"name": "slack-hook"}},
        {"type": "teams", "url": receiver.url("teams")},
        {"type": "cloudevents", "url": receiver.url("events")},
        {"type": "cloudevents", "url": receiver.url("broken"), "events": ["Promoted"]},
    ]
    return manifest


def _secret(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "slack-hook"},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


def _until(done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)


def _events(cluster: LocalCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [event for event in listed["items"] if event.get("reason") == reason]


def _notifications(metrics_text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["target_type"], sample.labels["result"]): sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "modelfleet_notifications"
        for sample in family.samples
        if sample.name == "modelfleet_notifications_total"
    }


def test_a_promoted_and_a_rolled_back_rollout_are_told_with_their_figures(
    cluster: LocalCluster, namespace: str, start_operator: Any, receiver: Receiver
) -> None:
    operator = start_operator(
        namespace,
        env={
            "MODELFLEET_OPERATOR_NOTIFY_ATTEMPTS": "2",
            "MODELFLEET_OPERATOR_NOTIFY_FIRST_RETRY_SECONDS": "0.5",
        },
    )
    apply(cluster, namespace, _secret(receiver.url("slack")))
    apply_healthy(cluster, namespace, _manifest(cluster, receiver))
    assert receiver.got == []  # a first deploy is no rollout
    driver = traffic_driver(cluster, namespace, NAME, RPS)
    with driver.running():
        apply(cluster, namespace, _manifest(cluster, receiver, model="model-v2.txt", version="v2"))
        wait_for(cluster, namespace, NAME, healthy_at("v2"), 180, "v2 promoted")
        faulty = {"MODELFLEET_FAULT_ERROR_RATE": "0.05"}
        apply(
            cluster,
            namespace,
            _manifest(cluster, receiver, model="model.txt", version="v3", env=faulty),
        )
        status = wait_for(
            cluster, namespace, NAME, lambda s: s.get("phase") == "Degraded", 120, "rolled back"
        )
    _until(lambda: len(receiver.bodies("events")) >= len(TOLD), 20, "every CloudEvent")
    _until(lambda: _events(cluster, namespace, "NotificationFailed"), 20, "NotificationFailed")

    events = receiver.bodies("events")
    assert [e["data"]["event"] for e in events] == TOLD
    assert [e["type"] for e in events] == [f"io.modelfleet.rollout.{t.lower()}" for t in TOLD]
    assert receiver.content_types("events") == {"application/cloudevents+json"}
    started, *passed, promoted, restarted, rolled_back = (e["data"] for e in events)
    assert (started["version"], started["activeVersion"], started["weight"]) == ("v2", "v1", 0)
    assert [(p["weight"], p["step"], p["steps"]) for p in passed] == [
        (10, 1, [10, 25, 50, 100]),
        (25, 2, [10, 25, 50, 100]),
        (50, 3, [10, 25, 50, 100]),
    ]
    for step in passed:
        figures = step["analysis"]
        assert figures["phase"] == "Pass"
        assert figures["requests"] >= 50  # minRequests
        assert figures["errorRateLower"] <= figures["errorRate"] <= 0.01
        assert figures["errorRateUpper"] >= figures["errorRate"]
        assert figures["p99Ms"] > 0
    assert (promoted["version"], promoted["activeVersion"], promoted["weight"]) == ("v2",) * 2 + (
        100,
    )
    assert restarted["version"] == "v3"
    assert (rolled_back["version"], rolled_back["activeVersion"]) == ("v3", "v2")
    assert (rolled_back["weight"], rolled_back["reason"]) == (10, "AnalysisFailed")
    figures = rolled_back["analysis"]
    assert figures["phase"] == "Fail"
    assert figures["errorRateLower"] > 0.01  # the rule: the interval's lower bound above the limit
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert rolled_back["message"].startswith("error rate ")
    assert rolled_back["message"] in degraded["message"]  # what the condition carries

    slack = receiver.bodies("slack")
    assert [m["blocks"][0]["text"]["text"] for m in slack] == [
        f"{namespace}/{NAME}: rolling out v2",
        f"{namespace}/{NAME}: v2 passed at 10%",
        f"{namespace}/{NAME}: v2 passed at 25%",
        f"{namespace}/{NAME}: v2 passed at 50%",
        f"{namespace}/{NAME}: v2 promoted",
        f"{namespace}/{NAME}: rolling out v3",
        f"{namespace}/{NAME}: v3 rolled back at 10%",
    ]
    fields = [f["text"] for f in slack[-1]["blocks"][2]["fields"]]
    assert any(f.startswith("*Error rate*\n") and "(interval " in f for f in fields), fields
    assert receiver.content_types("slack") == {"application/json"}
    teams = [m["attachments"][0]["content"] for m in receiver.bodies("teams")]
    assert [card["body"][0]["text"] for card in teams] == [
        m["blocks"][0]["text"]["text"] for m in slack
    ]
    assert teams[-1]["body"][0]["color"] == "Attention"

    assert [b["data"]["event"] for b in receiver.bodies("broken")] == ["Promoted", "Promoted"]
    (failed,) = _events(cluster, namespace, "NotificationFailed")
    assert failed["type"] == "Warning"
    assert failed["involvedObject"]["name"] == NAME
    assert "io.modelfleet.rollout.promoted to cloudevents target 3" in failed["message"]
    assert "HTTP 500" in failed["message"]
    assert "after 2 attempts" in failed["message"]
    counted = _notifications(operator.metrics())
    assert counted == {
        ("slack", "delivered"): len(TOLD),
        ("teams", "delivered"): len(TOLD),
        ("cloudevents", "delivered"): len(TOLD),
        ("cloudevents", "failed"): 1,
    }
    assert read_status(cluster, namespace, NAME)["activeVersion"] == "v2"
