"""The fake kwok nodes: three CPU nodes in two zones and two tainted GPU nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    zone: str
    cpu: str = "16"
    memory: str = "64Gi"
    gpus: int = 0
    gpu_product: str = "NVIDIA-A100-SXM4-80GB"


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("kwok-cpu-a1", "zone-a"),
    NodeSpec("kwok-cpu-a2", "zone-a"),
    NodeSpec("kwok-cpu-b1", "zone-b"),
    NodeSpec("kwok-gpu-a1", "zone-a", cpu="32", memory="256Gi", gpus=4),
    NodeSpec("kwok-gpu-b1", "zone-b", cpu="32", memory="256Gi", gpus=4),
)


def build_node(spec: NodeSpec, index: int) -> dict[str, Any]:
    """A Node manifest that kwok manages (status included: the API server keeps it on create)."""
    capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": "110", "ephemeral-storage": "100Gi"}
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": "local",
        "topology.kubernetes.io/zone": spec.zone,
        "node.kubernetes.io/instance-type": "kwok-gpu" if spec.gpus else "kwok-cpu",
    }
    taints = []
    if spec.gpus:
        capacity[GPU_RESOURCE] = str(spec.gpus)
        labels[GPU_PRODUCT_LABEL] = spec.gpu_product
        labels["nvidia.com/gpu.count"] = str(spec.gpus)
        taints.append(dict(GPU_TAINT))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
        },
        "spec": {"taints": taints},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": f"10.245.0.{index + 1}"},
                {"type": "Hostname", "address": spec.name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "local-process",
                "osImage": "kwok",
                "kernelVersion": "kwok",
                "machineID": spec.name,
                "systemUUID": spec.name,
                "bootID": spec.name,
            },
        },
    }
