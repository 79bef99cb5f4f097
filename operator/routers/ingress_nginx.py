"""NGINX Ingress: `<name>` to the active slot, `<name>-canary` with canary-weight annotations.

The canary Ingress exists only while the canary takes a live weight (its pods are Ready by
then): a proxy that ignores the canary annotations (Traefik's ingress-nginx provider) may route
the host to it, so an idle one pointing at an empty slot answers 503 to every client. Nor in the
shadow step (weight 0): the mirror rides on the main Ingress, and such a proxy would hand the
shadow canary's answers to users.

In the shadow step the main Ingress also mirrors every request to the canary slot's Service
(`mirror-target`, with the body); NGINX discards the mirror's answers. It cannot mirror a share,
which is why the CRD demands `rollout.shadow.percent: 100` with an Ingress.

A header route rides on the canary Ingress (`canary-by-header` and `-value`: NGINX sends a request
with that exact value to the canary whatever the weight, one without it by the weight), so with an
Ingress it is live from the first weight, not before: a canary Ingress at weight 0 is what the
paragraph above avoids.
"""

from __future__ import annotations

from typing import Any

from modelfleet.operator.api import IngressTraffic, Slot, TrafficSpec
from modelfleet.operator.builders.common import SERVICE_PORT, Owner, base_labels, metadata
from modelfleet.operator.routers import Routing, proportional_replicas

CANARY = "nginx.ingress.kubernetes.io/canary"
CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
CANARY_WEIGHT_TOTAL = "nginx.ingress.kubernetes.io/canary-weight-total"
CANARY_BY_HEADER = "nginx.ingress.kubernetes.io/canary-by-header"
CANARY_BY_HEADER_VALUE = "nginx.ingress.kubernetes.io/canary-by-header-value"
MIRROR_TARGET = "nginx.ingress.kubernetes.io/mirror-target"
MIRROR_REQUEST_BODY = "nginx.ingress.kubernetes.io/mirror-request-body"


class IngressNginxRouter:
    name = "ingress-nginx"
    managed_kinds: tuple[tuple[str, str], ...] = (("networking.k8s.io/v1", "Ingress"),)
    splits_by_weight = True

    def build(self, owner: Owner, traffic: TrafficSpec, routing: Routing) -> list[dict[str, Any]]:
        assert traffic.ingress is not None
        ingress = traffic.ingress
        main_annotations = dict(ingress.annotations)
        if routing.canary_slot is not None and routing.mirror_percent > 0:
            main_annotations[MIRROR_TARGET] = mirror_target(owner, routing.canary_slot)
            main_annotations[MIRROR_REQUEST_BODY] = "on"
        objects = [_ingress(owner, owner.name, ingress, routing.active_slot, main_annotations)]
        if routing.canary_slot is not None and routing.canary_weight > 0:
            canary_annotations = {
                **ingress.annotations,
                CANARY: "true",
                CANARY_WEIGHT: str(routing.canary_weight),
                CANARY_WEIGHT_TOTAL: "100",
            }
            if self.header_route_live(routing):
                assert routing.header_route is not None
                canary_annotations[CANARY_BY_HEADER] = routing.header_route.name
                canary_annotations[CANARY_BY_HEADER_VALUE] = routing.header_route.value
            name = canary_ingress_name(owner)
            objects.append(_ingress(owner, name, ingress, routing.canary_slot, canary_annotations))
        return objects

    def stable_selector_slot(self, routing: Routing) -> Slot | None:
        return routing.active_slot

    def header_route_live(self, routing: Routing) -> bool:
        live_weight = routing.canary_slot is not None and routing.canary_weight > 0
        return live_weight and routing.header_route is not None

    def canary_replicas(self, active_replicas: int, weight: int) -> int:
        return proportional_replicas(active_replicas, weight)

    def expected_share(self, weight: int, canary_ready: int, active_ready: int) -> float:
        return weight / 100


def mirror_target(owner: Owner, slot: Slot) -> str:
    """The in-cluster URL NGINX mirrors to: the slot Service, same path and query."""
    host = f"{owner.slot_name(slot)}.{owner.namespace}.svc.cluster.local"
    return f"http://{host}:{SERVICE_PORT}$request_uri"


def canary_ingress_name(owner: Owner) -> str:
    return f"{owner.name}-canary"


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
