"""Every CEL rule the CRD carries on the spec has its Python twin, and the twin refuses a spec
that breaks it with a message naming the field (an older API server, or a CRD installed without
its rules, must not let such a spec reach the cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modelfleet.operator import api
from modelfleet.operator.crd import build_crd
from modelfleet.operator.reconcile import InvalidSpecError, parse_spec

INGRESS = {"ingress": {"host": "fraud.example.org"}}
HOOK = "http://gates.example.org/approve"

# one spec per rule that breaks it and nothing else, keyed by the rule's message
BROKEN: dict[str, dict[str, Any]] = {
    "autoscaling.minReplicas must be <= autoscaling.maxReplicas": {
        "autoscaling": {"minReplicas": 4, "maxReplicas": 2}
    },
    "traffic: set at most one of ingress and gateway": {
        "traffic": {**INGRESS, "gateway": {"parentRefs": [{"name": "g"}]}}
    },
    "rollout.analysis.minAgreement and maxScoreDelta need rows to replay: set "
    "replay.referenceUri or replay.liveSample": {"rollout": {"analysis": {"maxScoreDelta": 0.1}}},
    "set exactly one of url and urlSecretRef": {"rollout": {"notify": [{"type": "slack"}]}},
    "url must be an http:// or https:// URL": {
        "rollout": {"notify": [{"type": "teams", "url": "ftp://hooks.example.org/x"}]}
    },
    "rollout.steps must end at 100": {"rollout": {"steps": [10, 50]}},
    "rollout.steps must be strictly increasing": {"rollout": {"steps": [50, 10, 100]}},
    "monitoring.webhook.url must be an http:// or https:// URL": {
        "monitoring": {"webhook": {"url": "ftp://alerts.example.org/x"}}
    },
    "monitoring.window must be at least monitoring.interval": {
        "monitoring": {"interval": "2m", "window": "90s"}
    },
    "model.format is required when model.uri does not end in .onnx, .txt, .lgb or .bin": {
        "model": {"uri": "gs://models/fraud/model"}
    },
    "rollout.shadow needs traffic.ingress or traffic.gateway: the replica-ratio split cannot "
    "mirror traffic": {"rollout": {"shadow": {}}},
    "rollout.shadow.percent must be 100 with traffic.ingress: NGINX mirrors every request or "
    "none": {"rollout": {"shadow": {"percent": 50}}, "traffic": INGRESS},
    "rollout.headerRoute needs traffic.ingress or traffic.gateway: the replica-ratio split "
    "cannot match headers": {"rollout": {"headerRoute": {"name": "X-Canary", "value": "always"}}},
    "traffic.gateway.timeouts.backendRequest must not be longer than request": {
        "traffic": {
            "gateway": {
                "parentRefs": [{"name": "g"}],
                "timeouts": {"request": "5s", "backendRequest": "1m"},
            }
        }
    },
    "set exactly one of url, urlSecretRef and manual: true": {
        "rollout": {"webhooks": [{"name": "qa", "type": "confirmStep"}]}
    },
    "manual: true is for confirmStep and confirmPromotion gates (kubectl modelfleet approve)": {
        "rollout": {"webhooks": [{"name": "qa", "type": "preRollout", "manual": True}]}
    },
    "timeout must be more than 0s and at most 60s": {
        "rollout": {
            "webhooks": [{"name": "qa", "type": "preRollout", "url": HOOK, "timeout": "2m"}]
        }
    },
    "onFailure: hold is for gates before the promotion (a postRollout gate runs after it)": {
        "rollout": {
            "webhooks": [{"name": "qa", "type": "postRollout", "url": HOOK, "onFailure": "hold"}]
        }
    },
    "rollout.webhooks names must be unique": {
        "rollout": {
            "webhooks": [
                {"name": "qa", "type": "preRollout", "url": HOOK},
                {"name": "qa", "type": "confirmStep", "manual": True},
            ]
        }
    },
    "rollout.smoke needs rows: set smoke.requests or analysis.replay.referenceUri": {
        "rollout": {"smoke": {}}
    },
    "rollout.smoke.timeout must be more than 0s and at most 60s": {
        "rollout": {"smoke": {"requests": [[0.5]], "timeout": "0s"}}
    },
    "cache.ttl must be more than 0s": {"server": {"cache": {"ttl": "0s"}}},
    "url must be a redis:// or rediss:// URL": {
        "server": {"cache": {"redis": {"url": "http://cache.example.org:6379"}}}
    },
}


def _crd_rules(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield rule["rule"], rule["message"]
        for value in node.values():
            yield from _crd_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from _crd_rules(item)


def _declared(model: type[api.CamelModel], seen: set[type[Any]]) -> Iterator[api.CrossFieldRule]:
    if model in seen:
        return
    seen.add(model)
    yield from model.cross_field_rules
    for field in model.model_fields.values():
        for nested in _models_in(field.annotation):
            yield from _declared(nested, seen)


def _models_in(annotation: Any) -> Iterator[type[api.CamelModel]]:
    if isinstance(annotation, type) and issubclass(annotation, api.CamelModel):
        yield annotation
    for argument in getattr(annotation, "__args__", ()):
        yield from _models_in(argument)


def test_every_cel_rule_on_the_spec_is_a_declared_rule_with_a_python_twin() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    in_crd = set(_crd_rules(schema["properties"]["spec"]))
    declared = {(rule.cel, rule.message) for rule in _declared(api.ModelDeploymentSpec, set())}
    declared |= {(rule.cel, rule.message) for rule in api.STEPS_RULES}
    assert in_crd == declared
    assert {message for _, message in declared} == set(BROKEN)


@pytest.mark.parametrize(("message", "spec"), BROKEN.items(), ids=list(BROKEN))
def test_each_twin_refuses_what_its_rule_forbids_naming_the_field(
    message: str, spec: dict[str, Any]
) -> None:
    body = {"metadata": {"name": "fraud"}, "spec": {"model": {"uri": "s3://m/model.onnx"}, **spec}}
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(body)
    said = str(refused.value)
    assert said.startswith("spec.")
    assert said.endswith(message)


def test_the_rules_are_checked_only_where_asked() -> None:
    """What the operator builds or reads back for itself parses as stored."""
    analysis = api.AnalysisSpec.model_validate({"minAgreement": 0.9})
    assert analysis.replay is None
    with pytest.raises(ValueError, match="need rows to replay"):
        api.AnalysisSpec.model_validate({"minAgreement": 0.9}, context=api.CHECK_RULES)
