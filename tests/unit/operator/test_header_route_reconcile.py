"""rollout.headerRoute through reconcile() against the in-memory fake API server (test_reconcile's):
the header rule written from a Ready canary at weight 0, said once in status, gone with the canary;
a class that lists its features without HTTPRoute refuses the rollout before anything is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.reconcile import Context
from tests.unit.operator.test_reconcile import (
    T0,
    FakeKube,
    _context,
    _gateway_class,
    _md,
    _new_version,
    _run,
    _run_seconds,
)

GATEWAY = {"gateway": {"parentRefs": [{"name": "gw"}]}}
HEADER = {"name": "X-Canary", "value": "always"}
NOTE = "header route live: requests with X-Canary: always go to v2 (green)"


def _rules(kube: FakeKube) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = kube.objects[("HTTPRoute", "ml", "fraud")]["spec"]["rules"]
    return rules


def _healthy_v1(kube: FakeKube, **rollout: Any) -> tuple[Context, dict[str, Any]]:
    """v1 behind the Gateway with a header route, reconciled until Healthy: its context and body."""
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic=GATEWAY, rollout={"headerRoute": HEADER, **rollout}
    )
    ctx = _context(kube, LiveDeployments())
    _run_seconds(kube, ctx, range(3))
    return ctx, kube.objects[("ModelDeployment", "ml", "fraud")]


def test_a_paused_canary_at_weight_0_takes_the_header_and_loses_it_on_promotion() -> None:
    kube = FakeKube()
    _gateway_class(kube, "cls", ["Gateway", "HTTPRoute"])
    ctx, body = _healthy_v1(kube, steps=[10, 100])
    assert len(_rules(kube)) == 1  # no canary: no header rule
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 4))  # the canary slot written, its pods not seen yet
    assert len(_rules(kube)) == 1
    body["metadata"]["annotations"] = {"modelfleet.io/command": "pause:1"}
    _run_seconds(kube, ctx, range(4, 10))  # paused at weight 0, pods Ready: a tester's time
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert status.canary is not None
    assert (status.phase, status.canary.weight) == ("Paused", 0)
    header_rule, weighted = _rules(kube)
    assert header_rule["matches"][0]["headers"] == [{"type": "Exact", **HEADER}]
    assert [ref["name"] for ref in header_rule["backendRefs"]] == ["fraud-green"]
    assert [ref["weight"] for ref in weighted["backendRefs"]] == [100, 0]
    assert status.message is not None
    assert status.message.count(NOTE) == 1, status.message  # said once, however many reconciles

    body["metadata"]["annotations"] = {"modelfleet.io/command": "promote --full:2"}
    for second in range(10, 20):
        _run(kube, ctx, T0 + timedelta(seconds=second))
        if body["status"].get("canary") is None:
            break
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert (status.active_version, status.canary) == ("v2", None)
    (rule,) = _rules(kube)
    assert "headers" not in rule["matches"][0]
    assert NOTE not in (status.message or "")


def test_a_rolled_back_canary_takes_its_header_rule_with_it() -> None:
    kube = FakeKube()
    _gateway_class(kube, "cls", ["Gateway", "HTTPRoute"])
    ctx, body = _healthy_v1(kube)
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 6))
    assert body["status"]["canary"]["weight"] == 10
    assert len(_rules(kube)) == 2  # the header rule next to the weighted one
    body["metadata"]["annotations"] = {"modelfleet.io/command": "abort:1"}
    _run_seconds(kube, ctx, range(6, 7))
    assert body["status"].get("canary") is None
    (rule,) = _rules(kube)
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [("fraud-blue", 100)]


def test_a_class_listing_its_features_without_httproute_refuses_before_anything_is_written() -> (
    None
):
    kube = FakeKube()
    _gateway_class(kube, "cls", ["Gateway", "TLSRoute"])
    ctx, body = _healthy_v1(kube)
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 8))
    refusal = (
        "GatewayClass cls does not support HTTPRoute (status.supportedFeatures): "
        "header route refused"
    )
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert (status.active_version, status.canary) == ("v1", None)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.message) == ("False", refusal)
    assert progressing.reason == "HeaderRouteRefused"  # its own reason, not the mirror's
    assert kube.events.count(("Warning", "HeaderRouteRefused", refusal)) == 1
    assert kube.objects[("Deployment", "ml", "fraud-green")]["spec"]["replicas"] == 0
    assert len(_rules(kube)) == 1


def test_a_class_that_publishes_no_features_is_not_refused_a_header_route() -> None:
    kube = FakeKube()
    kube.objects[("Gateway", "ml", "gw")] = {"spec": {"gatewayClassName": "quiet"}}
    kube.objects[("GatewayClass", "", "quiet")] = {"status": {}}
    ctx, body = _healthy_v1(kube)
    _new_version(body)
    _run_seconds(kube, ctx, range(3, 6))
    assert body["status"]["canary"]["weight"] == 10
    assert len(_rules(kube)) == 2
