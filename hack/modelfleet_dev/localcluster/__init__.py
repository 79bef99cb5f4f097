"""The local control plane for modelfleet's tests and demo (`modelfleet_dev.localcluster`).

`LocalCluster` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with fake
CPU and GPU nodes, a real Prometheus, and a process runner that backs model-server pods with
real local processes. `python -m modelfleet_dev.localcluster build|up|down|env|status` is the command line.
"""

from .cluster import ClusterConfig, ClusterError, LocalCluster
from .paths import Artifacts

__all__ = ["Artifacts", "ClusterConfig", "ClusterError", "LocalCluster"]
