"""What the demo deploys: the ModelDeployment's name, namespace, limits and manifest.

The manifest is the same on both tiers; the cluster says what differs (a `DemoCluster` or a
`RealDemoCluster`): where the model files are, the HTTPRoute's parent, the pods' placement, how
many replicas a slot has and whether (and how) the model is monitored after promotion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from modelfleet_dev.harness.rollout import model_deployment

from .view import Limits

NAME = "fraud"
NAMESPACE = "modelfleet-demo"
RPS = 100.0
ROWS_PER_REQUEST = 32  # varied rows: the drift gate compares distributions of real traffic
FAULT_RATE = "0.05"
# spec.monitoring on the real tier (its sixth chapter): short, so that a shift shows within a
# minute; the defaults (1m, 1h) are for production
MONITOR_INTERVAL = "10s"
MONITOR_WINDOW = "1m"
LIMITS = Limits(
    steps=(10, 25, 50, 100),
    step_duration="15s",
    interval="3s",
    max_error_rate=0.01,
    # generous: a loaded 2-core machine is not a latency test (a new pod's first seconds there
    # can show a 600 ms p99 for a healthy model); the story's bad canaries fail on other checks
    max_p99_ms=2000,
    min_requests=50,
)


class Tier(Protocol):
    """What the manifest needs from the cluster it goes to."""

    prometheus_url: str
    replicas: int

    def model_uri(self, file_name: str) -> str: ...
    def traffic(self) -> dict[str, Any]: ...
    def placement(self) -> dict[str, Any]: ...
    def monitoring(self) -> dict[str, Any] | None: ...


def manifest(
    cluster: Tier,
    *,
    model: str,
    version: str,
    gates: Mapping[str, Any] | None = None,
    steps: Sequence[int] = LIMITS.steps,
    **extra: Any,
) -> dict[str, Any]:
    body = model_deployment(
        NAME,
        prometheus_url=cluster.prometheus_url,
        model=model,
        version=version,
        steps=steps,
        step_duration=LIMITS.step_duration,
        interval=LIMITS.interval,
        # Inconclusive measurements hold a step; on a busy machine the driver sends fewer
        # requests, so the bad canary needs longer to be judged: never pause the story for that.
        progress_deadline="5m",
        analysis={
            "maxErrorRate": LIMITS.max_error_rate,
            "maxP99LatencyMs": LIMITS.max_p99_ms,
            "minRequests": LIMITS.min_requests,
            **(gates or {}),
        },
        traffic=cluster.traffic(),
        replicas=cluster.replicas,
        **extra,
    )
    body["spec"]["model"]["uri"] = cluster.model_uri(model)
    body["spec"].update(cluster.placement())
    monitoring = cluster.monitoring()
    if monitoring is not None:
        body["spec"]["monitoring"] = monitoring
    return body
