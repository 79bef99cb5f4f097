"""NGINX Ingress: `<name>` to the active slot, `<name>-canary` with canary-weight annotations.

In the shadow step the main Ingress also mirrors every request to the canary slot's Service
(`mirror-target`, with the body); NGINX discards the mirror's answers. It cannot mirror a share,
which is why the CRD demands `rollout.shadow.percent: 100` with an Ingress.
"""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import SLOTS, IngressTraffic, Slot, TrafficSpec
from modelfleet.operator.builders.common import SERVICE_PORT, Owner, base_labels, metadata
from modelfleet.operator.routers import Routing, proportional_replicas

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_WEIGHT_TOTAL = "nginx.ingress.kubernetes.io/canary-weight-total"
MIRROR_TARGET = "nginx.ingress.kubernetes.io/mirror-target"
MIRROR_REQUEST_BODY = "nginx.ingress.kubernetes.io/mirror-request-body"


class IngressNginxRouter:
    name = "ingress-nginx"
    managed_kinds: tuple[tuple[str, str], ...] = (("networking.k8s.io/v1", "Ingress"),)

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        assert traffic.ingress is not None
        ingress = traffic.ingress
        # with no canary the canary Ingress stays, at weight 0, pointing at the idle slot
        canary_slot = routing.canary_slot or _other(routing.active_slot)
        weight = routing.canary_weight if routing.canary_slot else 0
        canary_annotations = {
            **ingress.annotations,
            CANARY: "true",
            CANARY_WEIGHT: str(weight),
            CANARY_WEIGHT_TOTAL: "100",
        }
        main_annotations = dict(ingress.annotations)
        if routing.canary_slot is not None and routing.mirror_percent > 0:
            main_annotations[MIRROR_TARGET] = mirror_target(owner, routing.canary_slot)
            main_annotations[MIRROR_REQUEST_BODY] = "on"
        return [
            _ingress(owner, owner.name, ingress, routing.active_slot, main_annotations),
            _ingress(owner, f"{owner.name}-canary", ingress, canary_slot, canary_annotations),
        ]

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        return routing.active_slot

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        return proportional_replicas(active_replicas, weight)

    def expected_share(self, weight: int, canary_ready: int, active_ready: int) -> float:
        return weight / 100


def mirror_target(owner: Owner, slot: Slot) -> str:
    """The in-cluster URL NGINX mirrors to: the slot Service, same path and query."""
    host = f"{owner.slot_name(slot)}.{owner.namespace}.svc.cluster.local"
    return f"http://{host}:{SERVICE_PORT}$request_uri"


def _other(slot: Slot) -> Slot:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def _ingress(
    owner: Owner, name: str, ingress: IngressTraffic, slot: Slot, annotations: dict[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": ingress.host,
                "http": {
                    "paths": [
                        {
                            "path": ingress.path,
                            "pathType": "Prefix",
                            "backend": {
                                "service": {
                                    "name": owner.slot_name(slot),
                                    "port": {"number": SERVICE_PORT},
                                }
                            },
                        }
                    ]
                },
            }
        ],
    }
    if ingress.class_name is not None:  # unset: the cluster's default IngressClass
        spec["ingressClassName"] = ingress.class_name
    if ingress.tls is not None:
        spec["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls.secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(owner, name, base_labels(owner), annotations or None),
        "spec": spec,
    }
