"""The control plane's command lines (localcluster.components): pure builders from a run's layout."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from modelfleet_dev.localcluster import components
from modelfleet_dev.localcluster.components import Layout
from modelfleet_dev.localcluster.paths import Artifacts
from modelfleet_dev.localcluster.runner import RUNNER_POD_CIDR

PORTS = {name: 20000 + i for i, name in enumerate(components.PORT_NAMES)}

COMMANDS: dict[str, tuple[Callable[[Layout], list[str]], set[str]]] = {
    # binary: (builder, the ports it binds or dials)
    "etcd": (components.etcd_command, {"etcd", "etcd-peer"}),
    "kube-apiserver": (components.apiserver_command, {"apiserver", "etcd"}),
    "kube-controller-manager": (components.controller_manager_command, {"controller-manager"}),
    "kube-scheduler": (components.scheduler_command, {"scheduler"}),
    "kwok": (components.kwok_command, {"kwok"}),
}


def _layout(tmp_path: Path, advertise: str | None = None) -> Layout:
    return Layout(Artifacts(tmp_path / "build"), tmp_path / "state", PORTS, advertise)


def _flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command[1:])


@pytest.mark.parametrize("binary", sorted(COMMANDS))
def test_each_command_runs_its_built_binary_on_its_own_ports(tmp_path: Path, binary: str) -> None:
    build, owned = COMMANDS[binary]
    command = build(_layout(tmp_path))
    assert command[0] == str(tmp_path / "build" / "bin" / binary)
    assert all(arg.startswith("--") and "=" in arg for arg in command[1:])
    text = " ".join(command[1:])
    used = {name for name, port in PORTS.items() if f":{port}" in text or f"={port}" in text}
    assert used == owned


@pytest.mark.parametrize(("advertise", "reconciler"), [(None, "none"), ("10.77.0.1", "lease")])
def test_the_apiserver_publishes_an_endpoint_only_when_it_has_an_address_to_advertise(
    tmp_path: Path, advertise: str | None, reconciler: str
) -> None:
    flags = _flags(components.apiserver_command(_layout(tmp_path, advertise)))
    assert flags["endpoint-reconciler-type"] == reconciler
    assert flags["advertise-address"] == (advertise or "127.0.0.1")
    assert flags["bind-address"] == "127.0.0.1"
    assert flags["service-cluster-ip-range"] == components.SERVICE_CIDR


def test_controllers_and_scheduler_sign_in_with_their_own_kubeconfigs(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    kcm = _flags(components.controller_manager_command(layout))
    scheduler = _flags(components.scheduler_command(layout))
    config = components.scheduler_config(layout)
    kubeconfigs = tmp_path / "state" / "kubeconfigs"
    assert kcm["kubeconfig"] == str(kubeconfigs / "controller-manager.kubeconfig")
    assert config["clientConnection"]["kubeconfig"] == str(kubeconfigs / "scheduler.kubeconfig")
    assert scheduler["authentication-kubeconfig"] == str(kubeconfigs / "scheduler.kubeconfig")
    assert scheduler["config"] == str(layout.scheduler_config_path)
    assert config["leaderElection"] == {"leaderElect": False}


def test_kwok_and_the_process_runner_hand_out_pod_addresses_from_disjoint_ranges(
    tmp_path: Path,
) -> None:
    flags = _flags(components.kwok_command(_layout(tmp_path)))
    kwok = ipaddress.ip_network(flags["cidr"])
    runner = ipaddress.ip_network(RUNNER_POD_CIDR)
    assert not kwok.overlaps(runner)
    assert flags["disregard-status-with-label-selector"] == components.PROCESS_LABEL_SELECTOR
    assert flags["config"] == str(tmp_path / "build" / "kwok-stages.yaml")
