"""The operator's own Prometheus metrics (served on its metrics port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OperatorMetrics:
    """Reconcile timing and errors, managed objects, and what a Grafana panel needs for a rollout."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("namespace", "name")
        self.reconcile_duration = Histogram(
            "modelfleet_operator_reconcile_duration_seconds",
            "Time of one reconcile of a ModelDeployment.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "modelfleet_operator_reconcile_errors_total",
            "Reconciles that ended in an error, by kind of error.",
            ("reason",),
            registry=self.registry,
        )
        self.managed = Gauge(
            "modelfleet_operator_managed_objects",
            "Children applied for this ModelDeployment by the last reconcile.",
            labels,
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "modelfleet_operator_canary_weight",
            "Live canary weight in percent (0 when no canary).",
            labels,
            registry=self.registry,
        )
        self.rollout_outcomes = Counter(
            "modelfleet_operator_rollout_outcomes_total",
            "Finished rollouts by outcome (Promoted, RolledBack, Aborted, Superseded, …).",
            ("namespace", "name", "outcome"),
            registry=self.registry,
        )
        self.analysis_error_rate = Gauge(
            "modelfleet_operator_analysis_error_rate",
            "Canary error rate of the last measurement.",
            labels,
            registry=self.registry,
        )
        self.analysis_p99_ms = Gauge(
            "modelfleet_operator_analysis_p99_ms",
            "Canary p99 latency (ms) of the last measurement.",
            labels,
            registry=self.registry,
        )
        self.analysis_requests = Gauge(
            "modelfleet_operator_analysis_requests",
            "Canary requests counted by the last measurement.",
            labels,
            registry=self.registry,
        )
