"""What the operator already knows about its slot Deployments, so a reconcile need not ask again.

The watch on the operator's Deployments and the answers of its own applies both carry the object;
`LiveDeployments` keeps a slim copy of the newest of them (only the fields a reconcile reads), so
a reconcile of N ModelDeployments costs no GET per slot. A miss is never taken as "absent": the
reconcile then asks the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelfleet.operator.builders.common import LABEL_REVISION
from modelfleet.operator.shape import SHAPE_ANNOTATION


def resource_version(obj: Mapping[str, Any]) -> int:
    """The object's resourceVersion as a number (etcd's revision); 0 when it is not one."""
    value = obj.get("metadata", {}).get("resourceVersion", "")
    return int(value) if str(value).isdigit() else 0


def slim_deployment(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Deployment that a reconcile reads (slot observation and pod shape)."""
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    progressing: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == "Progressing"), {}
    )
    return {
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "generation": meta.get("generation", 0),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
            "labels": {k: v for k, v in labels.items() if k == LABEL_REVISION},
            "annotations": {k: v for k, v in annotations.items() if k == SHAPE_ANNOTATION},
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            key: status[key]
            for key in ("observedGeneration", "readyReplicas", "updatedReplicas", "replicas")
            if key in status
        }
        | (
            {"progressedAt": progressing["lastUpdateTime"]}
            if "lastUpdateTime" in progressing
            else {}
        ),
    }


class LiveDeployments:
    """The newest slim copy of each slot Deployment seen (watch events and apply answers)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._items.get((namespace, name))

    def update(self, obj: Mapping[str, Any]) -> None:
        """Keep a slim copy of `obj` unless a newer one is known."""
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        known = self._items.get(key)
        if known is None or resource_version(known) <= resource_version(obj):
            self._items[key] = slim_deployment(obj)

    def forget(self, namespace: str, name: str) -> None:
        self._items.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._items)
