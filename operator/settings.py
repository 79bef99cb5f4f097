"""The operator's typed settings (env prefix MODELFLEET_OPERATOR_), validated at start-up."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GPU_TOLERATIONS: list[dict[str, Any]] = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
]


class OperatorSettings(BaseSettings):
    """Everything the operator reads from its environment; every field is MODELFLEET_OPERATOR_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="MODELFLEET_OPERATOR_", extra="ignore")

    server_image: str = Field(
        default="ghcr.io/modelfleet/modelfleet-server:0.1.0",
        description="Model-server image for ModelDeployments that do not name one.",
    )
    prometheus_url: str = Field(
        default="http://prometheus.monitoring.svc:9090",
        description="Prometheus for canary analysis when a ModelDeployment does not name one.",
    )
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty = the whole cluster."
    )
    gpu_tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: list(DEFAULT_GPU_TOLERATIONS),
        description="Tolerations added to GPU pods when the spec names none.",
    )
    log_format: Literal["json", "text"] = Field(default="json", description="Log line format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    resync_seconds: float = Field(
        default=60, gt=0, description="Periodic re-reconcile of every ModelDeployment."
    )
    bind_host: str = Field(
        default="0.0.0.0",
        description="Address of the metrics and liveness endpoints (0.0.0.0 in a pod).",
    )
    metrics_port: int = Field(
        default=8090, ge=0, le=65535, description="Operator metrics; 0 = off."
    )
    health_port: int = Field(
        default=8091,
        ge=0,
        le=65535,
        description="/healthz (liveness) and /readyz (readiness: acting or standing by); 0 = off.",
    )
    peering: str | None = Field(
        default="modelfleet",
        description="ClusterKopfPeering name shared by the replicas; only one acts at a time.",
    )
    peering_priority: int = Field(
        default=0,
        description="Peering priority; 0 = the start time in ms, so a newer replica (a rolling "
        "update's) takes over from an older one.",
    )
    peering_lifetime_seconds: int = Field(
        default=30, ge=5, description="How long a silent replica counts as alive (failover time)."
    )
    pod_app_name: str = Field(
        default="modelfleet-server",
        description="app.kubernetes.io/name of server pods. Benchmarks set another value so the "
        "local cluster's kwok simulates the pods instead of running a server process per pod.",
    )
    pod_address_annotation: str | None = Field(
        default=None,
        description="Pod annotation holding the host:port of a pod's metrics port, read instead "
        "of podIP and the port named `metrics` (the paired gate replays rows there). Tests, the "
        "demo and benchmarks set modelfleet.io/local-metrics-address.",
    )
    scaled_object_check: bool = Field(
        default=True, description="Look up whether the KEDA and PodMonitor CRDs exist."
    )
    notify_slack_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible incoming webhook told of every rollout whose spec sets no "
        "rollout.notify (set it from a Secret: env valueFrom.secretKeyRef).",
    )
    notify_teams_url: SecretStr | None = Field(
        default=None,
        description="Microsoft Teams workflow webhook, the same way (an Adaptive Card a message).",
    )
    notify_cloudevents_url: SecretStr | None = Field(
        default=None, description="Receiver of rollout CloudEvents, the same way."
    )
    notify_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts per notification before it counts as failed (a Warning Event "
        'NotificationFailed and modelfleet_notifications_total{result="failed"}).',
    )
    notify_first_retry_seconds: float = Field(
        default=1.0, gt=0, description="Wait before the second attempt; doubled for each next one."
    )
