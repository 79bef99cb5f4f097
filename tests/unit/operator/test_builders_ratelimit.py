"""spec.rateLimit reaches the servers: the slot Deployment's env, read back by the server's own
settings (the contract between the two), the per-pod split recomputed from the replicas, the
mode in status, and a rate-limit change applied in place (not a new revision)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.operator.api import CHECK_RULES, ModelDeploymentSpec
from modelfleet.operator.builders.common import Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment
from modelfleet.operator.builders.ratelimit import rate_limit_env, rate_limit_summary
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from modelfleet.server.ratelimit import RateLimiter, RedisBuckets
from modelfleet.server.settings import ServerSettings
from tests.unit.operator.specs import make_spec

OWNER = Owner(name="fraud", namespace="ml", uid="0000-1111")
LIMIT = {"requestsPerMinute": 600, "burst": 30, "key": "header:x-tenant"}


def _container(settings: OperatorSettings, **spec: Any) -> dict[str, Any]:
    parsed = make_spec(**spec)
    shape = shape_of(parsed, settings)
    plan = SlotPlan(
        slot="blue",
        shape=shape,
        revision=revision_of(shape),
        replicas=1,
        rate_limit_env=rate_limit_env(OWNER, parsed),
    )
    pod = build_deployment(OWNER, plan, settings)["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def _env(settings: OperatorSettings, **spec: Any) -> dict[str, str]:
    return {
        item["name"]: item.get("value", "")
        for item in _container(settings, **spec)["env"]
        if "value" in item
    }


@pytest.mark.parametrize(
    ("spec", "replicas"),
    [
        ({"replicas": 3}, "3"),
        ({"replicas": 0}, "1"),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 8}}, "2"),
    ],
)
def test_per_pod_the_servers_divide_by_the_replicas(
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
    spec: dict[str, Any],
    replicas: str,
) -> None:
    env = _env(settings, rateLimit=LIMIT, **spec)
    assert env["MODELFLEET_RATE_LIMIT_REPLICAS"] == replicas
    assert "MODELFLEET_RATE_LIMIT_REDIS_URL" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limiter = RateLimiter.from_settings(ServerSettings())
    assert limiter is not None
    assert limiter.limit.requests_per_minute == 600
    assert limiter.limit.split == int(replicas)
    assert limiter.limit.key == "header:x-tenant"


def test_shared_in_redis_every_pod_reads_one_scope(
    settings: OperatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(settings, replicas=4, rateLimit={**LIMIT, "redis": {"url": "redis://r:6379/0"}})
    assert env["MODELFLEET_RATE_LIMIT_REDIS_URL"] == "redis://r:6379/0"
    assert env["MODELFLEET_RATE_LIMIT_SCOPE"] == "ml/fraud"  # both slots, one bucket per tenant
    assert "MODELFLEET_RATE_LIMIT_REPLICAS" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    limiter = RateLimiter.from_settings(ServerSettings())
    assert limiter is not None
    assert isinstance(limiter.buckets, RedisBuckets)
    assert limiter.limit.split == 1


def test_a_redis_url_from_a_secret_and_no_override_from_server_env(
    settings: OperatorSettings,
) -> None:
    container = _container(
        settings,
        rateLimit={**LIMIT, "redis": {"urlSecretRef": {"name": "redis"}}},
        server={"env": [{"name": "MODELFLEET_RATE_LIMIT_BURST", "value": "9999"}]},
    )
    env = container["env"]
    assert [e for e in env if e["name"] == "MODELFLEET_RATE_LIMIT_REDIS_URL"] == [
        {
            "name": "MODELFLEET_RATE_LIMIT_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
        }
    ]
    assert [e["value"] for e in env if e["name"] == "MODELFLEET_RATE_LIMIT_BURST"] == ["30"]


def test_no_rate_limit_env_without_spec_rate_limit(settings: OperatorSettings) -> None:
    assert not any(name.startswith("MODELFLEET_RATE_LIMIT_") for name in _env(settings))
    assert rate_limit_summary(make_spec()) is None


def test_a_rate_limit_change_is_no_new_revision(settings: OperatorSettings) -> None:
    def revision(**spec: Any) -> str:
        return revision_of(shape_of(make_spec(**spec), settings))

    assert revision() == revision(rateLimit=LIMIT) == revision(rateLimit={**LIMIT, "burst": 5})
    # ...but the pods' env follows the replicas (applied in place to both slots)
    assert rate_limit_env(OWNER, make_spec(rateLimit=LIMIT, replicas=2)) != rate_limit_env(
        OWNER, make_spec(rateLimit=LIMIT, replicas=3)
    )


@pytest.mark.parametrize(
    ("spec", "summary"),
    [
        (
            {"replicas": 2},
            "per pod: 300/min (burst 15) each over 2 replicas, per header:x-tenant",
        ),
        (
            {"replicas": 4, "rateLimit": {**LIMIT, "redis": {"url": "redis://r:6379"}}},
            "shared in Redis: 600/min, burst 30, per header:x-tenant",
        ),
        (
            {"autoscaling": {"minReplicas": 3, "maxReplicas": 6}},
            "per pod: 200/min (burst 10) each over 3 replicas, per header:x-tenant (minReplicas; "
            "up to 6 pods let through more: a Redis keeps it exact)",
        ),
    ],
)
def test_status_says_which_mode_holds(spec: dict[str, Any], summary: str) -> None:
    assert rate_limit_summary(make_spec(**{"rateLimit": LIMIT, **spec})) == summary


@pytest.mark.parametrize(
    "limit",
    [
        {"requestsPerMinute": 0},
        {"requestsPerMinute": 60, "key": "cookie"},
        {"requestsPerMinute": 60, "key": "header:"},
        {"requestsPerMinute": 60, "redis": {}},
        {"requestsPerMinute": 60, "redis": {"url": "http://r:6379"}},
    ],
)
def test_a_bad_rate_limit_is_refused(limit: dict[str, Any]) -> None:
    body = {"model": {"uri": "s3://models/fraud/v7/model.onnx"}, "rateLimit": limit}
    with pytest.raises(ValidationError):
        ModelDeploymentSpec.model_validate(body, context=CHECK_RULES)
