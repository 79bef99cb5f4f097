"""The pod shape of a slot and the revision hash derived from it.

Everything that shapes the pod (model, server, resources, GPU, scheduling, auth, the monitoring
baseline) lives in `PodShape`; its short hash is the revision. A slot keeps the shape of the
revision it runs: the shape is stored as an annotation on the slot's Deployment and rebuilt from
there even after the spec moved on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from modelfleet.operator.api import (
    AuthSpec,
    GpuSpec,
    ModelDeploymentSpec,
    ModelSource,
    ServerSpec,
    model_format,
)
from modelfleet.operator.settings import OperatorSettings

SHAPE_ANNOTATION = "modelfleet.io/pod-shape"


class BaselineShape(BaseModel):
    """The training baseline the servers bin their inputs against: it belongs to the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    bins: int


class PodShape(BaseModel):
    """The pod-shaping part of a spec, with operator defaults resolved (image, format, version)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelSource
    server: ServerSpec
    gpu: GpuSpec | None = None
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    topology_spread: list[dict[str, Any]] | None = None
    auth: AuthSpec | None = None
    # None (left out of the hash) without spec.monitoring.baselineUri: older revisions keep theirs
    baseline: BaselineShape | None = None

    @property
    def image(self) -> str:
        assert self.server.image is not None  # resolved by shape_of
        return self.server.image

    @property
    def version(self) -> str:
        return self.model.version or short_hash(self.model.uri, 8)

    def to_annotation(self) -> str:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True)).decode()

    @classmethod
    def from_annotation(cls, text: str) -> PodShape:
        return cls.model_validate_json(text)


def short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def shape_of(spec: ModelDeploymentSpec, settings: OperatorSettings) -> PodShape:
    """The shape a slot gets for this spec: defaults resolved so the hash is stable."""
    model = spec.model.model_copy(update={"format": model_format(spec.model)})
    server = spec.server.model_copy(update={"image": spec.server.image or settings.server_image})
    return PodShape(
        model=model,
        server=server,
        gpu=spec.gpu,
        node_selector=spec.node_selector,
        tolerations=spec.tolerations,
        affinity=spec.affinity,
        topology_spread=spec.topology_spread,
        auth=spec.auth,
        baseline=baseline_of(spec),
    )


def baseline_of(spec: ModelDeploymentSpec) -> BaselineShape | None:
    """The baseline part of the shape; interval, window, thresholds and webhook stay out of it."""
    monitoring = spec.monitoring
    if monitoring is None or monitoring.baseline_uri is None:
        return None
    return BaselineShape(uri=monitoring.baseline_uri, bins=monitoring.bins)


def revision_of(shape: PodShape) -> str:
    """Short, stable hash of the shape: key order and defaults do not change it."""
    canonical = orjson.dumps(
        shape.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()[:10]
