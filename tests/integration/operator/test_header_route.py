"""rollout.headerRoute on the local control plane: the HTTPRoute and Ingresses the operator writes
through a rollout, what the API server refuses, and a class that cannot match headers.

No traffic reaches the canary here, so every analysis is Inconclusive and a rollout holds at its
weight until a command moves it: each stage's objects can be read at leisure.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from modelfleet_dev.harness.gateway import BASE_FEATURES, install_gateway

from tests.integration.operator.kube import (
    condition,
    get,
    model_deployment,
    must_get,
    rule_weights,
    status,
    wait_for,
    wait_ready,
)
from tests.operator_fixtures import OperatorProcess

HEADER = {"name": "X-Canary", "value": "always"}
NOTE = "header route live: requests with X-Canary: always go to v2"
_ids = itertools.count(1)


def _spec(uri: str, version: str, traffic: dict[str, Any], **rollout: Any) -> dict[str, Any]:
    return {
        "model": {"uri": uri, "version": version},
        "replicas": 1,
        "traffic": traffic,
        "rollout": {
            "steps": [10, 100],
            "stepDuration": "10m",
            "scaleDownDelay": "1s",
            "keepPrevious": "0",
            "headerRoute": HEADER,
            **rollout,
        },
    }


def _command(cluster: Any, namespace: str, verb: str) -> None:
    value = f"{verb}:{next(_ids)}"
    cluster.kubectl(
        "annotate", "md", "fraud", "-n", namespace, f"modelfleet.io/command={value}", "--overwrite"
    )


def _v1_then_v2(
    cluster: Any,
    namespace: str,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
    traffic: dict[str, Any],
) -> None:
    """v1 applied and Ready, then v2 applied: the rollout starts."""
    apply_yaml(model_deployment("fraud", namespace, **_spec(example_model(), "v1", traffic)))
    wait_ready(cluster, "fraud", namespace)
    v2 = _spec(example_model("model-v2.onnx"), "v2", traffic)
    apply_yaml(model_deployment("fraud", namespace, **v2))


def _rules(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = must_get(cluster, "httproute", "fraud", namespace)["spec"][
        "rules"
    ]
    return rules


def _header_matches(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for match in rule["matches"] for h in match.get("headers", [])]


def test_the_httproute_sends_the_header_to_a_ready_canary_until_it_ends(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    install_gateway(cluster.api_client(), namespace, "gw", "modelfleet-headers", BASE_FEATURES)
    gateway = {"gateway": {"parentRefs": [{"name": "gw"}], "path": "/v2"}}
    apply_yaml(model_deployment("fraud", namespace, **_spec(example_model(), "v1", gateway)))
    wait_ready(cluster, "fraud", namespace)
    (rule,) = _rules(cluster, namespace)  # no canary: no header rule
    assert _header_matches(rule) == []

    v2 = _spec(example_model("model-v2.onnx"), "v2", gateway)
    apply_yaml(model_deployment("fraud", namespace, **v2))
    wait_for(lambda: status(cluster, "fraud", namespace).get("canary"), 30, "a canary")
    _command(cluster, namespace, "pause")  # before its pods are Ready: it stays at weight 0

    def header_rule() -> list[dict[str, Any]] | None:
        rules = _rules(cluster, namespace)
        return rules if len(rules) == 2 else None

    header, weighted = wait_for(header_rule, 60, "the header rule once the canary is Ready")
    current = status(cluster, "fraud", namespace)
    canary = current["canary"]
    assert (current["phase"], canary["weight"]) == ("Paused", 0), current
    assert header["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/v2"},
            "headers": [{"type": "Exact", **HEADER}],
        }
    ]
    assert rule_weights(header) == [(f"fraud-{canary['slot']}", 100)]
    assert rule_weights(weighted) == [
        (f"fraud-{current['activeSlot']}", 100),
        (f"fraud-{canary['slot']}", 0),
    ]
    assert _header_matches(weighted) == []
    assert f"{NOTE} ({canary['slot']})" in current["message"], current["message"]

    _command(cluster, namespace, "resume")  # the first weight: the header rule stays on top

    def at_ten() -> list[dict[str, Any]] | None:
        rules = _rules(cluster, namespace)
        return rules if rule_weights(rules[-1])[-1][1] == 10 else None

    header, weighted = wait_for(at_ten, 60, "weight 10")
    assert rule_weights(header) == [(f"fraud-{canary['slot']}", 100)]
    assert rule_weights(weighted) == [
        (f"fraud-{current['activeSlot']}", 90),
        (f"fraud-{canary['slot']}", 10),
    ]

    _command(cluster, namespace, "abort")  # the header rule goes with the canary
    wait_for(lambda: len(_rules(cluster, namespace)) == 1, 30, "the header rule gone on abort")
    (rule,) = _rules(cluster, namespace)
    assert rule_weights(rule) == [(f"fraud-{current['activeSlot']}", 100)]
    assert NOTE not in (status(cluster, "fraud", namespace).get("message") or "")

    v3 = _spec(example_model("model.txt"), "v3", gateway)
    apply_yaml(model_deployment("fraud", namespace, **v3))
    wait_for(lambda: len(_rules(cluster, namespace)) == 2, 60, "v3's header rule")
    _command(cluster, namespace, "promote --full")  # and with promotion
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("activeVersion") == "v3", 60, "v3 promoted"
    )
    (rule,) = _rules(cluster, namespace)
    assert _header_matches(rule) == []


def test_the_canary_ingress_carries_the_header_annotations(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    ingress = {"ingress": {"host": "fraud.example.org"}}
    _v1_then_v2(cluster, namespace, apply_yaml, example_model, ingress)
    canary = wait_for(
        lambda: get(cluster, "ingress", "fraud-canary", namespace), 60, "the canary Ingress"
    )
    annotations = canary["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "canary"] == "true"
    assert annotations[prefix + "canary-weight"] == "10"
    assert annotations[prefix + "canary-by-header"] == "X-Canary"
    assert annotations[prefix + "canary-by-header-value"] == "always"
    main = must_get(cluster, "ingress", "fraud", namespace)
    assert prefix + "canary-by-header" not in (main["metadata"].get("annotations") or {})
    assert NOTE in status(cluster, "fraud", namespace)["message"]
    _command(cluster, namespace, "abort")
    wait_for(
        lambda: get(cluster, "ingress", "fraud-canary", namespace) is None,
        30,
        "the canary Ingress gone on abort",
    )


def test_the_api_server_refuses_a_header_route_naming_the_field(
    cluster: Any, namespace: str, example_model: Callable[..., str]
) -> None:
    gateway = {"gateway": {"parentRefs": [{"name": "gw"}]}}
    cases = [
        (gateway, {"name": "X Canary", "value": "1"}, "spec.rollout.headerRoute.name"),
        (gateway, {"name": "X-Canary", "value": "a\tb "}, "spec.rollout.headerRoute.value"),
        ({}, HEADER, "rollout.headerRoute needs traffic.ingress or traffic.gateway"),
    ]
    for traffic, header, words in cases:
        spec = _spec(example_model(), "v1", traffic, headerRoute=header)
        manifest = model_deployment("fraud", namespace, **spec)
        done = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
        assert done.returncode != 0, (header, done.stdout)
        assert words in done.stderr, done.stderr
    assert get(cluster, "md", "fraud", namespace) is None


def test_a_class_listing_its_features_without_httproute_refuses_the_rollout(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    install_gateway(cluster.api_client(), namespace, "gw", "modelfleet-no-httproute", ["Gateway"])
    gateway = {"gateway": {"parentRefs": [{"name": "gw"}]}}
    _v1_then_v2(cluster, namespace, apply_yaml, example_model, gateway)
    refusal = (
        "GatewayClass modelfleet-no-httproute does not support HTTPRoute "
        "(status.supportedFeatures): header route refused"
    )

    def refused() -> dict[str, Any] | None:
        current = status(cluster, "fraud", namespace)
        return current if condition(current, "Progressing").get("message") == refusal else None

    current = wait_for(refused, 60, "the header route refused")
    assert condition(current, "Progressing")["status"] == "False"
    assert (current.get("canary"), current["activeVersion"]) == (None, "v1")
    (rule,) = _rules(cluster, namespace)
    assert _header_matches(rule) == []
