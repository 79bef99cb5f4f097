"""rollout.headerRoute through reconcile() against the in-memory fake API server (test_reconcile's):
the header rule written from a Ready canary at weight 0, said once in status, gone with the canary;
a class that lists its features without HTTPRoute refuses the rollout before anything is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modelfleet.operator.api import ModelDeploymentStatus
from modelfleet.operator.livecache import LiveDeployments
from tests.unit.operator.test_reconcile import T0, FakeKube, _context, _md, _run

GATEWAY = {"gateway": {"parentRefs": [{"name": "gw"}]}}
HEADER = {"name": "X-Canary", "value": "always"}
NOTE = "header route live: requests with X-Canary: always go to v2 (green)"


def _gateway_class(kube: FakeKube, features: list[str]) -> None:
    kube.objects[("Gateway", "ml", "gw")] = {"spec": {"gatewayClassName": "cls"}}
    kube.objects[("GatewayClass", "", "cls")] = {
        "status": {"supportedFeatures": [{"name": name} for name in features]}
    }


def _rules(kube: FakeKube) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = kube.objects[("HTTPRoute", "ml", "fraud")]["spec"]["rules"]
    return rules


def _v2(body: dict[str, Any]) -> None:
    body["spec"]["model"] = {"uri": "s3://m/v2/model.onnx", "version": "v2"}
    body["metadata"]["generation"] = 2


def test_a_paused_canary_at_weight_0_takes_the_header_and_loses_it_on_promotion() -> None:
    kube = FakeKube()
    _gateway_class(kube, ["Gateway", "HTTPRoute"])
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic=GATEWAY, rollout={"headerRoute": HEADER, "steps": [10, 100]}
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert len(_rules(kube)) == 1  # no canary: no header rule
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    _v2(body)
    _run(kube, ctx, T0 + timedelta(seconds=3))  # the canary slot written, its pods not seen yet
    assert len(_rules(kube)) == 1
    body["metadata"]["annotations"] = {"modelfleet.io/command": "pause:1"}
    for second in range(4, 10):  # paused at weight 0, pods Ready: a tester's time
        _run(kube, ctx, T0 + timedelta(seconds=second))
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
    _gateway_class(kube, ["Gateway", "HTTPRoute"])
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic=GATEWAY, rollout={"headerRoute": HEADER}
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    _v2(body)
    for second in range(3, 6):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert body["status"]["canary"]["weight"] == 10
    assert len(_rules(kube)) == 2  # the header rule next to the weighted one
    body["metadata"]["annotations"] = {"modelfleet.io/command": "abort:1"}
    _run(kube, ctx, T0 + timedelta(seconds=6))
    assert body["status"].get("canary") is None
    (rule,) = _rules(kube)
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [("fraud-blue", 100)]


def test_a_class_listing_its_features_without_httproute_refuses_before_anything_is_written() -> (
    None
):
    kube = FakeKube()
    _gateway_class(kube, ["Gateway", "TLSRoute"])
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic=GATEWAY, rollout={"headerRoute": HEADER}
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    _v2(body)
    for second in range(3, 8):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    refusal = (
        "GatewayClass cls does not support HTTPRoute (status.supportedFeatures): "
        "header route refused"
    )
    status = ModelDeploymentStatus.model_validate(body["status"])
    assert (status.active_version, status.canary) == ("v1", None)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.message) == ("False", refusal)
    assert kube.events.count(("Warning", "ShadowRefused", refusal)) == 1
    assert kube.objects[("Deployment", "ml", "fraud-green")]["spec"]["replicas"] == 0
    assert len(_rules(kube)) == 1


def test_a_class_that_publishes_no_features_is_not_refused_a_header_route() -> None:
    kube = FakeKube()
    kube.objects[("Gateway", "ml", "gw")] = {"spec": {"gatewayClassName": "quiet"}}
    kube.objects[("GatewayClass", "", "quiet")] = {"status": {}}
    kube.objects[("ModelDeployment", "ml", "fraud")] = _md(
        traffic=GATEWAY, rollout={"headerRoute": HEADER}
    )
    ctx = _context(kube, LiveDeployments())
    for second in range(3):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    body = kube.objects[("ModelDeployment", "ml", "fraud")]
    _v2(body)
    for second in range(3, 6):
        _run(kube, ctx, T0 + timedelta(seconds=second))
    assert body["status"]["canary"]["weight"] == 10
    assert len(_rules(kube)) == 2
