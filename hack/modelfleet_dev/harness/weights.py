"""Where a request goes: live router objects → backend Services with weights → Ready pods.

Pure functions over the objects as the API server returns them (camelCase dicts), so the traffic
driver re-reads them continuously and the logic is unit-tested without a cluster:

- Gateway API: HTTPRoute `<name>` backendRefs with their weights (the first rule).
- NGINX Ingress: `<name>` sends everything its backend does not give to the canary Ingress
  `<name>-canary` (annotations `canary: "true"`, `canary-weight`, `canary-weight-total`).
- Neither: the Service `<name>` (replica ratio: each Ready pod it selects gets an equal share).

A backend Service's share is split equally among the Ready, non-terminating pods it selects that
carry a local address. A share whose Service has no such pod is kept as "no endpoint": a real proxy
answers it with 503, and so does the driver (traffic sent to pods that are not ready is a defect).

Mirrors (the shadow step) are endpoints with `mirror=True`: a copy of that share of the requests goes
there and its answer reaches no user. Read from the first rule's `RequestMirror` filter (`percent`,
or `fraction`, or neither = 100 %) and from NGINX's `mirror-target` annotation on the main Ingress
(always every request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LOCAL_ADDRESS = "modelfleet.io/local-address"
SLOT_LABEL = "modelfleet.io/slot"
REVISION_LABEL = "modelfleet.io/revision"
NGINX = "nginx.ingress.kubernetes.io/"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Backend:
    service: str
    weight: float


@dataclass(frozen=True)
class Endpoint:
    """One place a share of traffic goes; address None means no ready endpoint (answered 503)."""

    address: str | None
    slot: str
    revision: str
    share: float
    mirror: bool = False  # a copy of this share goes here; the answer reaches no user


def backends_from_httproute(route: Obj) -> list[Backend]:
    """The first rule's backendRefs (a missing weight is 1, as the Gateway API says)."""
    rules = route.get("spec", {}).get("rules") or [{}]
    return [
        Backend(ref["name"], float(ref.get("weight", 1)))
        for ref in rules[0].get("backendRefs") or []
        if ref.get("kind", "Service") == "Service"
    ]


@dataclass(frozen=True)
class RetryPolicy:
    """A gateway's retry of one request: up to `attempts` more tries on an answer in `codes`."""

    attempts: int
    codes: frozenset[int]


def retry_from_httproute(route: Obj) -> RetryPolicy | None:
    """The first rule's `retry` (attempts unset: 1, as many implementations default)."""
    rules = route.get("spec", {}).get("rules") or [{}]
    retry = rules[0].get("retry")
    if retry is None:
        return None
    return RetryPolicy(int(retry.get("attempts", 1)), frozenset(retry.get("codes") or ()))


def mirrors_from_httproute(route: Obj) -> list[Backend]:
    """The first rule's RequestMirror filters, each with the share of requests it copies (%)."""
    rules = route.get("spec", {}).get("rules") or [{}]
    found: list[Backend] = []
    for mirror_filter in rules[0].get("filters") or []:
        mirror = mirror_filter.get("requestMirror") or {}
        ref = mirror.get("backendRef") or {}
        if mirror_filter.get("type") != "RequestMirror" or ref.get("kind", "Service") != "Service":
            continue
        if "percent" in mirror:
            percent = float(mirror["percent"])
        elif "fraction" in mirror:
            fraction = mirror["fraction"]
            percent = 100 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
        else:
            percent = 100.0
        found.append(Backend(ref["name"], percent))
    return found


def mirrors_from_ingress(stable: Obj) -> list[Backend]:
    """NGINX `mirror-target: http://<service>.<namespace>.svc…:<port>$request_uri` copies all."""
    notes = stable.get("metadata", {}).get("annotations") or {}
    target = notes.get(NGINX + "mirror-target")
    if not target:
        return []
    host = target.split("://", 1)[-1].split("/", 1)[0].split("$", 1)[0]
    return [Backend(host.split(":", 1)[0].split(".", 1)[0], 100.0)]


def _ingress_service(ingress: Obj) -> str | None:
    spec = ingress.get("spec", {})
    default = spec.get("defaultBackend", {}).get("service", {}).get("name")
    for rule in spec.get("rules") or []:
        for path in rule.get("http", {}).get("paths") or []:
            name = path.get("backend", {}).get("service", {}).get("name")
            if name:
                return str(name)
    return str(default) if default else None


