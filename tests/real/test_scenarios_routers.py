"""What a real proxy cannot do, on the real tier (Traefik v3.6), counted by a client:

S4  a shadow step on Traefik's Gateway is refused, naming the class and the missing feature
    that Traefik's GatewayClass does not list; no mirror filter is written; 0 failed requests
    (test_s4_…)
S5  the ingress router on Traefik's ingress-nginx provider, which ignores `canary-weight`: the
    canary gets no traffic, status says so, nothing is promoted (test_s5_…)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from realnode.load import Load

from tests.real.conftest import RealStack
from tests.real.test_scenarios import (
    REQUEST,
    _apply,
    _get,
    _start_v1,
    _status,
    _through_gateway,
    _wait,
    _wait_md_ready,
    model_deployment,
)

pytestmark = pytest.mark.slow


def _progressing(status: dict[str, Any]) -> dict[str, Any]:
    found = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
    return found[0] if found else {}


# --- S4 ------------------------------------------------------------------------------------
def test_s4_shadow_on_traefik_is_refused_with_the_missing_feature_named(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = _start_v1(real_stack, real_namespace, gateway)
    gateway_class = _get(real_stack, "/apis/gateway.networking.k8s.io/v1/gatewayclasses/traefik")
    features = {f["name"] for f in gateway_class["status"].get("supportedFeatures", [])}
    assert "HTTPRoute" in features  # Traefik filled it in
    assert "HTTPRouteRequestMirror" not in features

    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=120, headers={"host": host}).start()
    try:
        shadowed = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, shadow={"duration": "30s"}
        )
        _apply(real_stack, real_namespace, shadowed)

        def refused() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            return status if _progressing(status).get("reason") == "ShadowRefused" else None

        status = _wait("the shadow step refused", refused, 60)
        time.sleep(6)  # a few reconciles later: still nothing written
        still = _status(real_stack, real_namespace, name)
    finally:
        summary = load.stop()
    refusal = (
        "GatewayClass traefik does not support HTTPRouteRequestMirror "
        "(status.supportedFeatures): shadow refused"
    )
    print(f"Progressing: {_progressing(status)}; answers {summary.by_code}")
    assert _progressing(status)["message"] == refusal
    assert status.get("canary") is None
    assert still.get("canary") is None
    assert still["activeVersion"] == "v1"
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{real_namespace}/httproutes/{name}"
    route = _get(real_stack, path)
    assert all("filters" not in rule for rule in route["spec"]["rules"])  # no mirror written
    assert summary.requests >= 200
    assert summary.failed == 0, (summary.by_code, summary.failures())
    assert summary.by_version == {"v1": summary.requests}


# --- S5 ------------------------------------------------------------------------------------
def test_s5_ingress_router_on_traefiks_nginx_provider_starves_the_canary_and_says_so(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = "fraud", f"{real_namespace}.ingress.test"
    ingress = {"ingress": {"host": host, "className": "nginx", "path": "/"}}

    def spec(model: str, version: str) -> dict[str, Any]:
        md = model_deployment(real_stack, name, model, version, steps=[10, 100])
        md["spec"]["traffic"] = ingress
        return md

    _apply(real_stack, real_namespace, spec("model.txt", "v1"))
    _wait_md_ready(real_stack, real_namespace, name)
    # Before any canary, this provider answers the host 503 "no available server": the idle
    # canary Ingress (weight 0) points at the empty slot's Service and takes the route. Once the
    # canary slot has pods, v1 answers again; the traffic is measured from then on.
    _apply(real_stack, real_namespace, spec("model-v2.txt", "v2"))
    _wait(
        "v1 through Traefik's Ingress", lambda: _through_gateway(gateway, host, name) == "v1", 120
    )
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=150, headers={"host": host}).start()
    try:
        want = "traffic is not reaching the canary: 0.0 % of requests at weight 10 %"

        def starved() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            analysis = (status.get("canary") or {}).get("analysis") or {}
            return status if want in (analysis.get("message") or "") else None

        status = _wait("status saying the canary gets no traffic", starved, 120)
        # three step durations (15 s) later: still held at 10 %, nothing promoted
        time.sleep(45)
        held = _status(real_stack, real_namespace, name)
    finally:
        summary = load.stop()
    canary = held.get("canary") or {}
    print(f"analysis: {canary.get('analysis')}; answers {summary.by_code}")
    assert status["canary"]["analysis"]["phase"] != "Pass"
    assert canary.get("weight") == 10
    assert canary["analysis"]["phase"] != "Pass"
    assert want in canary["analysis"]["message"]
    assert held["activeVersion"] == "v1"
    assert not [h for h in held.get("history", []) if h["outcome"] == "Promoted"]
    assert summary.failed == 0, (summary.by_code, summary.failures())
    assert summary.by_version == {"v1": summary.requests}  # the client never saw the canary
