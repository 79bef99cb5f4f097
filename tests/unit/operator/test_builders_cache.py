"""spec.server.cache reaches the server: the slot Deployment's env, read back by the server's
own settings (the contract between the two); a Redis URL from a Secret stays a secretKeyRef;
the spec's own rules refuse what the server could not use."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.operator.api import ServerSpec
from modelfleet.operator.builders.common import Owner, SlotPlan
from modelfleet.operator.builders.deployment import build_deployment
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import revision_of, shape_of
from modelfleet.server.settings import ServerSettings
from tests.unit.operator.specs import make_spec


def _env(settings: OperatorSettings, **spec: Any) -> list[dict[str, Any]]:
    shape = shape_of(make_spec(**spec), settings)
    plan = SlotPlan(slot="blue", shape=shape, revision=revision_of(shape), replicas=1)
    owner = Owner(name="fraud", namespace="ml", uid="0000-1111")
    container = build_deployment(owner, plan, settings)["spec"]["template"]["spec"]["containers"][0]
    env: list[dict[str, Any]] = container["env"]
    return env


def _values(env: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in env if "value" in item}


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({}, ("memory", 300.0, 10_000, "")),
        ({"ttl": "90s", "maxEntries": 5000}, ("memory", 90.0, 5000, "")),
        (
            {"ttl": "1h", "redis": {"url": "redis://cache.ml:6379/2"}},
            ("redis", 3600.0, 10_000, "redis://cache.ml:6379/2"),
        ),
    ],
)
def test_the_server_reads_the_cache_env_the_builder_writes(
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
    cache: dict[str, Any],
    expected: tuple[str, float, int, str],
) -> None:
    env = _values(_env(settings, server={"cache": cache}))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = ServerSettings()
    read = (server.cache, server.cache_ttl_seconds, server.cache_max_entries)
    assert (*read, server.cache_redis_url) == expected


def test_no_cache_env_without_spec_server_cache(settings: OperatorSettings) -> None:
    names = {item["name"] for item in _env(settings)}
    assert "MODELFLEET_CACHE_DIR" in names  # the model files' cache, not this one
    assert not names & {
        "MODELFLEET_CACHE", "MODELFLEET_CACHE_TTL_SECONDS", "MODELFLEET_CACHE_MAX_ENTRIES",
        "MODELFLEET_CACHE_REDIS_URL",
    }  # fmt: skip


def test_a_redis_url_from_a_secret_stays_a_secret_ref(settings: OperatorSettings) -> None:
    redis = {"urlSecretRef": {"name": "cache-redis", "key": "uri"}}
    extra = [{"name": "MODELFLEET_CACHE_REDIS_URL", "value": "redis://elsewhere:6379"}]
    env = _env(settings, server={"cache": {"redis": redis}, "env": extra})
    urls = [item for item in env if item["name"] == "MODELFLEET_CACHE_REDIS_URL"]
    assert urls == [
        {
            "name": "MODELFLEET_CACHE_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "uri"}},
        }
    ]  # never the URL itself in the Deployment, and spec.server.env cannot override it
    assert _values(env)["MODELFLEET_CACHE"] == "redis"


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ({"redis": {}}, "set exactly one of url and urlSecretRef"),
        (
            {"redis": {"url": "redis://a:6379", "urlSecretRef": {"name": "r"}}},
            "set exactly one of url and urlSecretRef",
        ),
        ({"redis": {"url": "http://cache:6379"}}, "url must be a redis:// or rediss:// URL"),
        ({"ttl": "0s"}, "cache.ttl must be more than 0s"),
    ],
)
def test_a_cache_the_server_could_not_use_is_refused(cache: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        ServerSpec.model_validate({"cache": cache}, context={"check_cross_field_rules": True})


def test_a_cache_change_is_a_new_revision(settings: OperatorSettings) -> None:
    def revision(**spec: Any) -> str:
        return revision_of(shape_of(make_spec(**spec), settings))

    assert revision() != revision(server={"cache": {}})
    assert revision(server={"cache": {}}) != revision(server={"cache": {"ttl": "1m"}})
