"""Autoscaling of a serving slot: HPA for cpu/memory, KEDA ScaledObject (Prometheus) otherwise."""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import AutoscalingSpec, Slot
from modelfleet.operator.builders.common import Owner, metadata, slot_labels

HPA_METRICS = ("cpu", "memory")

# PromQL per KEDA metric; the value is compared with `target` per pod.
_KEDA_QUERIES = {
    "rps": 'sum(rate(modelfleet_requests_total{{namespace="{ns}",deployment="{name}",slot="{slot}"}}[1m]))',
    "latency": "1000 * histogram_quantile(0.99, sum by (le) (rate("
    'modelfleet_request_duration_seconds_bucket{{namespace="{ns}",deployment="{name}",slot="{slot}"}}[1m])))',
    "inflight": 'sum(modelfleet_requests_in_flight{{namespace="{ns}",deployment="{name}",slot="{slot}"}})',
}


def uses_keda(autoscaling: AutoscalingSpec) -> bool:
    return autoscaling.metric not in HPA_METRICS


def build_hpa(owner: Owner, slot: Slot, autoscaling: AutoscalingSpec) -> dict[str, Any]:
    target = {"type": "Utilization", "averageUtilization": round(autoscaling.target)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, owner.slot_name(slot), slot_labels(owner, slot)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": owner.slot_name(slot),
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {"type": "Resource", "resource": {"name": autoscaling.metric, "target": target}}
            ],
        },
    }


def build_scaled_object(
    owner: Owner, slot: Slot, autoscaling: AutoscalingSpec, prometheus_url: str
) -> dict[str, Any]:
    query = _KEDA_QUERIES[autoscaling.metric].format(ns=owner.namespace, name=owner.name, slot=slot)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(owner, owner.slot_name(slot), slot_labels(owner, slot)),
        "spec": {
            "scaleTargetRef": {"name": owner.slot_name(slot)},
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": autoscaling.max_replicas,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": f"{autoscaling.target:g}",
                    },
                }
            ],
        },
    }
