"""The slot Deployment `<name>-<slot>`: the model server with probes, security and GPU placement."""

from __future__ import annotations

import json
from typing import Any

from modelfleet.operator.api import CacheSpec, JwtSpec, ModelDeploymentSpec, parse_duration
from modelfleet.operator.builders.common import (
    HTTP_PORT,
    LABEL_REVISION,
    METRICS_PORT,
    Owner,
    SlotPlan,
    metadata,
    selector,
    slot_labels,
)
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.shape import SHAPE_ANNOTATION, PodShape

CACHE_DIR = "/var/cache/modelfleet"
AUTH_DIR = "/etc/modelfleet/auth"
PVC_ROOT = "/mnt/models"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
LIVE_SAMPLE_ROWS = (
    1024  # MODELFLEET_LIVE_SAMPLE_ROWS with replay.liveSample: ~0.5 MB at 64 features
)


def build_deployment(owner: Owner, plan: SlotPlan, settings: OperatorSettings) -> dict[str, Any]:
    """The Deployment of one slot; `plan.replicas` None leaves the size to the HPA/ScaledObject."""
    labels = {**slot_labels(owner, plan.slot), LABEL_REVISION: plan.revision}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(owner, plan.slot)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
        "revisionHistoryLimit": 2,
        "template": {
            "metadata": {"labels": {**labels, "app.kubernetes.io/name": settings.pod_app_name}},
            "spec": _pod_spec(owner, plan, settings),
        },
    }
    if plan.replicas is not None:
        spec = {"replicas": plan.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            owner,
            owner.slot_name(plan.slot),
            labels,
            {SHAPE_ANNOTATION: plan.shape.to_annotation()},
        ),
        "spec": spec,
    }


