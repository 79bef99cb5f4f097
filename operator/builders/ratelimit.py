"""`spec.rateLimit` for the servers: their environment and the mode status reports. Pure.

Shared (a Redis named): every pod takes from one bucket per tenant, the limit as written. Per pod:
each pod enforces the limit and burst divided by the replica count (`replicas`, or with
autoscaling its `minReplicas`), so the pods together let through the limit when the router
spreads a tenant's requests evenly. The count is in the pods' environment: a change of replicas
rolls the pods (not a rollout: both slots, in place), and an autoscaler that adds pods lets
through up to max/min times the limit; name a Redis for an exact limit under autoscaling.
"""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import ModelDeploymentSpec, RateLimitSpec
from modelfleet.operator.builders.common import Owner


def split_replicas(spec: ModelDeploymentSpec) -> int:
    """The replicas a per-pod limit is divided by."""
    count = spec.autoscaling.min_replicas if spec.autoscaling is not None else spec.replicas
    return max(1, count)


def rate_limit_env(owner: Owner, spec: ModelDeploymentSpec) -> tuple[dict[str, Any], ...]:
    """The server's MODELFLEET_RATE_LIMIT_* variables (none without `spec.rateLimit`)."""
    limit = spec.rate_limit
    if limit is None:
        return ()
    values = {
        "MODELFLEET_RATE_LIMIT_REQUESTS_PER_MINUTE": str(limit.requests_per_minute),
        "MODELFLEET_RATE_LIMIT_BURST": str(limit.burst),
        "MODELFLEET_RATE_LIMIT_KEY": limit.key,
    }
    redis = limit.redis
    if redis is None:
        values["MODELFLEET_RATE_LIMIT_REPLICAS"] = str(split_replicas(spec))
    else:  # both slots and every replica share the tenant's bucket under this scope
        values["MODELFLEET_RATE_LIMIT_SCOPE"] = f"{owner.namespace}/{owner.name}"
        if redis.url is not None:
            values["MODELFLEET_RATE_LIMIT_REDIS_URL"] = redis.url
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in values.items()]
    if redis is not None and redis.url_secret_ref is not None:
        ref = {"name": redis.url_secret_ref.name, "key": redis.url_secret_ref.key}
        env.append({"name": "MODELFLEET_RATE_LIMIT_REDIS_URL", "valueFrom": {"secretKeyRef": ref}})
    return tuple(env)


def rate_limit_summary(spec: ModelDeploymentSpec) -> str | None:
    """status.rateLimit: which mode holds, in words."""
    limit = spec.rate_limit
    if limit is None:
        return None
    per = f"per {limit.key}"
    if limit.redis is not None:
        return f"shared in Redis: {limit.requests_per_minute}/min, burst {limit.burst}, {per}"
    replicas = split_replicas(spec)
    each = _per_pod(limit, replicas)
    summary = f"per pod: {each} each over {replicas} replicas, {per}"
    if spec.autoscaling is not None:
        most = spec.autoscaling.max_replicas
        summary += f" (minReplicas; up to {most} pods let through more: a Redis keeps it exact)"
    return summary


def _per_pod(limit: RateLimitSpec, replicas: int) -> str:
    rate = limit.requests_per_minute / replicas
    burst = max(1.0, limit.burst / replicas)
    return f"{rate:g}/min (burst {burst:g})"
