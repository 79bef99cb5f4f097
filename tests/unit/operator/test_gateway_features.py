"""What a Gateway's class can serve: supportedFeatures read, judged, kept briefly, read on a change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelfleet.operator.api import GatewayTraffic
from modelfleet.operator.gateway_features import (
    MIRROR,
    PERCENTAGE_MIRROR,
    GatewayFeatures,
    judge_features,
    required_features,
    supported_features,
)
from modelfleet.operator.kube import KubeError

# what Traefik v3.6 publishes (REAL_NODE.md): no mirror among them
TRAEFIK = [{"name": "Gateway"}, {"name": "HTTPRoute"}, {"name": "HTTPRouteHostRewrite"}]
MIRRORING = [*TRAEFIK, {"name": MIRROR}, {"name": PERCENTAGE_MIRROR}]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"supportedFeatures": MIRRORING}, {f["name"] for f in MIRRORING}),
        ({"supportedFeatures": ["Gateway", MIRROR]}, {"Gateway", MIRROR}),  # before v1.4
        ({"supportedFeatures": []}, set()),
        ({"conditions": []}, None),
        (None, None),
    ],
    ids=["v1.4-objects", "strings", "empty", "absent", "no-status"],
)
def test_supported_features_reads_objects_or_strings(
    status: dict[str, Any] | None, expected: set[str] | None
) -> None:
    found = supported_features({"status": status} if status is not None else {})
    assert found == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    ("percent", "features", "refusal"),
    [
        (100, {MIRROR}, None),
        (20, {MIRROR, PERCENTAGE_MIRROR}, None),
        (
            100,
            {"HTTPRoute"},
            "GatewayClass traefik does not support HTTPRouteRequestMirror "
            "(status.supportedFeatures): shadow refused",
        ),
        (
            20,
            {MIRROR},
            "GatewayClass traefik does not support HTTPRouteRequestPercentageMirror "
            "(status.supportedFeatures): shadow refused",
        ),
        (100, None, "GatewayClass traefik publishes no supportedFeatures: shadow refused"),
    ],
)
def test_a_mirror_needs_the_features_for_its_share(
    percent: int, features: set[str] | None, refusal: str | None
) -> None:
    known = None if features is None else frozenset(features)
    assert judge_features("traefik", known, required_features(percent)) == refusal


class Kube:
    """A KubeClient's `get` over a dict, counting reads."""

    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.reads = 0
        self.error: KubeError | None = None

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.objects.get((kind, namespace or "", name))


def cluster(features: list[Any] | None) -> Kube:
    status = {} if features is None else {"supportedFeatures": features}
    return Kube(
        {
            ("Gateway", "infra", "public"): {"spec": {"gatewayClassName": "traefik"}},
            ("GatewayClass", "", "traefik"): {"status": status},
        }
    )


ROUTE = GatewayTraffic.model_validate({"parentRefs": [{"name": "public", "namespace": "infra"}]})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def refusal(
    features: GatewayFeatures, kube: Kube, percent: int = 100, fresh: bool = False
) -> str | None:
    return asyncio.run(
        features.mirror_refusal(kube, "ml", ROUTE, percent, fresh=fresh)  # type: ignore[arg-type]
    )


def test_the_parent_gateways_class_decides() -> None:
    assert refusal(GatewayFeatures(), cluster(MIRRORING)) is None
    assert refusal(GatewayFeatures(), cluster(TRAEFIK)) == (
        "GatewayClass traefik does not support HTTPRouteRequestMirror "
        "(status.supportedFeatures): shadow refused"
    )


def test_every_parent_must_support_the_mirror() -> None:
    kube = cluster(MIRRORING)
    kube.objects[("Gateway", "ml", "internal")] = {"spec": {"gatewayClassName": "other"}}
    kube.objects[("GatewayClass", "", "other")] = {"status": {"supportedFeatures": TRAEFIK}}
    both = GatewayTraffic.model_validate(
        {"parentRefs": [{"name": "public", "namespace": "infra"}, {"name": "internal"}]}
    )
    found = asyncio.run(GatewayFeatures().mirror_refusal(kube, "ml", both, 100))  # type: ignore[arg-type]
    assert found is not None
    assert found.startswith("GatewayClass other does not support")


@pytest.mark.parametrize(
    ("objects", "error", "words"),
    [
        ({}, None, "Gateway infra/public not found: shadow refused"),
        (
            {("Gateway", "infra", "public"): {"spec": {"gatewayClassName": "gone"}}},
            None,
            "GatewayClass gone not found: shadow refused",
        ),
        ({("Gateway", "infra", "public"): {"spec": {}}}, None, "names no gatewayClassName"),
        ({}, KubeError(403, "forbidden"), "Gateway infra/public cannot be read (403: forbidden)"),
    ],
    ids=["no-gateway", "no-class", "no-class-name", "forbidden"],
)
def test_what_cannot_be_read_is_refused_and_named(
    objects: dict[tuple[str, str, str], dict[str, Any]], error: KubeError | None, words: str
) -> None:
    kube = Kube(objects)
    kube.error = error
    found = refusal(GatewayFeatures(), kube)
    assert found is not None
    assert words in found


def test_answers_are_kept_briefly_and_read_again_on_a_spec_change() -> None:
    clock = Clock()
    features = GatewayFeatures(ttl_s=60, clock=clock)
    kube = cluster(TRAEFIK)
    assert refusal(features, kube) is not None
    assert kube.reads == 2  # the Gateway, then its class
    kube.objects[("GatewayClass", "", "traefik")]["status"]["supportedFeatures"] = MIRRORING
    clock.now = 30
    assert refusal(features, kube) is not None  # kept: no read
    assert kube.reads == 2
    assert refusal(features, kube, fresh=True) is None  # the spec changed: read again
    assert kube.reads == 4
    kube.objects[("GatewayClass", "", "traefik")]["status"]["supportedFeatures"] = TRAEFIK
    clock.now = 100
    assert refusal(features, kube) is not None  # expired: read again


def header_refusal(kube: Kube) -> str | None:
    return asyncio.run(GatewayFeatures().header_refusal(kube, "ml", ROUTE))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("features", "refusal"),
    [
        (TRAEFIK, None),  # Traefik lists HTTPRoute: exact header matches are core in it
        (None, None),  # publishes nothing: nothing says it lacks a core feature
        (
            [{"name": "Gateway"}, {"name": "TLSRoute"}],
            "GatewayClass traefik does not support HTTPRoute (status.supportedFeatures): "
            "header route refused",
        ),
    ],
    ids=["traefik", "unpublished", "no-httproute"],
)
def test_a_header_route_needs_a_class_that_lists_httproute_when_it_lists_any(
    features: list[Any] | None, refusal: str | None
) -> None:
    assert header_refusal(cluster(features)) == refusal


def test_a_header_route_is_not_refused_for_what_cannot_be_read() -> None:
    # the mirror is refused then; the header route is core, so only a listed lack refuses it
    kube = Kube({})
    kube.error = KubeError(403, "forbidden")
    assert header_refusal(kube) is None
    assert header_refusal(Kube({})) is None
