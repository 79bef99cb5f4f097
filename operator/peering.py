"""Where this replica stands among its peers (acting, standing by, or neither) and the health
endpoints that say so.

kopf decides who acts (kopf/_core/engines/peering.py): every replica keeps its own entry alive in
the ClusterKopfPeering's status, and kopf freezes a replica while a live peer with a higher
priority is listed there, or, the peering being mandatory, while the object does not exist. This
module creates the object when it is missing (an install or a GitOps sync may leave it out or
order it late), reads the status kopf writes to tell which of the three this replica is, and says
so: a log line at every change (a warning every minute while it is neither), the gauges
`modelfleet_operator_acting` and `modelfleet_operator_peering_state{state}`, and two endpoints:

- `/readyz` (readiness): 200 while acting or standing by, as for any operator with leader
  election: both replicas are doing their job, so a Deployment of two shows 2/2 Ready,
  `kubectl rollout status` finishes and Argo CD calls it Healthy (an acting-only readiness kept
  the standby 0/1 for ever: the rollout never completed and its progress deadline ran out).
  503 while it is neither. Which replica acts is in the body (`state`) and the gauges.
- `/healthz` (liveness): 200 while acting or standing by; 503 once the replica has been neither
  for two peering lifetimes (no peering object it can create, its own keep-alive stale so its
  peers count it dead, a peer with the same priority, the API server out of reach), so
  Kubernetes restarts it instead of letting it wait for ever. Served from the operator's event
  loop: a stalled loop does not answer at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from modelfleet.operator.crd import peering_object
from modelfleet.operator.kube import KubeClient, KubeError
from modelfleet.operator.metrics import OperatorMetrics

PEERING_API = "kopf.dev/v1"
PEERING_KIND = "ClusterKopfPeering"
WAITING_LOG_SECONDS = 60.0  # a replica that is neither says so again at this period
log = logging.getLogger("modelfleet.operator.peering")


class Role(enum.StrEnum):
    ACTING = "acting"
    STANDBY = "standby"
    WAITING = "waiting"  # neither: kopf keeps it frozen and no live peer acts in its place


@dataclass(frozen=True)
class Standing:
    role: Role
    reason: str
    leader: str | None = None  # the peer this replica stands by for


def own_identity() -> str:
    """The key of this replica in the peering status: POD_ID where set (as kopf reads it), else
    host and pid (in a pod, the host name is the pod's name)."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"


def start_priority() -> int:
    """A priority from the start time (ms): a newer replica, such as a rolling update's, takes over
    from an older one, and two replicas practically never tie."""
    return time.time_ns() // 1_000_000


def live_peers(status: Mapping[str, Any], now: dt.datetime) -> dict[str, int]:
    """identity → priority of the entries whose last keep-alive is younger than their lifetime."""
    peers = {}
    for identity, entry in status.items():
        try:
            seen = dt.datetime.fromisoformat(entry["lastseen"])
            if seen + dt.timedelta(seconds=int(entry.get("lifetime", 60))) > now:
                peers[identity] = int(entry.get("priority", 0))
        except (TypeError, KeyError, ValueError):
            continue  # not an entry kopf wrote (or one being deleted)
    return peers


def standing(
    peering: Mapping[str, Any] | None, identity: str, priority: int, now: dt.datetime
) -> Standing:
    """What kopf makes of this peering object for this replica (the rule of its peering engine)."""
    if peering is None:
        return Standing(Role.WAITING, "the ClusterKopfPeering does not exist")
    peers = live_peers(peering.get("status") or {}, now)
    if identity not in peers:
        return Standing(
            Role.WAITING, f"no live keep-alive of this replica ({identity}) in the peering status"
        )
    others = {peer: value for peer, value in peers.items() if peer != identity}
    higher = {peer: value for peer, value in others.items() if value > priority}
    if higher:
        leader = max(higher, key=lambda peer: higher[peer])
        return Standing(
            Role.STANDBY,
            f"{leader} acts (priority {higher[leader]} > {priority}); this replica takes over "
            "when it is gone",
            leader,
        )
    tied = sorted(peer for peer, value in others.items() if value == priority)
    if tied:
        return Standing(
            Role.WAITING, f"{', '.join(tied)} has the same priority {priority}: kopf pauses both"
        )
    return Standing(Role.ACTING, f"the live peer with the highest priority ({priority})")


def seeded_peering(
    name: str, identity: str, priority: int, lifetime: int, now: dt.datetime
) -> dict[str, Any]:
    """The peering object to create, with this replica's entry as kopf's keep-alive writes it, so
    kopf's first look at the new object already counts this replica."""
    entry = {"priority": priority, "lifetime": lifetime, "lastseen": now.isoformat()}
    return {**peering_object(name), "status": {identity: entry}}


class Presence:
    """This replica's standing, kept current by `run()`; read by the endpoints and the gauges."""

    def __init__(
        self,
        kube: KubeClient,
        metrics: OperatorMetrics,
        *,
        peering: str | None,
        identity: str,
        priority: int,
        lifetime: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.metrics = metrics
        self.peering = peering
        self.identity = identity
        self.priority = priority
        self.lifetime = lifetime
        self.interval = max(1.0, min(5.0, lifetime / 4))
        self.grace = 2.0 * lifetime
        self._clock = clock
        self.current = (
            Standing(Role.ACTING, "standalone: no peering")
            if peering is None
            else Standing(Role.WAITING, "starting")
        )
        self._changed_at = clock()
        self._logged_at: float | None = None  # None: nothing said yet
        self._publish()

    @property
    def live(self) -> bool:
        """Acting or standing by, or not yet neither for longer than the grace."""
        return self.current.role != Role.WAITING or self._clock() - self._changed_at < self.grace

    @property
    def ready(self) -> bool:
        """Acting, or standing by ready to take over within a peering lifetime."""
        return self.current.role != Role.WAITING

    def report(self) -> dict[str, Any]:
        return {
            "state": self.current.role.value,
            "reason": self.current.reason,
            "leader": self.current.leader,
            "identity": self.identity,
            "priority": self.priority,
            "peering": self.peering,
        }

    async def run(self) -> None:
        if self.peering is None:
            return
        log.info(
            "peering %r: this replica is %s with priority %d",
            self.peering,
            self.identity,
            self.priority,
        )
        while True:
            try:
                found = await self.look(self.peering)
            except Exception as error:  # never let the reporting die: say what broke
                log.exception("peering %r: could not look at it", self.peering)
                found = Standing(Role.WAITING, f"looking at the peering failed: {error!r}")
            self.update(found)
            await asyncio.sleep(self.interval)

    async def look(self, name: str) -> Standing:
        """Read the peering object (create it when missing) and say where this replica stands."""
        now = dt.datetime.now(dt.UTC)
        try:
            found = await self.kube.get(PEERING_API, PEERING_KIND, None, name)
            if found is None:
                found = await self._create(name, now)
        except KubeError as error:
            if error.status == 404:
                reason = f"the {PEERING_KIND} CRD is not installed (crds/kopf-peering.yaml)"
            else:
                reason = f"cannot read or create {PEERING_KIND} {name!r}: {error}"
            return Standing(Role.WAITING, reason)
        except httpx.TransportError as error:
            return Standing(Role.WAITING, f"the API server is out of reach: {error!r}")
        return standing(found, self.identity, self.priority, now)

    async def _create(self, name: str, now: dt.datetime) -> dict[str, Any]:
        # server-side apply: should another replica create it first, this adds our entry to it
        created = await self.kube.apply(
            seeded_peering(name, self.identity, self.priority, self.lifetime, now)
        )
        log.warning("peering %r did not exist: created it (kopf acts once it sees it)", name)
        return created

    def update(self, new: Standing) -> None:
        now = self._clock()
        changed = new.role != self.current.role or new.leader != self.current.leader
        if changed:
            self._changed_at = now  # "starting" counts as waiting: the grace runs from the start
        self.current = new
        self._publish()
        waiting_unsaid = new.role == Role.WAITING and (
            self._logged_at is None or now - self._logged_at >= WAITING_LOG_SECONDS
        )
        if changed or waiting_unsaid:
            self._logged_at = now
            self._log(new)

    def _log(self, new: Standing) -> None:
        if new.role == Role.ACTING:
            log.info("acting on peering %r: %s", self.peering, new.reason)
        elif new.role == Role.STANDBY:
            log.info("standing by on peering %r: %s", self.peering, new.reason)
        else:
            log.warning(
                "neither acting nor standing by on peering %r: %s (liveness fails after %.0f s)",
                self.peering,
                new.reason,
                self.grace,
            )

    def _publish(self) -> None:
        self.metrics.acting.set(1 if self.current.role == Role.ACTING else 0)
        for role in Role:
            self.metrics.peering_state.labels(role.value).set(int(role == self.current.role))


async def serve_health(presence: Presence, host: str, port: int) -> asyncio.Server:
    """`/healthz` (liveness) and `/readyz` (readiness) on `host:port`, answered from this loop."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers: nothing in them matters here
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            status, body = _route(presence, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a probe that went away
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


def _route(presence: Presence, path: str) -> tuple[int, bytes]:
    if path == "/healthz":
        return (200 if presence.live else 503), orjson.dumps(presence.report())
    if path == "/readyz":
        return (200 if presence.ready else 503), orjson.dumps(presence.report())
    return 404, orjson.dumps({"error": f"no such endpoint {path!r}: /healthz, /readyz"})
