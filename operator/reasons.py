"""Condition types and reasons, in one place (CamelCase, as metav1.Condition wants them)."""

from __future__ import annotations

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
DRIFTING = "Drifting"  # monitoring: True = inputs or predictions moved away from the baseline
DATA_QUALITY = "DataQuality"  # monitoring: True = missing or out-of-range rates rose
MONITORING = (DRIFTING, DATA_QUALITY)  # written by the monitoring loop, not by the reconcile
# only with traffic.gateway.timeouts or retry: True = on the HTTPRoute, False = the class lacks them
ROUTE_POLICY = "RoutePolicy"

# Ready
AVAILABLE = "Available"
PODS_NOT_READY = "PodsNotReady"
SCALED_TO_ZERO = "ScaledToZero"
# Progressing
FIRST_DEPLOY = "FirstDeploy"
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
STEP_STARTED = "StepStarted"
STEP_PASSED = "StepPassed"
SHADOW_STARTED = "ShadowStarted"  # live traffic mirrored to the canary, weight 0
SHADOW_ENDED = "ShadowEnded"
SHADOW_REFUSED = "ShadowRefused"  # the Gateway's class does not support the mirror: not started
HEADER_ROUTE_REFUSED = "HeaderRouteRefused"  # the class cannot match headers: not started
METRICS_UNAVAILABLE = "MetricsUnavailable"
ROLLOUT_COMPLETE = "RolloutComplete"
PAUSED = "Paused"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# held (Progressing) or rolled back (Degraded): the measured share is far from the weight
TRAFFIC_NOT_AS_WEIGHTED = "TrafficNotAsWeighted"
AWAITING_APPROVAL = "AwaitingApproval"  # a confirm gate holds: a webhook said no, or none approved
RUNNING_GATES = "RunningGates"  # preRollout webhooks and the smoke test, before any traffic
GATE_PASSED = "GatePassed"
GATE_HOLDING = "GateHolding"  # a gate failed and onFailure is hold: asked again at the next look
GATE_REPORTED = "GateFailedReported"  # a gate failed and onFailure is report: the rollout goes on
APPROVED = "Approved"  # a confirm gate let the rollout go on (webhook 2xx or kubectl approve)
POST_ROLLOUT_FAILED = "PostRolloutFailed"
# Degraded / outcomes
GATE_FAILED = "GateFailed"  # a preRollout or confirm gate failed with onFailure rollback
SMOKE_TEST_FAILED = "SmokeTestFailed"
ANALYSIS_FAILED = "AnalysisFailed"
ABORTED = "Aborted"
ROLLED_BACK = "RolledBack"
SUPERSEDED = "Superseded"
CANCELLED = "Cancelled"
PROMOTED = "Promoted"
UNDONE = "Undone"
INVALID_SPEC = "InvalidSpec"
RECONCILE_ERROR = "ReconcileError"
AS_EXPECTED = "AsExpected"
COMMAND = "CommandAcknowledged"
COMMAND_IGNORED = "CommandIgnored"
# Drifting / DataQuality without a verdict (Unknown) from the loop, and webhook deliveries
NO_ACTIVE_SLOT = "NoActiveSlot"
MONITORING_ERROR = "MonitoringError"
WEBHOOK_FAILING = "WebhookDeliveryFailed"
WEBHOOK_RECOVERED = "WebhookDelivered"
NOTIFICATION_FAILED = "NotificationFailed"  # a rollout notification given up (or dropped)
# Drifting / DataQuality (monitoring; METRICS_UNAVAILABLE when Prometheus cannot be read)
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT = "NoDrift"
NO_BASELINE = "NoBaseline"
TOO_FEW_SAMPLES = "TooFewSamples"
DATA_QUALITY_DEGRADED = "DataQualityDegraded"
WITHIN_BASELINE = "WithinBaseline"
# RoutePolicy
ROUTE_POLICY_WRITTEN = "RoutePolicyWritten"
ROUTE_POLICY_REFUSED = "RoutePolicyRefused"  # not written: the data plane would not serve it
