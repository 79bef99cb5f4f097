"""The control plane's command lines: pure builders from one run's layout (its state folder, ports
and built binaries) to the argv of etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok. Nothing here starts a process or touches the disk; `cluster.LocalCluster` does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import nodes, pki
from .paths import Artifacts

PROCESS_LABEL_SELECTOR = "app.kubernetes.io/name=modelfleet-server"
KWOK_POD_CIDR = "10.244.0.0/17"  # kwok's own pods; the process runner takes 10.244.128.0/17
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Ports every run takes, one free port each.
PORT_NAMES = (
    "etcd",
    "etcd-peer",
    "apiserver",
    "controller-manager",
    "scheduler",
    "kwok",
    "prometheus",
)


@dataclass(frozen=True)
class Layout:
    """Where one run's pieces live: everything a command line is built from."""

    artifacts: Artifacts
    state_dir: Path
    ports: Mapping[str, int]
    # The address real nodes reach the API server at; None: loopback only, no endpoint.
    advertise_address: str | None = None
    # An EgressSelectorConfiguration for the API server's traffic to nodes, pods and Services
    # (real nodes live in a network namespace): None, none; with it, kubelet client certs too.
    egress_selector_config: Path | None = None

    @property
    def keys(self) -> pki.Pki:
        return pki.Pki(self.state_dir / "pki")

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    @property
    def scheduler_config_path(self) -> Path:
        return self.state_dir / "scheduler.yaml"

    def kubeconfig_for(self, user: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{user}.kubeconfig"

    def binary(self, name: str) -> str:
        return str(self.artifacts.binary(name))


def etcd_command(layout: Layout) -> list[str]:
    return [
        layout.binary("etcd"),
        f"--data-dir={layout.state_dir / 'etcd'}",
        f"--listen-client-urls={layout.etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{layout.ports['etcd-peer']}",
    ]


def apiserver_command(layout: Layout) -> list[str]:
    keys = layout.keys
    return [
        layout.binary("kube-apiserver"),
        f"--etcd-servers={layout.etcd_url}",
        "--bind-address=127.0.0.1",
        f"--advertise-address={layout.advertise_address or '127.0.0.1'}",
        f"--secure-port={layout.ports['apiserver']}",
        f"--cert-dir={layout.state_dir / 'apiserver'}",
        f"--tls-cert-file={keys.serving_cert}",
        f"--tls-private-key-file={keys.serving_key}",
        f"--client-ca-file={keys.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={keys.sa_pub}",
        f"--service-account-signing-key-file={keys.sa_key}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # The API server would publish 127.0.0.1 as the `kubernetes` endpoint, which
        # EndpointSlice validation refuses; without real nodes nothing needs it.
        "--endpoint-reconciler-type=" + ("lease" if layout.advertise_address else "none"),
        "--profiling=false",
        "--v=1",
        *_kubelet_egress_args(layout),
    ]


def _kubelet_egress_args(layout: Layout) -> list[str]:
    """How the API server reaches kubelets (`kubectl logs`, `exec`, `port-forward`): through the
    egress proxy, as the admin user (the real nodes' kubelets trust the cluster CA)."""
    if layout.egress_selector_config is None:
        return []
    admin = layout.keys.client("admin")
    return [
        f"--egress-selector-config-file={layout.egress_selector_config}",
        f"--kubelet-client-certificate={admin.cert}",
        f"--kubelet-client-key={admin.key}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def controller_manager_command(layout: Layout) -> list[str]:
    keys = layout.keys
    kubeconfig = layout.kubeconfig_for("controller-manager")
    return [
        layout.binary("kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports['controller-manager']}",
        f"--cert-dir={layout.state_dir / 'controller-manager'}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={keys.sa_key}",
        f"--root-ca-file={keys.ca_cert}",
        f"--cluster-signing-cert-file={keys.ca_cert}",
        f"--cluster-signing-key-file={keys.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--v=1",
    ]


def scheduler_config(layout: Layout) -> dict[str, Any]:
    """The KubeSchedulerConfiguration (JSON is YAML) the scheduler reads from its state file."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(layout.kubeconfig_for("scheduler")),
            "qps": 200,
            "burst": 400,
        },
        "leaderElection": {"leaderElect": False},
    }


def scheduler_command(layout: Layout) -> list[str]:
    kubeconfig = layout.kubeconfig_for("scheduler")
    return [
        layout.binary("kube-scheduler"),
        f"--config={layout.scheduler_config_path}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports['scheduler']}",
        f"--cert-dir={layout.state_dir / 'scheduler'}",
        "--v=1",
    ]


def kwok_command(layout: Layout) -> list[str]:
    return [
        layout.binary("kwok"),
        f"--kubeconfig={layout.kubeconfig_for('kwok')}",
        f"--config={layout.artifacts.kwok_stages}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=" + "=".join(nodes.KWOK_NODE_ANNOTATION),
        f"--disregard-status-with-label-selector={PROCESS_LABEL_SELECTOR}",
        f"--cidr={KWOK_POD_CIDR}",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{layout.ports['kwok']}",
    ]
