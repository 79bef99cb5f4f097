"""PodMonitor `<name>` (prometheus-operator), applied only where its CRD exists."""

from __future__ import annotations

from typing import Any

from modelfleet.operator.builders.common import Owner, base_labels, metadata, selector


def build_pod_monitor(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(owner, owner.name, base_labels(owner)),
        "spec": {
            "selector": {"matchLabels": selector(owner, None)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
        },
    }
