"""What a Gateway can serve: its GatewayClass's `status.supportedFeatures`, read before a mirror.

A Gateway API implementation may accept an HTTPRoute and still not serve all of it: Traefik keeps a
route with a `RequestMirror` filter `Accepted=True` and answers every request on it with 500. The
class publishes what it supports, so before a shadow step the operator follows each parentRef to
its Gateway, the Gateway to its class, and refuses the mirror (`mirror_refusal` returns why) unless
every class lists `HTTPRouteRequestMirror`, and `HTTPRouteRequestPercentageMirror` for a share below
100 %. A class that publishes no features, a Gateway or class that cannot be read: refused too,
since nothing says the mirror would be served.

A header route (`rollout.headerRoute`) needs exact header matching, core in HTTPRoute: a class
supports it when it supports HTTPRoute at all, so `header_refusal` refuses only a class that
publishes its features without `HTTPRoute`; one that publishes none, or cannot be read, is not
refused (nothing says it lacks a core feature, and the weighted route would fail with it anyway).
Traefik v3.6 lists `HTTPRoute`.

Timeouts and retry (`traffic.gateway.timeouts`, `retry`) are extended HTTPRoute features:
`policy_refusal` refuses them unless every class lists `HTTPRouteRequestTimeout` (for
`timeouts.request`), `HTTPRouteBackendTimeout` (`timeouts.backendRequest`) and `HTTPRouteRetry`
(`retry`, still in the experimental channel in Gateway API v1.4); a class that publishes nothing or
cannot be read is refused, as for the mirror. Traefik v3.6 lists none of the three and ignores the
fields: a route with `timeouts.request: 1s` answers a 2 s request with 200. The installed HTTPRoute
CRD must declare the fields too: the API server refuses a server-side apply of a field its schema
lacks (the whole route, not the field), and the standard channel of v1.4 has no `retry`.

The classes' answers are kept `ttl_s` (they change rarely; many ModelDeployments share a Gateway);
a spec change reads them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from modelfleet.operator.api import GatewayTraffic
from modelfleet.operator.kube import KubeClient, KubeError

GATEWAY = ("gateway.networking.k8s.io/v1", "Gateway")
GATEWAY_CLASS = ("gateway.networking.k8s.io/v1", "GatewayClass")
MIRROR = "HTTPRouteRequestMirror"
PERCENTAGE_MIRROR = "HTTPRouteRequestPercentageMirror"
HTTP_ROUTE = "HTTPRoute"  # core support: exact path and header matches, weighted backendRefs
REQUEST_TIMEOUT = "HTTPRouteRequestTimeout"
BACKEND_TIMEOUT = "HTTPRouteBackendTimeout"
RETRY = "HTTPRouteRetry"
FEATURES_TTL_SECONDS = 60.0
ROUTE_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
ROUTE_CRD_NAME = "httproutes.gateway.networking.k8s.io"


class UnknownFeaturesError(Exception):
    """The class's features cannot be told (its Gateway or class is absent or unreadable)."""


def required_features(mirror_percent: int) -> tuple[str, ...]:
    """The Gateway API features a mirror of `mirror_percent` % of the requests needs."""
    return (MIRROR,) if mirror_percent >= 100 else (MIRROR, PERCENTAGE_MIRROR)


def policy_features(gateway: GatewayTraffic) -> tuple[str, ...]:
    """The Gateway API features the route's timeouts and retry need (none when neither is set)."""
    timeouts = gateway.timeouts
    wanted = (
        (REQUEST_TIMEOUT, timeouts is not None and timeouts.request is not None),
        (BACKEND_TIMEOUT, timeouts is not None and timeouts.backend_request is not None),
        (RETRY, gateway.retry is not None),
    )
    return tuple(feature for feature, needed in wanted if needed)


def policy_fields(gateway: GatewayTraffic) -> tuple[str, ...]:
    """The HTTPRoute rule fields the spec sets: `timeouts`, `retry`, both or none."""
    fields = (("timeouts", gateway.timeouts), ("retry", gateway.retry))
    return tuple(name for name, value in fields if value is not None)


def declared_rule_fields(crd: Mapping[str, Any]) -> frozenset[str]:
    """The fields an HTTPRoute rule may carry in the v1 schema of this CRD."""
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("name") != "v1":
            continue
        node: Any = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        for key in ("spec", "rules"):
            node = (node.get("properties") or {}).get(key) or {}
        return frozenset((node.get("items") or {}).get("properties") or {})
    return frozenset()


def supported_features(gateway_class: Mapping[str, Any]) -> frozenset[str] | None:
    """`status.supportedFeatures` by name: objects `{name: …}` (v1.4) or plain strings (older).

    None when the class publishes no list at all.
    """
    listed = (gateway_class.get("status") or {}).get("supportedFeatures")
    if not isinstance(listed, list):
        return None
    names = (item.get("name") if isinstance(item, Mapping) else item for item in listed)
    return frozenset(name for name in names if isinstance(name, str))


def judge_features(
    class_name: str,
    features: frozenset[str] | None,
    required: tuple[str, ...],
    what: str = "shadow",
    unpublished_refused: bool = True,
) -> str | None:
    """Why `what` (shadow, header route) on this class is refused, or None when it is served.

    `unpublished_refused`: whether a class that publishes no features is refused too.
    """
    if features is None:
        if not unpublished_refused:
            return None
        return f"GatewayClass {class_name} publishes no supportedFeatures: {what} refused"
    missing = [feature for feature in required if feature not in features]
    if not missing:
        return None
    return (
        f"GatewayClass {class_name} does not support {', '.join(missing)} "
        f"(status.supportedFeatures): {what} refused"
    )


