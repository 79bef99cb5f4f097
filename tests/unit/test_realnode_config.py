"""The real nodes' configuration builders (hack/modelfleet_dev/realnode/config.py) and address plan."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
from modelfleet_dev.realnode import config, netns

LAYOUTS = [config.NodeLayout("ab12cd", 1), config.NodeLayout("ab12cd", 2)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_containerd_config_is_valid_toml_with_its_own_places(layout: config.NodeLayout) -> None:
    parsed = tomllib.loads(config.containerd_config(layout))
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # every sandbox fails without it here
    assert cri["sandbox_image"] == config.PAUSE_IMAGE
    assert cri["cni"]["conf_dir"] == str(layout.root / "cni")
    assert not cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"]
    for path in (parsed["root"], parsed["state"], parsed["grpc"]["address"]):
        assert Path(path).is_relative_to(layout.root)


def test_socket_paths_fit_a_unix_socket() -> None:
    longest = config.NodeLayout("ffffff", 99)
    assert len(f"{longest.containerd_socket}.ttrpc") < 104
    assert len(str(longest.kubelet_dir / "pod-resources" / "1234567890")) < 104


def test_nodes_of_a_run_never_share_a_network_cgroup_or_folder() -> None:
    one, two = LAYOUTS
    for attribute in ("name", "address", "subnet", "cgroup_root", "runtime_cgroup", "root"):
        assert getattr(one, attribute) != getattr(two, attribute), attribute
    bridges = {config.cni_conflist(layout)["plugins"][0]["bridge"] for layout in LAYOUTS}
    assert len(bridges) == 2
    other_run = config.NodeLayout("99ff00", 1)
    assert other_run.cgroup_root != one.cgroup_root
    assert other_run.root != one.root


def test_address_plan_stays_inside_its_ranges() -> None:
    nodes = ipaddress.ip_network("10.240.0.0/24")
    pods = ipaddress.IPv4Network(netns.POD_NETWORK)
    assert ipaddress.ip_address(netns.API_ADDRESS) in nodes
    for index in (1, 2, 50):
        address = ipaddress.ip_address(netns.node_address(index))
        assert address in nodes
        assert not address.is_loopback
        assert address != ipaddress.ip_address(netns.API_ADDRESS)
        assert ipaddress.IPv4Network(netns.pod_subnet(index)).subnet_of(pods)


@pytest.mark.parametrize("cgroup_v1", [True, False])
def test_kubelet_config(cgroup_v1: bool) -> None:
    layout = LAYOUTS[0]
    kubelet = config.kubelet_config(layout, Path("/ca.crt"), cgroup_v1)
    assert ("failCgroupV1" in kubelet) is cgroup_v1  # kubelet 1.35 refuses v1 unless told
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["cgroupRoot"] == layout.cgroup_root
    assert kubelet["failSwapOn"] is False
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{layout.containerd_socket}"
    assert kubelet["address"] == layout.address
    assert {"key": config.TIER_KEY, "value": config.TIER_VALUE, "effect": "NoSchedule"} in kubelet[
        "registerWithTaints"
    ]


def test_real_toleration_matches_the_taint_and_the_label_is_set() -> None:
    layout = LAYOUTS[0]
    taint = config.kubelet_config(layout, Path("/ca.crt"), True)["registerWithTaints"][0]
    toleration = config.REAL_TOLERATION
    assert (toleration["key"], toleration["value"], toleration["effect"]) == (
        taint["key"],
        taint["value"],
        taint["effect"],
    )
    labels_flag = next(
        a for a in config.kubelet_args(layout, Path("kubelet")) if a.startswith("--node-labels=")
    )
    for key, value in config.REAL_NODE_SELECTOR.items():
        assert f"{key}={value}" in labels_flag
