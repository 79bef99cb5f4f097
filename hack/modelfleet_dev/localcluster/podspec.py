"""Turning a pod's first container into a local command line: env, volumes, ports, probes.

Pure functions; the API reads (Secrets, ConfigMaps) come in through `Lookup`.
Volume mounts become local folders, and any env value, command or arg that starts with a
mount path is rewritten to the local folder, so `MODELFLEET_CACHE_DIR=/cache` just works.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (kind "Secret" | "ConfigMap", namespace, name) → data (values already decoded) or None
Lookup = Callable[[str, str, str], Mapping[str, str] | None]

_STRIPPED_ENV_PREFIXES = ("MODELFLEET_", "KUBECONFIG", "PROMETHEUS_URL")


class PodSpecError(ValueError):
    """The pod cannot run as a local process; the message is shown as the container's reason."""


def venv_path() -> str:
    """PATH with the venv's bin first, so `modelfleet serve` is the checkout's own."""
    return os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
    )


def decode_secret(data: Mapping[str, str] | None) -> dict[str, str]:
    return {
        key: base64.b64decode(value).decode(errors="replace") for key, value in (data or {}).items()
    }


def _field(pod: Mapping[str, Any], path: str, pod_ip: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(meta.get(source, {}).get(path[len(prefix) + 2 : -2], ""))
    raise PodSpecError(f"fieldRef {path} is not supported by the local process runner")


def _value_from(
    source: Mapping[str, Any], pod: Mapping[str, Any], pod_ip: str, lookup: Lookup
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return _field(pod, source["fieldRef"]["fieldPath"], pod_ip)
    for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if key in source:
            ref = source[key]
            data = lookup(kind, namespace, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise PodSpecError(f"{kind} {ref['name']} (key {ref['key']}) not found")
            return data[ref["key"]]
    if "resourceFieldRef" in source:
        return "0"
    raise PodSpecError(f"valueFrom {sorted(source)} is not supported by the local process runner")


def container_env(pod: Mapping[str, Any], pod_ip: str, lookup: Lookup) -> dict[str, str]:
    """The first container's environment as Kubernetes would compute it (envFrom, then env)."""
    container = pod["spec"]["containers"][0]
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                data = lookup(kind, namespace, source[key]["name"])
                if data is None and not source[key].get("optional"):
                    raise PodSpecError(f"{kind} {source[key]['name']} not found")
                prefix = source.get("prefix", "")
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for item in container.get("env") or []:
        if "valueFrom" in item:
            value = _value_from(item["valueFrom"], pod, pod_ip, lookup)
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = _expand(item.get("value", ""), env)
    return env


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion against the variables defined before this one."""
    for name, known in env.items():
        value = value.replace(f"$({name})", known)
    return value


def materialize_volumes(
    pod: Mapping[str, Any], root: Path, shared: Path, lookup: Lookup
) -> dict[str, Path]:
    """Create a local folder per volume the first container mounts; returns mountPath → folder."""
    namespace = pod["metadata"]["namespace"]
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in pod["spec"]["containers"][0].get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodSpecError(f"volumeMount {mount['name']} has no volume")
        folder = _volume_folder(volume, namespace, root, shared, lookup)
        if mount.get("subPath"):
            folder = folder / mount["subPath"]
            folder.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"].rstrip("/") or "/"] = folder
    return mounts


def _volume_folder(
    volume: Mapping[str, Any], namespace: str, root: Path, shared: Path, lookup: Lookup
) -> Path:
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    if "persistentVolumeClaim" in volume:
        # Claims are folders shared by every pod of the namespace (like a ReadWriteMany volume).
        claim: Path = shared / namespace / str(volume["persistentVolumeClaim"]["claimName"])
        claim.mkdir(parents=True, exist_ok=True)
        return claim
    folder: Path = root / str(volume["name"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for key, kind, name_key in (
        ("secret", "Secret", "secretName"),
        ("configMap", "ConfigMap", "name"),
    ):
        if key in volume:
            data = lookup(kind, namespace, volume[key][name_key])
            if data is None and not volume[key].get("optional"):
                raise PodSpecError(
                    f"{kind} {volume[key][name_key]} for volume {volume['name']} not found"
                )
            items = volume[key].get("items")
            wanted = (
                {item["key"]: item["path"] for item in items}
                if items
                else {k: k for k in data or {}}
            )
            for data_key, relative in wanted.items():
                if data and data_key in data:
                    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                    (folder / relative).write_text(data[data_key])
    return folder


def translate(value: str, mounts: Mapping[str, Path]) -> str:
    """Rewrite a container path that lies under a mount to the mount's local folder."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(mounts[mount_path]) + value[len(mount_path) :]
    return value


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]  # port name or number (as text) → local port
    http_port: int | None
    metrics_port: int | None


def plan_launch(
    pod: Mapping[str, Any],
    pod_ip: str,
    mounts: Mapping[str, Path],
    lookup: Lookup,
    allocate_port: Callable[[], int],
) -> LaunchPlan:
    """The argv, env and local ports for the pod's first container."""
    container = pod["spec"]["containers"][0]
    command = list(container.get("command") or [])
    if not command:
        raise PodSpecError(
            "the container has no command: the local runner cannot run an image's entrypoint"
        )
    env = container_env(pod, pod_ip, lookup)
    argv = [_expand(part, env) for part in command + list(container.get("args") or [])]
    argv = [translate(part, mounts) for part in argv]
    path = venv_path()
    resolved = shutil.which(argv[0], path=path)
    if resolved is None:
        raise PodSpecError(f"executable {argv[0]!r} not found on PATH (venv first)")
    argv[0] = resolved
    ports: dict[str, int] = {}
    for port in container.get("ports") or []:
        local = allocate_port()
        ports[str(port["containerPort"])] = local
        if port.get("name"):
            ports[port["name"]] = local
    base = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    full_env = {**base, **{k: translate(v, mounts) for k, v in env.items()}, "PATH": path}
    full_env["MODELFLEET_HOST"] = "127.0.0.1"
    http_port, metrics_port = ports.get("http"), ports.get("metrics")
    if http_port is not None:
        full_env["MODELFLEET_PORT"] = str(http_port)
    if metrics_port is not None:
        full_env["MODELFLEET_METRICS_PORT"] = str(metrics_port)
    return LaunchPlan(argv, full_env, ports, http_port, metrics_port)


def probe_url(probe: Mapping[str, Any] | None, ports: Mapping[str, int]) -> str | None:
    """The local URL of an httpGet probe, or None when the probe is absent or not HTTP."""
    if not probe or "httpGet" not in probe:
        return None
    get = probe["httpGet"]
    local = ports.get(str(get.get("port")))
    if local is None:
        raise PodSpecError(f"probe port {get.get('port')!r} is not a declared container port")
    path = get.get("path", "/")
    return f"http://127.0.0.1:{local}{path if path.startswith('/') else '/' + path}"
