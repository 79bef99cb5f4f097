"""What a real proxy cannot do, on the real tier (Traefik v3.6), counted by a client:

S4  a shadow step on Traefik's Gateway is refused, naming the class and the missing feature
    that Traefik's GatewayClass does not list; no mirror filter is written; 0 failed requests
    (test_s4_…)
S5  the ingress router on Traefik's ingress-nginx provider, which ignores `canary-weight`: the
    main and the canary Ingress become equal routers and one of them takes the whole host at each
    reload (a coin flip, re-thrown whenever anything in the cluster makes Traefik reload). The
    measured share says so either way, in every interval of the step as well as since it began
    (a host that changed hands mid-step averages out to a share near the weight): held at 0 %
    with the condition saying traffic is not reaching the canary, or rolled back at ~100 %
    (either way reason TrafficNotAsWeighted); nothing is promoted; 0 failed requests (test_s5_…)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from modelfleet_dev.realnode.load import Load

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
STARVED = "traffic is not reaching the canary: "
FLOODED = "traffic to the canary far exceeds its weight: "


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def _s5_caught(status: dict[str, Any]) -> str | None:
    """ "held" or "rolled back" once the measured share has stopped the canary, else None."""
    history = status.get("history") or [{}]
    if history[0].get("outcome") == "RolledBack":
        return "rolled back"
    canary = status.get("canary") or {}
    said = _condition(status, "Progressing").get("message", "")
    return "held" if canary.get("weight") == 10 and STARVED in said else None


def test_s5_ingress_router_on_traefiks_nginx_provider_is_caught_by_the_measured_share(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    """Whichever Ingress Traefik lets take the host, and however often that changes, the
    measured share stops the canary and nothing is promoted: held while it gets nothing (the
    Progressing condition says so), rolled back once it took far more than its weight (the
    Degraded condition says so); the client never sees a failed request."""
    name, host = "fraud", f"{real_namespace}.ingress.test"
    ingress = {"ingress": {"host": host, "className": "nginx", "path": "/"}}

    def spec(model: str, version: str) -> dict[str, Any]:
        # 40 s steps: past the first interval (5 s, the proxy's grace) the step holds intervals
        # of 4 scrapes (20 s), so the one look that can pass it judges the whole step by parts
        md = model_deployment(real_stack, name, model, version, steps=[10, 100], stepDuration="40s")
        md["spec"]["traffic"] = ingress
        return md

    _apply(real_stack, real_namespace, spec("model.txt", "v1"))
    _wait_md_ready(real_stack, real_namespace, name)
    # no canary Ingress while idle, so v1 answers the host before any canary exists
    _wait("v1 through Traefik's Ingress", lambda: _through_gateway(gateway, host, name) == "v1")
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=300, headers={"host": host}).start()
    try:
        _apply(real_stack, real_namespace, spec("model-v2.txt", "v2"))

        def caught_now() -> dict[str, Any] | None:
            status = _status(real_stack, real_namespace, name)
            return status if _s5_caught(status) else None

        status = _wait("the measured share to hold or roll back the canary", caught_now, 180)
        first = _s5_caught(status)
        # two step durations later: still v1 active, nothing promoted, still caught
        time.sleep(80)
        later = _status(real_stack, real_namespace, name)
    finally:
        summary = load.stop()
    caught = _s5_caught(later)
    print(
        f"S5: first {first}, then {caught}: {later.get('message')}; "
        f"answers {dict(summary.by_code)} {dict(summary.by_version)}"
    )
    assert later["activeVersion"] == "v1"
    assert not [h for h in later.get("history", []) if h["outcome"] == "Promoted"]
    assert caught is not None, later
    assert summary.requests >= 3000  # 50 req/s from before v2 until the end
    assert summary.failed == 0, (summary.by_code, summary.failures())
    if caught == "held":  # the canary gets nothing now; the analysis never passed the step
        assert later["canary"]["weight"] == 10
        assert later["canary"]["analysis"]["phase"] != "Pass"
        progressing = _condition(later, "Progressing")
        assert STARVED in progressing["message"]
        assert progressing["reason"] == "TrafficNotAsWeighted"
    else:  # it had taken (nearly) all of the host for a whole interval: users saw v2
        degraded = _condition(later, "Degraded")
        assert degraded["status"] == "True"
        assert FLOODED in degraded["message"], degraded
        assert degraded["reason"] == "TrafficNotAsWeighted"
        assert summary.by_version.get("v2", 0) > 0