def _pod_spec(owner: Owner, plan: SlotPlan, settings: OperatorSettings) -> dict[str, Any]:
    shape = plan.shape
    volumes: list[dict[str, Any]] = [
        {"name": "model-cache", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "model-cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for name, claim in _pvc_volumes(shape).items():
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": name, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    if shape.auth is not None and shape.auth.api_key_secret_ref is not None:
        ref = shape.auth.api_key_secret_ref
        volumes.append({"name": "api-keys", "secret": {"secretName": ref.name}})
        mounts.append({"name": "api-keys", "mountPath": AUTH_DIR, "readOnly": True})
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [_container(owner, plan, mounts)],
        "volumes": volumes,
    }
    pod.update(_scheduling(shape, settings))
    return pod


def _container(owner: Owner, plan: SlotPlan, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    shape = plan.shape
    return {
        "name": "server",
        "image": shape.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["modelfleet", "serve"],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": _env(owner, plan),
        "resources": _resources(shape),
        "volumeMounts": mounts,
        "readinessProbe": _probe("/v2/health/ready", period=10, failures=3),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        # sized for a model download: up to 10 minutes before liveness takes over
        "startupProbe": _probe("/v2/health/live", period=5, failures=120),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def live_sample_rows(spec: ModelDeploymentSpec) -> int:
    """Rows of recent inputs each server keeps when `rollout.analysis.replay.liveSample` is on."""
    replay = spec.rollout.analysis.replay
    return LIVE_SAMPLE_ROWS if replay is not None and replay.live_sample else 0


def _env(owner: Owner, plan: SlotPlan) -> list[dict[str, Any]]:
    shape = plan.shape
    values: dict[str, str] = {
        "MODELFLEET_MODEL_URI": _served_uri(shape.model.uri),
        "MODELFLEET_MODEL_NAME": owner.name,
        "MODELFLEET_MODEL_FORMAT": shape.model.format or "",
        "MODELFLEET_MODEL_VERSION": shape.version,
        "MODELFLEET_CACHE_DIR": CACHE_DIR,
        "MODELFLEET_WORKERS": str(shape.server.workers),
        "MODELFLEET_MAX_BATCH_SIZE": str(shape.server.batching.max_batch_size),
        "MODELFLEET_MAX_BATCH_LATENCY_MICROS": str(shape.server.batching.max_latency_micros),
        "MODELFLEET_DEPLOYMENT": owner.name,
        "MODELFLEET_SLOT": plan.slot,
        "MODELFLEET_REVISION": plan.revision,
    }
    if shape.model.sha256:
        values["MODELFLEET_MODEL_SHA256"] = shape.model.sha256
    if shape.baseline is not None:
        values["MODELFLEET_BASELINE_URI"] = _served_uri(shape.baseline.uri)
        values["MODELFLEET_BASELINE_BINS"] = str(shape.baseline.bins)
    if plan.live_sample_rows:
        values["MODELFLEET_LIVE_SAMPLE_ROWS"] = str(plan.live_sample_rows)
    if shape.auth is not None and shape.auth.api_key_secret_ref is not None:
        values["MODELFLEET_API_KEY_FILE"] = f"{AUTH_DIR}/{shape.auth.api_key_secret_ref.key}"
    if shape.auth is not None and shape.auth.jwt is not None:
        values.update(_jwt_env(shape.auth.jwt))
    if shape.server.cache is not None:
        values.update(_cache_env(shape.server.cache))
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in values.items()]
    redis = shape.server.cache.redis if shape.server.cache is not None else None
    if redis is not None and redis.url_secret_ref is not None:
        ref = {"name": redis.url_secret_ref.name, "key": redis.url_secret_ref.key}
        env.append({"name": "MODELFLEET_CACHE_REDIS_URL", "valueFrom": {"secretKeyRef": ref}})
        values["MODELFLEET_CACHE_REDIS_URL"] = ""  # ours: spec.server.env does not override it
    env.extend(plan.rate_limit_env)  # ours too: spec.server.env does not override them
    values.update({var["name"]: "" for var in plan.rate_limit_env})
    env.extend(
        {"name": var.name, "value": var.value} for var in shape.server.env if var.name not in values
    )
    return env


def _jwt_env(jwt: JwtSpec) -> dict[str, str]:
    """The server's JWT settings; lists and maps as JSON, so a comma in a value stays one."""
    values = {
        "MODELFLEET_JWT_ISSUER": jwt.issuer,
        "MODELFLEET_JWT_JWKS_URI": jwt.jwks_uri,
        "MODELFLEET_JWT_AUDIENCES": json.dumps(jwt.audiences),
    }
    if jwt.required_claims:
        values["MODELFLEET_JWT_REQUIRED_CLAIMS"] = json.dumps(jwt.required_claims, sort_keys=True)
    return values


def _cache_env(cache: CacheSpec) -> dict[str, str]:
    """The server's prediction-cache settings; a Redis URL from a Secret is added apart."""
    values = {
        "MODELFLEET_CACHE": "redis" if cache.redis is not None else "memory",
        "MODELFLEET_CACHE_TTL_SECONDS": f"{parse_duration(cache.ttl):g}",
        "MODELFLEET_CACHE_MAX_ENTRIES": str(cache.max_entries),
    }
    if cache.redis is not None and cache.redis.url is not None:
        values["MODELFLEET_CACHE_REDIS_URL"] = cache.redis.url
    return values


def _resources(shape: PodShape) -> dict[str, Any]:
    resources: dict[str, Any] = dict(shape.server.resources or {})
    if shape.gpu is not None:
        limits = dict(resources.get("limits") or {})
        limits[GPU_RESOURCE] = shape.gpu.count
        resources["limits"] = limits
    return resources


def _scheduling(shape: PodShape, settings: OperatorSettings) -> dict[str, Any]:
    node_selector = dict(shape.node_selector)
    tolerations = list(shape.tolerations or [])
    if shape.gpu is not None:
        if shape.gpu.product:
            node_selector[GPU_PRODUCT_LABEL] = shape.gpu.product
        tolerations.extend(
            shape.gpu.tolerations if shape.gpu.tolerations is not None else settings.gpu_tolerations
        )
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if shape.affinity:
        out["affinity"] = shape.affinity
    if shape.topology_spread:
        out["topologySpreadConstraints"] = shape.topology_spread
    return out


def _pvc_volumes(shape: PodShape) -> dict[str, str]:
    """Volume name → claim for the model's and the baseline's pvc:// URIs (one mount per claim)."""
    volumes: dict[str, str] = {}
    model_claim = _pvc_claim(shape.model.uri)
    if model_claim is not None:
        volumes["model-pvc"] = model_claim
    baseline_claim = _pvc_claim(shape.baseline.uri) if shape.baseline is not None else None
    if baseline_claim is not None and baseline_claim != model_claim:
        volumes["baseline-pvc"] = baseline_claim
    return volumes


def _pvc_claim(uri: str) -> str | None:
    if not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def _served_uri(uri: str) -> str:
    """pvc://<claim>/<path> is mounted read-only; the server reads it as a local file."""
    if not uri.startswith("pvc://"):
        return uri
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return f"file://{PVC_ROOT}/{claim}/{path}"