class GatewayFeatures:
    """Reads and keeps (for `ttl_s`) which class each Gateway has and what each class supports."""

    def __init__(
        self, ttl_s: float = FEATURES_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._classes: dict[str, tuple[float, frozenset[str] | None]] = {}
        self._gateways: dict[tuple[str, str], tuple[float, str]] = {}
        self._route_fields: tuple[float, frozenset[str]] | None = None

    async def mirror_refusal(
        self,
        kube: KubeClient,
        namespace: str,
        gateway: GatewayTraffic,
        mirror_percent: int,
        *,
        fresh: bool = False,
    ) -> str | None:
        """Why a mirror of `mirror_percent` % through these parentRefs is refused, or None.

        `fresh`: read again even what is kept (the spec changed).
        """
        required = required_features(mirror_percent)
        return await self._refusal(kube, namespace, gateway, required, "shadow", True, fresh)

    async def header_refusal(
        self, kube: KubeClient, namespace: str, gateway: GatewayTraffic, *, fresh: bool = False
    ) -> str | None:
        """Why a header route through these parentRefs is refused (a class that lists its
        features without HTTPRoute), or None."""
        return await self._refusal(
            kube, namespace, gateway, (HTTP_ROUTE,), "header route", False, fresh
        )

    async def policy_refusal(
        self, kube: KubeClient, namespace: str, gateway: GatewayTraffic, *, fresh: bool = False
    ) -> str | None:
        """Why the route's timeouts and retry are refused (a class without one of their features,
        publishing none, or unreadable), or None (also when neither is set)."""
        required = policy_features(gateway)
        if not required:
            return None
        what = " and ".join(policy_fields(gateway))
        refusal = await self._refusal(kube, namespace, gateway, required, what, True, fresh)
        if refusal is not None:
            return refusal
        try:
            declared = await self._rule_fields(kube, fresh)
        except UnknownFeaturesError as error:
            return f"{error}: {what} refused"
        missing = ", ".join(f"rules[].{f}" for f in policy_fields(gateway) if f not in declared)
        if missing:
            return (
                f"CustomResourceDefinition {ROUTE_CRD_NAME} declares no {missing}: {what} refused"
            )
        return None

    async def _refusal(
        self,
        kube: KubeClient,
        namespace: str,
        gateway: GatewayTraffic,
        required: tuple[str, ...],
        what: str,
        strict: bool,
        fresh: bool,
    ) -> str | None:
        """The first parentRef's class that cannot serve `required`; `strict`: a class that cannot
        be read or publishes nothing counts as one."""
        for ref in gateway.parent_refs:
            ref_namespace = ref.namespace or namespace
            try:
                class_name = await self._class_of(kube, ref_namespace, ref.name, fresh)
                features = await self._features_of(kube, class_name, fresh)
            except UnknownFeaturesError as error:
                if not strict:
                    continue
                return f"{error}: {what} refused"
            refusal = judge_features(class_name, features, required, what, strict)
            if refusal is not None:
                return refusal
        return None

    def _kept(self, entry: tuple[float, Any] | None, fresh: bool) -> bool:
        return entry is not None and not fresh and self._clock() - entry[0] < self._ttl

    async def _class_of(self, kube: KubeClient, namespace: str, name: str, fresh: bool) -> str:
        key = (namespace, name)
        entry = self._gateways.get(key)
        if entry is not None and self._kept(entry, fresh):
            return entry[1]
        found = await _read(kube, GATEWAY, namespace, name, f"Gateway {namespace}/{name}")
        class_name = (found.get("spec") or {}).get("gatewayClassName")
        if not isinstance(class_name, str) or not class_name:
            raise UnknownFeaturesError(f"Gateway {namespace}/{name} names no gatewayClassName")
        self._gateways[key] = (self._clock(), class_name)
        return class_name

    async def _rule_fields(self, kube: KubeClient, fresh: bool) -> frozenset[str]:
        entry = self._route_fields
        if entry is not None and self._kept(entry, fresh):
            return entry[1]
        found = await _read(kube, ROUTE_CRD, None, ROUTE_CRD_NAME, f"CRD {ROUTE_CRD_NAME}")
        declared = declared_rule_fields(found)
        self._route_fields = (self._clock(), declared)
        return declared

    async def _features_of(
        self, kube: KubeClient, class_name: str, fresh: bool
    ) -> frozenset[str] | None:
        entry = self._classes.get(class_name)
        if entry is not None and self._kept(entry, fresh):
            return entry[1]
        found = await _read(kube, GATEWAY_CLASS, None, class_name, f"GatewayClass {class_name}")
        features = supported_features(found)
        self._classes[class_name] = (self._clock(), features)
        return features


async def _read(
    kube: KubeClient, kind: tuple[str, str], namespace: str | None, name: str, what: str
) -> dict[str, Any]:
    try:
        found = await kube.get(*kind, namespace, name)
    except KubeError as error:  # e.g. 403: a ClusterRole without gateways/gatewayclasses
        raise UnknownFeaturesError(f"{what} cannot be read ({error})") from error
    if found is None:
        raise UnknownFeaturesError(f"{what} not found")
    return found