def backends_from_ingresses(stable: Obj, canary: Obj | None) -> list[Backend]:
    """NGINX canary semantics: the canary Ingress takes canary-weight / canary-weight-total."""
    stable_service = _ingress_service(stable)
    backends: list[Backend] = []
    share = 0.0
    if canary is not None:
        notes = canary.get("metadata", {}).get("annotations") or {}
        canary_service = _ingress_service(canary)
        if notes.get(NGINX + "canary") == "true" and canary_service:
            total = float(notes.get(NGINX + "canary-weight-total", 100))
            share = min(1.0, float(notes.get(NGINX + "canary-weight", 0)) / total)
            backends.append(Backend(canary_service, share * 100))
    if stable_service:
        backends.insert(0, Backend(stable_service, (1 - share) * 100))
    return backends


def pod_is_ready(pod: Obj) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def selects(selector: Mapping[str, str], pod: Obj) -> bool:
    labels = pod.get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def endpoints(
    backends: Sequence[Backend], services: Mapping[str, Obj], pods: Sequence[Obj]
) -> list[Endpoint]:
    """Every endpoint with its share of traffic (shares sum to 1 when any backend has weight)."""
    total = sum(backend.weight for backend in backends if backend.weight > 0)
    found: list[Endpoint] = []
    for backend in backends:
        if backend.weight <= 0 or total <= 0:
            continue
        share = backend.weight / total
        selector = services.get(backend.service, {}).get("spec", {}).get("selector") or {}
        ready = [
            pod
            for pod in pods
            if selects(selector, pod)
            and pod_is_ready(pod)
            and (pod["metadata"].get("annotations") or {}).get(LOCAL_ADDRESS)
        ]
        if not ready:
            found.append(Endpoint(None, selector.get(SLOT_LABEL, "none"), "none", share))
            continue
        for pod in ready:
            labels = pod["metadata"].get("labels") or {}
            found.append(
                Endpoint(
                    pod["metadata"]["annotations"][LOCAL_ADDRESS],
                    labels.get(SLOT_LABEL, "unknown"),
                    labels.get(REVISION_LABEL, "unknown"),
                    share / len(ready),
                )
            )
    return found


def _ready_pods(selector: Mapping[str, str], pods: Sequence[Obj]) -> list[Obj]:
    return [
        pod
        for pod in pods
        if selects(selector, pod)
        and pod_is_ready(pod)
        and (pod["metadata"].get("annotations") or {}).get(LOCAL_ADDRESS)
    ]


def mirror_endpoints(
    mirrors: Sequence[Backend], services: Mapping[str, Obj], pods: Sequence[Obj]
) -> list[Endpoint]:
    """Where copies go: each mirror's share (of all requests) split over its Ready pods."""
    found: list[Endpoint] = []
    for mirror in mirrors:
        share = min(mirror.weight, 100.0) / 100
        if share <= 0:
            continue
        selector = services.get(mirror.service, {}).get("spec", {}).get("selector") or {}
        ready = _ready_pods(selector, pods)
        if not ready:
            slot = selector.get(SLOT_LABEL, "none")
            found.append(Endpoint(None, slot, "none", share, mirror=True))
            continue
        for pod in ready:
            labels = pod["metadata"].get("labels") or {}
            address = pod["metadata"]["annotations"][LOCAL_ADDRESS]
            slot, revision = (
                labels.get(SLOT_LABEL, "unknown"),
                labels.get(REVISION_LABEL, "unknown"),
            )
            found.append(Endpoint(address, slot, revision, share / len(ready), mirror=True))
    return found


def slot_shares(found: Sequence[Endpoint]) -> dict[str, float]:
    """Traffic share per slot, rounded to 0.1 %: what the driver records as the live weights
    (mirrored copies are not live traffic: see `mirror_shares`)."""
    shares: dict[str, float] = {}
    for endpoint in found:
        if endpoint.mirror:
            continue
        shares[endpoint.slot] = shares.get(endpoint.slot, 0.0) + endpoint.share
    return {slot: round(share * 100, 1) for slot, share in sorted(shares.items())}


def mirror_shares(found: Sequence[Endpoint]) -> dict[str, float]:
    """Share of requests copied to each slot, rounded to 0.1 % (empty when nothing is mirrored)."""
    shares: dict[str, float] = {}
    for endpoint in found:
        if endpoint.mirror:
            shares[endpoint.slot] = shares.get(endpoint.slot, 0.0) + endpoint.share
    return {slot: round(share * 100, 1) for slot, share in sorted(shares.items())}
