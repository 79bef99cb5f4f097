"""The Ingress router names no IngressClass unless told (ingress-nginx is retired: no silent
`nginx`), and the reference says which controllers honour which NGINX annotation."""

from __future__ import annotations

import pytest

from modelfleet.operator.api import TrafficSpec
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.crd import build_crd
from modelfleet.operator.reference import render_reference
from modelfleet.operator.routers import Routing
from modelfleet.operator.routers.ingress_nginx import IngressNginxRouter


@pytest.mark.parametrize("class_name", [None, "traefik", "nginx"])
def test_the_ingress_class_is_the_one_asked_for_or_the_clusters_default(
    owner: Owner, class_name: str | None
) -> None:
    ingress = {"host": "fraud.example.org"} | ({"className": class_name} if class_name else {})
    traffic = TrafficSpec.model_validate({"ingress": ingress})
    for obj in IngressNginxRouter().build(owner, traffic, Routing("blue", "green", 10)):
        assert obj["spec"].get("ingressClassName") == class_name, obj["metadata"]["name"]


def test_the_crd_gives_class_name_no_default() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    traffic = schema["properties"]["spec"]["properties"]["traffic"]["properties"]
    assert "default" not in traffic["ingress"]["properties"]["className"]
    assert list(traffic) == ["gateway", "ingress"]  # the preferred router first


def test_the_reference_says_which_controller_honours_which_annotation() -> None:
    reference = render_reference()
    routers = reference[reference.index("## Traffic routers") : reference.index("## status")]
    rows = {
        line.split("|")[1].strip(): line for line in routers.splitlines() if "| served |" in line
    }
    assert "honoured | honoured" in rows["ingress-nginx controller"]
    assert "ignored" in rows["Traefik v3.6, Kubernetes Ingress NGINX provider"]
