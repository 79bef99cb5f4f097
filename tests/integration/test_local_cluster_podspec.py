"""How the process runner turns a pod into a local command line (pure functions, no cluster)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from modelfleet_dev.localcluster import podspec
from modelfleet_dev.localcluster.podstate import PodProcess, build_pod_status
from modelfleet_dev.localcluster.procs import ProcessGroup
from modelfleet_dev.localcluster.prometheus import label_name

SECRETS: dict[tuple[str, str, str], dict[str, str]] = {
    ("Secret", "ns", "api-key"): {"key": "s3cret"},
    ("ConfigMap", "ns", "settings"): {"MODELFLEET_WORKERS": "2", "LOG_LEVEL": "info"},
}


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return SECRETS.get((kind, namespace, name))


def pod(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "labels": {"modelfleet.io/slot": "blue"},
        },
        "spec": {"nodeName": "kwok-cpu-a1", "containers": [container], "volumes": volumes or []},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/cache", "LOCAL/cache-dir"),
        ("/cache/models/m.onnx", "LOCAL/cache-dir/models/m.onnx"),
        ("/cachet", "/cachet"),
        ("/secrets/key", "LOCAL/secret-dir/key"),
        ("relative/path", "relative/path"),
    ],
)
def test_paths_under_a_mount_are_rewritten_to_its_local_folder(value: str, expected: str) -> None:
    mounts = {"/cache": Path("LOCAL/cache-dir"), "/secrets": Path("LOCAL/secret-dir")}
    assert podspec.translate(value, mounts) == expected


def test_the_environment_is_computed_like_kubernetes_does() -> None:
    container = {
        "name": "server",
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "SLOT",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['modelfleet.io/slot']"}},
            },
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "key"}}},
            {"name": "GREETING", "value": "hello $(NAME) in $(SLOT)"},
            {
                "name": "OPTIONAL",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ],
    }
    env = podspec.container_env(pod(container), "10.244.128.7", lookup)
    assert env == {
        "MODELFLEET_WORKERS": "2",
        "LOG_LEVEL": "info",
        "NAME": "p",
        "SLOT": "blue",
        "IP": "10.244.128.7",
        "KEY": "s3cret",
        "GREETING": "hello p in blue",
    }


def test_a_missing_secret_is_a_reason_not_a_crash() -> None:
    container = {
        "name": "s",
        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
    }
    with pytest.raises(podspec.PodSpecError, match="Secret gone"):
        podspec.container_env(pod(container), "10.244.128.7", lookup)


def test_the_launch_plan_hands_free_ports_in_through_env_and_drops_the_hosts_modelfleet_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_MODEL_URI", "file:///from/the/test/process")
    container = {
        "name": "server",
        "command": ["python"],
        "args": ["-c", "pass", "--cache", "/cache"],
        "env": [{"name": "MODELFLEET_CACHE_DIR", "value": "/cache"}],
        "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "metrics", "containerPort": 8082},
        ],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    }
    spec = pod(container, [{"name": "cache", "emptyDir": {}}])
    mounts = podspec.materialize_volumes(spec, tmp_path / "volumes", tmp_path / "shared", lookup)
    ports = iter([41001, 41002])
    plan = podspec.plan_launch(spec, "10.244.128.7", mounts, lookup, lambda: next(ports))
    assert Path(plan.argv[0]).name.startswith("python")
    assert plan.argv[1:] == ["-c", "pass", "--cache", str(tmp_path / "volumes" / "cache")]
    assert plan.env["MODELFLEET_HOST"] == "127.0.0.1"
    assert plan.env["MODELFLEET_PORT"] == "41001"
    assert plan.env["MODELFLEET_METRICS_PORT"] == "41002"
    assert plan.env["MODELFLEET_CACHE_DIR"] == str(tmp_path / "volumes" / "cache")
    assert "MODELFLEET_MODEL_URI" not in plan.env
    assert plan.ports == {"8080": 41001, "http": 41001, "8082": 41002, "metrics": 41002}
    assert podspec.probe_url(
        {"httpGet": {"path": "/v2/health/ready", "port": "http"}}, plan.ports
    ) == ("http://127.0.0.1:41001/v2/health/ready")
    assert podspec.probe_url({"httpGet": {"path": "live", "port": 8080}}, plan.ports) == (
        "http://127.0.0.1:41001/live"
    )


def test_secret_volumes_are_written_as_files(tmp_path: Path) -> None:
    container = {
        "name": "s",
        "command": ["python"],
        "volumeMounts": [{"name": "key", "mountPath": "/etc/key"}],
    }
    spec = pod(container, [{"name": "key", "secret": {"secretName": "api-key"}}])
    mounts = podspec.materialize_volumes(spec, tmp_path, tmp_path / "shared", lookup)
    assert (mounts["/etc/key"] / "key").read_text() == "s3cret"


@pytest.mark.parametrize(
    ("command", "reason"),
    [([], "no command"), (["no-such-binary-anywhere"], "not found on PATH")],
)
def test_a_container_that_cannot_run_says_why(command: list[str], reason: str) -> None:
    with pytest.raises(podspec.PodSpecError, match=reason):
        podspec.plan_launch(
            pod({"name": "s", "command": command}), "10.244.128.7", {}, lookup, lambda: 1
        )


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("modelfleet.io/slot", "modelfleet_io_slot"),
        ("plain", "plain"),
        ("9lives", "_9lives"),
    ],
)
def test_pod_labels_become_prometheus_label_names(key: str, name: str) -> None:
    assert label_name(key) == name


def test_a_crashed_process_is_reported_like_kubelet_does(tmp_path: Path) -> None:
    proc = PodProcess(
        "ns", "p", "u1", "10.244.128.9", "10.245.0.1", tmp_path, ProcessGroup(tmp_path)
    )
    proc.phase, proc.restart_count = "Running", 2
    proc.waiting = ("CrashLoopBackOff", "back-off 4s restarting failed container")
    proc.last_terminated = {"exitCode": 3, "reason": "Error", "message": "model not found"}
    spec = pod({"name": "server", "image": "modelfleet/server:dev"})
    spec["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})

    status = build_pod_status(proc, spec)

    assert status["phase"] == "Running"
    assert status["podIP"] == "10.244.128.9"
    assert status["hostIP"] == "10.245.0.1"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    server, sidecar = status["containerStatuses"]
    assert server["state"] == {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 4s restarting failed container",
        }
    }
    assert server["lastState"]["terminated"]["exitCode"] == 3
    assert server["restartCount"] == 2
    assert server["ready"] is False
    assert sidecar["ready"] is True
