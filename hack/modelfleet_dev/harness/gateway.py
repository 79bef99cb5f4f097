"""A Gateway and its GatewayClass for the kwok tier, with the class's `status.supportedFeatures`.

No Gateway controller runs on the kwok tier (the traffic driver plays the proxy), but the operator
reads the parent Gateway's class before a shadow step and refuses a mirror the class does not list.
So the scenarios create what an implementation would publish: a GatewayClass whose status (a
subresource, written through /status as a controller does) lists the features, and a Gateway of
that class. `MIRRORING` is what a class that serves the shadow step lists; Traefik v3.6 lists
neither mirror feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
CONTROLLER = "modelfleet.io/kwok-tier"  # no controller acts on it: the driver is the data plane
BASE_FEATURES = ("Gateway", "HTTPRoute")
MIRRORING = (*BASE_FEATURES, "HTTPRouteRequestMirror", "HTTPRouteRequestPercentageMirror")


def install_gateway(
    api_client: Any,
    namespace: str,
    name: str,
    class_name: str,
    features: Sequence[str] | None = MIRRORING,
) -> None:
    """Gateway `namespace/name` of class `class_name`, whose status lists `features` (sorted, as the
    API asks); None leaves the class without a supportedFeatures list. Idempotent."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api_client)
    gateway_class = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GatewayClass",
        "metadata": {"name": class_name},
        "spec": {"controllerName": CONTROLLER},
    }
    try:
        custom.create_cluster_custom_object(GROUP, VERSION, "gatewayclasses", gateway_class)
    except ApiException as error:
        if error.status != 409:
            raise
    listed = None if features is None else [{"name": f} for f in sorted(set(features))]
    # a JSON merge patch replaces the whole list (null removes it): the class lists exactly these
    custom.patch_cluster_custom_object_status(
        GROUP, VERSION, "gatewayclasses", class_name, {"status": {"supportedFeatures": listed}}
    )
    gateway = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "gateways", gateway)
    except ApiException as error:
        if error.status != 409:
            raise
