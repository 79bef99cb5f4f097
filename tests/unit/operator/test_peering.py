"""Where a replica stands among its peers: the pure rule on a peering status, the missing peering
object created (seeded with this replica), and what /healthz, /readyz and the gauges say."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from typing import Any

import httpx
import pytest

from modelfleet.operator.kube import HttpKubeClient
from modelfleet.operator.kube_credentials import Credentials
from modelfleet.operator.metrics import OperatorMetrics
from modelfleet.operator.peering import (
    Presence,
    Role,
    Standing,
    live_peers,
    serve_health,
    standing,
)

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
PEERINGS = "/apis/kopf.dev/v1/clusterkopfpeerings"


def _entry(priority: int, seconds_ago: float = 1, lifetime: int = 30) -> dict[str, Any]:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def _peering(**entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "modelfleet"}, "status": entries}


@pytest.mark.parametrize(
    ("peering", "role", "leader"),
    [
        (None, Role.WAITING, None),
        (_peering(), Role.WAITING, None),  # kopf's keep-alive has not written us (yet)
        (_peering(me=_entry(100, seconds_ago=31)), Role.WAITING, None),  # ours is stale
        (_peering(me=_entry(100)), Role.ACTING, None),
        (_peering(me=_entry(100), old=_entry(50)), Role.ACTING, None),
        (_peering(me=_entry(100), new=_entry(200)), Role.STANDBY, "new"),
        (_peering(me=_entry(100), a=_entry(200), b=_entry(300)), Role.STANDBY, "b"),
        (_peering(me=_entry(100), dead=_entry(200, seconds_ago=40)), Role.ACTING, None),
        (_peering(me=_entry(100), twin=_entry(100)), Role.WAITING, None),  # kopf pauses both
        (_peering(me=_entry(100), odd={"priority": 900}), Role.ACTING, None),  # not kopf's
    ],
)
def test_standing_follows_kopfs_rule(
    peering: dict[str, Any] | None, role: Role, leader: str | None
) -> None:
    found = standing(peering, "me", 100, NOW)
    assert (found.role, found.leader) == (role, leader)


def test_a_removed_entry_is_not_a_peer() -> None:
    status = {"me": _entry(1), "gone": None, "off": _entry(5, lifetime=0)}
    assert live_peers(status, NOW) == {"me": 1}


class FakePeeringApi:
    """Serves one cluster-scoped kind: GET and server-side apply (PATCH) of ClusterKopfPeerings."""

    def __init__(self, crd_installed: bool = True) -> None:
        self.crd_installed = crd_installed
        self.objects: dict[str, dict[str, Any]] = {}
        self.applied: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.removeprefix(PEERINGS + "/")
        if not self.crd_installed or not request.url.path.startswith(PEERINGS + "/"):
            return httpx.Response(404, json={"message": "the server could not find the resource"})
        if request.method == "GET":
            found = self.objects.get(name)
            return httpx.Response(200, json=found) if found else httpx.Response(404, json={})
        body = json.loads(request.content)
        assert request.headers["Content-Type"] == "application/apply-patch+yaml"
        self.applied.append(body)
        self.objects[name] = body
        return httpx.Response(200, json=body)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _presence(api: FakePeeringApi, clock: FakeClock, peering: str | None = "modelfleet") -> Any:
    credentials = Credentials("https://kube.invalid", ssl.create_default_context(), token="t")
    kube = HttpKubeClient(credentials, transport=httpx.MockTransport(api.handle))
    return Presence(
        kube,
        OperatorMetrics(),
        peering=peering,
        identity="me",
        priority=100,
        lifetime=6,
        clock=clock,
    )


def _gauge(presence: Presence, name: str, labels: dict[str, str] | None = None) -> float | None:
    return presence.metrics.registry.get_sample_value(name, labels or {})


def test_a_missing_peering_object_is_created_with_this_replica_in_it() -> None:
    api, clock = FakePeeringApi(), FakeClock()
    presence = _presence(api, clock)
    assert presence.current.role == Role.WAITING  # starting
    assert presence.live
    assert not presence.ready

    presence.update(asyncio.run(presence.look("modelfleet")))

    (created,) = api.applied
    assert created["kind"] == "ClusterKopfPeering"
    assert created["metadata"]["name"] == "modelfleet"
    assert created["status"]["me"]["priority"] == 100
    assert created["status"]["me"]["lifetime"] == 6
    assert presence.current.role == Role.ACTING
    assert presence.ready
    assert _gauge(presence, "modelfleet_operator_acting") == 1
    assert _gauge(presence, "modelfleet_operator_peering_state", {"state": "acting"}) == 1
    assert _gauge(presence, "modelfleet_operator_peering_state", {"state": "waiting"}) == 0


def test_without_the_peering_crd_the_replica_fails_liveness_after_the_grace() -> None:
    api, clock = FakePeeringApi(crd_installed=False), FakeClock()
    presence = _presence(api, clock)

    presence.update(asyncio.run(presence.look("modelfleet")))

    assert presence.current.role == Role.WAITING
    assert "CRD is not installed" in presence.current.reason
    assert presence.live  # within two lifetimes of the start
    clock.now += presence.grace
    presence.update(asyncio.run(presence.look("modelfleet")))
    assert not presence.live
    assert _gauge(presence, "modelfleet_operator_acting") == 0


def test_a_replica_that_starts_out_neither_says_so_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    presence = _presence(FakePeeringApi(), clock)  # "starting" is already waiting
    with caplog.at_level("INFO", logger="modelfleet.operator.peering"):
        presence.update(Standing(Role.WAITING, "twin has the same priority 100"))
        presence.update(Standing(Role.WAITING, "twin has the same priority 100"))
        clock.now += 60
        presence.update(Standing(Role.WAITING, "twin has the same priority 100"))
    said = [r.getMessage() for r in caplog.records if "neither acting" in r.getMessage()]
    assert len(said) == 2  # at once, then again a minute later; not at every look
    assert "same priority" in said[0]


def test_a_replica_standing_by_is_live_and_ready_but_does_not_act() -> None:
    clock = FakeClock()
    presence = _presence(FakePeeringApi(), clock)
    presence.update(Standing(Role.STANDBY, "other acts", "other"))
    clock.now += 10 * presence.grace
    assert presence.live
    assert presence.ready  # 2/2 READY: rollout status and GitOps health need it
    assert _gauge(presence, "modelfleet_operator_acting") == 0
    assert _gauge(presence, "modelfleet_operator_peering_state", {"state": "standby"}) == 1


def test_a_standalone_replica_acts_at_once() -> None:
    presence = _presence(FakePeeringApi(), FakeClock(), peering=None)
    assert presence.ready
    assert presence.live
    assert _gauge(presence, "modelfleet_operator_acting") == 1


def test_the_endpoints_answer_liveness_and_readiness() -> None:
    clock = FakeClock()
    presence = _presence(FakePeeringApi(), clock)

    async def probe() -> dict[str, tuple[int, dict[str, Any]]]:
        server = await serve_health(presence, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answers = {}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for label, standing_now in (
                    ("standby", Standing(Role.STANDBY, "other acts", "other")),
                    ("acting", Standing(Role.ACTING, "alone")),
                    ("waiting", Standing(Role.WAITING, "no peering")),
                ):
                    presence.update(standing_now)
                    if label == "waiting":
                        clock.now += presence.grace
                    for path in ("/healthz", "/readyz"):
                        response = await http.get(path)
                        answers[f"{label} {path}"] = (response.status_code, response.json())
                answers["unknown"] = ((await http.get("/metrics")).status_code, {})
        finally:
            server.close()
            await server.wait_closed()
        return answers

    answers = asyncio.run(probe())

    assert answers["standby /healthz"][0] == 200
    assert answers["standby /readyz"][0] == 200
    assert answers["standby /readyz"][1]["state"] == "standby"
    assert answers["standby /readyz"][1]["leader"] == "other"
    assert answers["acting /healthz"][0] == 200
    assert answers["acting /readyz"][0] == 200
    assert answers["waiting /healthz"][0] == 503
    assert answers["waiting /healthz"][1]["reason"] == "no peering"
    assert answers["waiting /readyz"][0] == 503
    assert answers["unknown"][0] == 404
