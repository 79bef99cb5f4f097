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
def test_s5_ingress_router_on_traefiks_nginx_provider_is_caught_by_the_measured_share(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    """Traefik's ingress-nginx provider ignores `canary-weight`: the main and the canary Ingress
    become routers with equal rules and priority, and either takes all of the host (Go map order,
    decided at each reload). Whichever it is, the measured share says so and nothing is promoted:
    0 % at weight 10 % holds the canary, ~100 % at weight 10 % rolls it back."""
    name, host = "fraud", f"{real_namespace}.ingress.test"
    ingress = {"ingress": {"host": host, "className": "nginx", "path": "/"}}

    def spec(model: str, version: str) -> dict[str, Any]:
        md = model_deployment(real_stack, name, model, version, steps=[10, 100])
        md["spec"]["traffic"] = ingress
        return md

    _apply(real_stack, real_namespace, spec("model.txt", "v1"))
    _wait_md_ready(real_stack, real_namespace, name)
    # no canary Ingress while idle, so v1 answers the host before any canary exists
    _wait(
        "v1 through Traefik's Ingress", lambda: _through_gateway(gateway, host, name) == "v1", 120
    )
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=150, headers={"host": host}).start()
    try:
        _apply(real_stack, real_namespace, spec("model-v2.txt", "v2"))
        starved = "traffic is not reaching the canary: 0.0 % of requests at weight 10 %"
        flooded = "traffic to the canary far exceeds its weight: "

        def caught() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            analysis = (status.get("canary") or {}).get("analysis") or {}
            history = status.get("history") or [{}]
            held = starved in (analysis.get("message") or "")
            rolled_back = history[0].get("outcome") == "RolledBack"
            return status if held or rolled_back else None

        status = _wait("the measured share to hold or roll back the canary", caught, 120)
        # three step durations (15 s) later: still v1 active, nothing promoted
        time.sleep(45)
        later = _status(real_stack, real_namespace, name)
    finally:
        summary = load.stop()
    print(f"status: {status.get('message')}; answers {summary.by_code} {summary.by_version}")
    assert later["activeVersion"] == "v1"
    assert not [h for h in later.get("history", []) if h["outcome"] == "Promoted"]
    assert summary.failed == 0, (summary.by_code, summary.failures())
    canary = later.get("canary") or {}
    rolled_back = (later.get("history") or [{}])[0].get("outcome") == "RolledBack"
    if not rolled_back:  # held: the canary got nothing, the client never saw it
        assert canary.get("weight") == 10
        assert canary["analysis"]["phase"] != "Pass"
        assert starved in canary["analysis"]["message"]
        assert summary.by_version == {"v1": summary.requests}
    else:  # rolled back: the canary had taken (nearly) all of the host
        degraded = next(c for c in later["conditions"] if c["type"] == "Degraded")
        assert flooded in degraded["message"], degraded
        assert summary.by_version.get("v2", 0) > 0
