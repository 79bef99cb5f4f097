"""Applying to the world: the children a reconcile wants (server-side apply, skipped while this
process applied the same content recently), deletions, the status (a merge patch of our own fields,
only when they changed) and Events.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from modelfleet.operator.api import API_VERSION, KIND, ModelDeploymentStatus, as_json
from modelfleet.operator.builders.common import Owner
from modelfleet.operator.desired import DesiredState
from modelfleet.operator.kube import KubeClient, merge_patch
from modelfleet.operator.livecache import LiveDeployments
from modelfleet.operator.rollout.types import Event


class AppliedCache:
    """What this process last applied per child, so an unchanged child costs no request.

    An entry older than `max_age` is applied again, so drift made by someone else is corrected
    within that time (a slot Deployment's drift sooner: the watch on it forgets its entry). Only
    a digest of each child is kept, not the child, with the uid of the ModelDeployment it was
    applied for, so that a deleted owner's entries go with it (`forget_owner`).
    """

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._entries: dict[tuple[str, ...], tuple[bytes, float, str]] = {}

    @staticmethod
    def key(obj: Mapping[str, Any]) -> tuple[str, ...]:
        meta = obj["metadata"]
        return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def fresh(self, key: tuple[str, ...], content: bytes) -> bool:
        entry = self._entries.get(key)
        return (
            entry is not None
            and entry[0] == _digest(content)
            and time.monotonic() - entry[1] < self.max_age
        )

    def remember(self, key: tuple[str, ...], content: bytes, owner_uid: str) -> None:
        self._entries[key] = (_digest(content), time.monotonic(), owner_uid)

    def forget(self, key: tuple[str, ...]) -> None:
        self._entries.pop(key, None)

    def forget_owner(self, owner_uid: str) -> None:
        """Drop the entries of one ModelDeployment's children, by its uid (not by a name prefix:
        `fraud-v2-blue` is no child of `fraud`), once this process stops reconciling it."""
        for key in [key for key, entry in self._entries.items() if entry[2] == owner_uid]:
            del self._entries[key]


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=16).digest()


async def apply_desired(
    kube: KubeClient,
    applied: AppliedCache | None,
    deployments: LiveDeployments | None,
    owner: Owner,
    desired: DesiredState,
    traffic_first: bool,
) -> None:
    """Apply in an order that never sends traffic to pods that are not there yet; the objects
    within one group are independent and go out concurrently."""
    groups = (
        [desired.traffic, desired.workloads]
        if traffic_first
        else [desired.workloads, desired.traffic]
    )
    for group in groups:
        await asyncio.gather(*(_apply_one(kube, applied, deployments, owner, obj) for obj in group))
    await asyncio.gather(*(_delete_one(kube, applied, owner, *absent) for absent in desired.absent))


async def _apply_one(
    kube: KubeClient,
    cache: AppliedCache | None,
    deployments: LiveDeployments | None,
    owner: Owner,
    obj: dict[str, Any],
) -> None:
    key, content = AppliedCache.key(obj), orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    if cache is not None and cache.fresh(key, content):
        return
    result = await kube.apply(obj)
    if cache is not None:
        cache.remember(key, content, owner.uid)
    if deployments is not None and obj["kind"] == "Deployment":
        deployments.update(result)


async def _delete_one(
    kube: KubeClient,
    cache: AppliedCache | None,
    owner: Owner,
    api_version: str,
    kind: str,
    name: str,
) -> None:
    key = (api_version, kind, owner.namespace, name)
    if cache is not None and cache.fresh(key, b"absent"):
        return
    await kube.delete(api_version, kind, owner.namespace, name)
    if cache is not None:
        cache.remember(key, b"absent", owner.uid)


# the status fields that are ours, by name and by alias (kopf and others write theirs beside them)
_STATUS_FIELDS = frozenset(ModelDeploymentStatus.model_fields) | {
    field.alias for field in ModelDeploymentStatus.model_fields.values() if field.alias
}


async def write_status(
    kube: KubeClient, body: Mapping[str, Any], status: ModelDeploymentStatus
) -> dict[str, Any] | None:
    """Patch only our own status fields, only when they changed; the object as written, or None
    when nothing was written (or the object is gone)."""
    live = dict(body.get("status") or {})
    old = {key: value for key, value in live.items() if key in _STATUS_FIELDS}
    patch = merge_patch(old, as_json(status))
    if not patch:
        return None
    meta = body["metadata"]
    return await kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], patch)


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ModelDeployment as an Event's involvedObject."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": body["metadata"]}


async def post_events(
    kube: KubeClient, body: Mapping[str, Any], events: Sequence[Event], now: datetime
) -> None:
    await asyncio.gather(
        *(
            kube.post_event(object_ref(body), event.type, event.reason, event.message, now)
            for event in events
        )
    )
