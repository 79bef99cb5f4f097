"""The operator's own Prometheus metrics (served on its metrics port)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelfleet.operator.api import FeatureMonitoring, SlotFeedback
from modelfleet.operator.measurement import Measurement

MONITORING_LABELS = ("namespace", "deployment", "feature")


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
        self.notifications = Counter(
            "modelfleet_notifications",
            "Rollout notifications by receiver type and result: delivered, or failed (given up "
            "after every attempt, or dropped from a full queue).",
            ("target_type", "result"),
            registry=self.registry,
        )
        self.acting = Gauge(
            "modelfleet_operator_acting",
            "1 while this replica acts (standalone, or the live peer with the highest priority).",
            registry=self.registry,
        )
        self.peering_state = Gauge(
            "modelfleet_operator_peering_state",
            "1 for this replica's peering state (acting, standby, waiting), 0 for the others.",
            ("state",),
            registry=self.registry,
        )
        revisioned = ("namespace", "name", "revision")
        self.prediction_drift = Gauge(
            "modelfleet_operator_prediction_drift",
            "Largest PSI of the canary's prediction histograms vs the stable slot's (last look).",
            revisioned,
            registry=self.registry,
        )
        self.replay_agreement = Gauge(
            "modelfleet_operator_replay_agreement",
            "Share of replayed rows where canary and stable predict the same class (last look).",
            revisioned,
            registry=self.registry,
        )
        self.replay_score_delta = Gauge(
            "modelfleet_operator_replay_score_delta",
            "Per-row largest |canary − stable| score on replayed rows: mean and max (last look).",
            (*revisioned, "stat"),
            registry=self.registry,
        )
        # the canary revision whose model-aware series are exposed, per ModelDeployment
        self._gated_revision: dict[tuple[str, str], str] = {}
        self.monitoring = {
            "psi": Gauge(
                "modelfleet_monitoring_psi",
                "PSI of a feature's live values (monitoring window) against the baseline.",
                MONITORING_LABELS,
                registry=self.registry,
            ),
            "ks": Gauge(
                "modelfleet_monitoring_ks",
                "Kolmogorov–Smirnov statistic of a feature against the baseline (binned).",
                MONITORING_LABELS,
                registry=self.registry,
            ),
            "wasserstein": Gauge(
                "modelfleet_monitoring_wasserstein",
                "Binned Wasserstein-1 distance of a feature to the baseline, in baseline sd.",
                MONITORING_LABELS,
                registry=self.registry,
            ),
            "missing_rate": Gauge(
                "modelfleet_monitoring_missing_ratio",
                "Share of live rows missing this feature in the monitoring window.",
                MONITORING_LABELS,
                registry=self.registry,
            ),
            "drifting": Gauge(
                "modelfleet_monitoring_drifting",
                "1 when the feature drifts (beyond threshold and noise floor), 0 when checked and "
                "fine; absent without a verdict (too few rows, no baseline).",
                MONITORING_LABELS,
                registry=self.registry,
            ),
        }
        # the features whose monitoring series are exposed, per ModelDeployment
        self._monitored: dict[tuple[str, str], set[str]] = {}
        labelled = ("namespace", "deployment", "slot", "revision")
        self.feedback = {
            "rows": Gauge(
                "modelfleet_monitoring_labelled_rows",
                "Rows whose true label arrived in the monitoring window, per slot and revision.",
                labelled,
                registry=self.registry,
            ),
            "accuracy": Gauge(
                "modelfleet_monitoring_accuracy",
                "Live accuracy from labels in the monitoring window (classifiers).",
                labelled,
                registry=self.registry,
            ),
            "log_loss": Gauge(
                "modelfleet_monitoring_log_loss",
                "Mean log loss from labels in the monitoring window (classifiers).",
                labelled,
                registry=self.registry,
            ),
            "mae": Gauge(
                "modelfleet_monitoring_mae",
                "Mean absolute error from labels in the monitoring window (regressors).",
                labelled,
                registry=self.registry,
            ),
        }
        # the (slot, revision) pairs whose feedback series are exposed, per ModelDeployment
        self._labelled: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def record_gates(
        self, namespace: str, name: str, revision: str, measurement: Measurement
    ) -> None:
        """The model-aware values of a look at `revision`; an earlier revision's series go."""
        key = (namespace, name)
        previous = self._gated_revision.get(key)
        if previous is not None and previous != revision:
            self.forget_gates(namespace, name)
        labels = (namespace, name, revision)
        values = (
            (self.prediction_drift, labels, measurement.prediction_drift),
            (self.replay_agreement, labels, measurement.agreement),
            (self.replay_score_delta, (*labels, "mean"), measurement.score_delta_mean),
            (self.replay_score_delta, (*labels, "max"), measurement.score_delta_max),
        )
        for gauge, gauge_labels, value in values:
            if value is not None:  # a series only once measured: 0 would read as "disagrees"
                gauge.labels(*gauge_labels).set(value)
                self._gated_revision[key] = revision

    def forget_gates(self, namespace: str, name: str) -> None:
        """Drop the model-aware series of this ModelDeployment (rollout over, or a new one)."""
        revision = self._gated_revision.pop((namespace, name), None)
        if revision is None:
            return
        labels = (namespace, name, revision)
        for gauge in (self.prediction_drift, self.replay_agreement):
            _remove(gauge, labels)
        for stat in ("mean", "max"):
            _remove(self.replay_score_delta, (*labels, stat))

    def record_monitoring(
        self, namespace: str, name: str, features: Iterable[FeatureMonitoring]
    ) -> None:
        """The latest figures per feature; a figure without a value (no verdict) has no series."""
        key = (namespace, name)
        seen: set[str] = set()
        for feature in features:
            seen.add(feature.name)
            labels = (namespace, name, feature.name)
            for field, gauge in self.monitoring.items():
                value = getattr(feature, field)
                if value is None:
                    _remove(gauge, labels)
                else:
                    gauge.labels(*labels).set(float(value))
        for gone in self._monitored.get(key, set()) - seen:
            for gauge in self.monitoring.values():
                _remove(gauge, (namespace, name, gone))
        self._monitored[key] = seen

    def record_feedback(self, namespace: str, name: str, slots: Iterable[SlotFeedback]) -> None:
        """The latest live figures per slot and revision; a figure without a value has no series."""
        key = (namespace, name)
        seen: set[tuple[str, str]] = set()
        for slot in slots:
            seen.add((slot.slot, slot.revision))
            labels = (namespace, name, slot.slot, slot.revision)
            for field, gauge in self.feedback.items():
                value = getattr(slot, field)
                if value is None:
                    _remove(gauge, labels)
                else:
                    gauge.labels(*labels).set(float(value))
        for gone in self._labelled.get(key, set()) - seen:
            for gauge in self.feedback.values():
                _remove(gauge, (namespace, name, *gone))
        self._labelled[key] = seen

    def forget_monitoring(self, namespace: str, name: str) -> None:
        """Drop this ModelDeployment's monitoring series (monitoring off, or the object gone)."""
        self.record_feedback(namespace, name, ())  # and its live accuracy series
        for feature in self._monitored.pop((namespace, name), set()):
            for gauge in self.monitoring.values():
                _remove(gauge, (namespace, name, feature))


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set for these labels
        gauge.remove(*labels)
