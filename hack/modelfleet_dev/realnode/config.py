"""Pure builders for one real node's configuration: containerd, CNI, kubelet, kube-proxy.

No I/O here: each takes a `NodeLayout` (the node's name, index, addresses and folders) and
returns text or a dict; node.py writes them and starts the processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .netns import API_ADDRESS, POD_NETWORK, bridge_name, node_address, pod_subnet

CNI_BIN_DIR = "/usr/lib/cni"
PAUSE_IMAGE = "localhost/modelfleet-pause:1"
# Real nodes carry this label and taint: kwok-tier workloads (no toleration) never land there;
# real-tier ones select the label and tolerate the taint (see `REAL_TOLERATION`).
TIER_KEY = "modelfleet.io/node-tier"
TIER_VALUE = "real"
REAL_NODE_SELECTOR = {TIER_KEY: TIER_VALUE}
REAL_TOLERATION = {
    "key": TIER_KEY,
    "operator": "Equal",
    "value": TIER_VALUE,
    "effect": "NoSchedule",
}


NODES_ROOT = Path("/var/lib/modelfleet/real")


def run_nodes_dir(run_id: str) -> Path:
    """The run's node folders, on a short path: kubelet and containerd create unix sockets
    below them, and a socket path must stay under 104 characters (a pytest tmp_path is longer).
    `down` removes it with the rest of the run."""
    return NODES_ROOT / run_id


@dataclass(frozen=True)
class NodeLayout:
    """Where one node's state lives and which addresses it has."""

    run_id: str
    index: int  # 1, 2, …

    @property
    def name(self) -> str:
        return f"real-{self.index}"

    @property
    def address(self) -> str:
        return node_address(self.index)

    @property
    def subnet(self) -> str:
        return pod_subnet(self.index)

    @property
    def cgroup_root(self) -> str:
        """kubelet's cgroupRoot: pods' cgroups live below it, apart from other runs' nodes."""
        return f"/modelfleet-{self.run_id}-n{self.index}"

    @property
    def runtime_cgroup(self) -> str:
        """containerd's cgroup: its shims stay in it, so `down` finds them all."""
        return f"/modelfleet-{self.run_id}-n{self.index}-runtime"

    @property
    def root(self) -> Path:
        """The node's folder: configuration, kubelet's root, containerd's root and state."""
        return run_nodes_dir(self.run_id) / f"n{self.index}"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"


def containerd_config(layout: NodeLayout) -> str:
    """containerd 1.6's config (version 2): own root, state and socket; CRI with our CNI."""
    base = layout.root / "containerd"
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    return "\n".join(
        [
            "version = 2",
            f'root = "{base / "root"}"',
            f'state = "{base / "state"}"',
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "[ttrpc]",
            f'  address = "{layout.containerd_socket}.ttrpc"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{base / "opt"}"',
            cri,
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            "  restrict_oom_score_adj = true",  # without it runc cannot create any sandbox here
            "  disable_apparmor = true",
            '  stream_server_address = "127.0.0.1"',
            "  netns_mounts_under_state_dir = true",  # pod namespaces under our folder, not /run
            f"{cri.rstrip(']')}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc.rstrip(']')}.options]",
            "  SystemdCgroup = false",
            f'  Root = "{base / "runc"}"',
            f"{cri.rstrip(']')}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{layout.root / "cni"}"',
            "",
        ]
    )


def cni_conflist(layout: NodeLayout) -> dict[str, Any]:
    """A bridge with host-local addresses (one /24 per node) and portmap for hostPorts.
    containerd's CRI adds the loopback plugin for every sandbox by itself."""
    return {
        "cniVersion": "1.0.0",
        "name": f"modelfleet-{layout.run_id}-n{layout.index}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name(layout.index),
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": layout.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.root / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, ca_cert: Path, cgroup_v1: bool) -> dict[str, Any]:
    """KubeletConfiguration: cgroupfs below its own cgroupRoot, our containerd, no swap check,
    image GC off (images are imported, never pulled), eviction only when truly full."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.address,
        "healthzBindAddress": layout.address,
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.root / "pod-logs"),
        "resolvConf": str(layout.root / "resolv.conf"),
        "clusterDomain": "cluster.local",
        "registerWithTaints": [{"key": TIER_KEY, "value": TIER_VALUE, "effect": "NoSchedule"}],
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "4s",
        # a Secret's new content reaches a pod's volume at the pod's next sync: with the default
        # 1 min, Prometheus got a new PodMonitor's scrape job (prometheus-operator writes it to
        # a Secret the config reloader watches) 30-90 s after the PodMonitor appeared
        "syncFrequency": "10s",
    }
    if cgroup_v1:
        config["failCgroupV1"] = False  # kubelet 1.35 refuses cgroup v1 unless told otherwise
    return config


def kubelet_args(layout: NodeLayout, kubelet_bin: Path) -> list[str]:
    labels = f"{TIER_KEY}={TIER_VALUE},type=real"
    return [
        str(kubelet_bin),
        f"--config={layout.root / 'kubelet.json'}",
        f"--kubeconfig={layout.root / 'kubelet.kubeconfig'}",
        f"--root-dir={layout.kubelet_dir}",
        f"--cert-dir={layout.kubelet_dir / 'pki'}",
        f"--hostname-override={layout.name}",
        f"--node-ip={layout.address}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(layout: NodeLayout) -> dict[str, Any]:
    """iptables mode; masquerade all Service traffic (pods on one bridge then reach a Service
    backed by a neighbour without br_netfilter); leave the host-wide conntrack sysctls alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.root / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "hostnameOverride": layout.name,
        "clusterCIDR": POD_NETWORK,
        "healthzBindAddress": f"{layout.address}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "iptables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def api_server_url(port: int) -> str:
    """The API server as seen from inside the namespace (the inward forwarder)."""
    return f"https://{API_ADDRESS}:{port}"


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
