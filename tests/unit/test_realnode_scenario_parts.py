"""The real tier's scenario parts that run without a real node: the load generator against a
real HTTP server on loopback, Prometheus' configuration checked by promtool and its relabelling
run by Prometheus itself, and the operator's install kustomization rendered by kubectl."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelfleet_dev.realnode import install, load, prometheus

KUBECTL = Path(sys.executable).parent / "kubectl"


# --- load ----------------------------------------------------------------------------------
class _Versions(BaseHTTPRequestHandler):
    """Answers like the model server: every 4th request v2, every 10th a 503."""

    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with _Versions.lock:
            _Versions.count += 1
            n = _Versions.count
        if n % 10 == 0:
            body, code = b"overloaded", 503
        else:
            body, code = json.dumps({"model_version": "v2" if n % 4 == 0 else "v1"}).encode(), 200
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def versions_server() -> Iterator[str]:
    _Versions.count = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Versions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/models/m/infer"
    server.shutdown()
    server.server_close()


def test_load_is_bounded_by_requests_and_counts_versions_and_codes(versions_server: str) -> None:
    started = time.monotonic()
    generator = load.Load(versions_server, {"inputs": []}, rate=200, seconds=30, max_requests=200)
    result = generator.start().wait(timeout=20)
    assert time.monotonic() - started < 5  # 200 requests at 200/s, not 30 s
    assert result.requests == 200
    assert result.by_code == {200: 180, 503: 20}
    assert result.failed == 20
    # of the 180 answered: n % 4 == 0 and n % 10 != 0 → 40 are v2
    assert result.by_version == {"v1": 140, "v2": 40}
    assert result.share("v2") == pytest.approx(100 * 40 / 180)
    assert "HTTP 503: overloaded" in result.failures()


def test_load_is_bounded_in_time_and_paced(versions_server: str) -> None:
    started = time.monotonic()
    result = load.Load(versions_server, {}, rate=40, seconds=1.5).start().wait(timeout=10)
    assert 1.2 < time.monotonic() - started < 4
    assert 55 <= result.requests <= 60  # 1.5 s at 40/s
    sent = [a.sent for a in result.answers]
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert max(gaps) < 0.2  # steady: no burst then pause


def test_load_counts_transport_errors_as_failed() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
        result = load.Load(url, {}, rate=50, seconds=0.2, timeout=1).start().wait(timeout=10)
    assert result.requests == 10
    assert result.by_code == {load.TRANSPORT_ERROR: 10}
    assert result.failed == 10


class _Slow(BaseHTTPRequestHandler):
    """Answers v1 at once, and v2 (every other request) after 0.3 s."""

    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with _Slow.lock:
            _Slow.count += 1
            slow = _Slow.count % 2 == 0
        if slow:
            time.sleep(0.3)
        body = json.dumps({"model_version": "v2" if slow else "v1"}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_load_records_how_long_each_answer_took() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = load.Load(url, {}, rate=40, seconds=0.5, workers=8).start().wait(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert result.by_version == {"v1": 10, "v2": 10}
    slow = [a.elapsed for a in result.answers if a.version == "v2"]
    fast = [a.elapsed for a in result.answers if a.version == "v1"]
    assert min(slow) >= 0.3
    assert min(fast) < 0.3  # each answer its own time, not one figure for all
    assert result.failed == 0  # a slow answer is an answer


def test_buckets_and_windows_split_by_send_time() -> None:
    answers = [
        load.Answer(10.0, 200, "v1"),
        load.Answer(10.6, 200, "v2"),
        load.Answer(11.2, 502, None, "bad gateway"),
        load.Answer(12.9, 200, "v2"),
    ]
    parts = load.buckets(answers, start=10.0, width=1.0)
    assert [p.requests for p in parts] == [2, 1, 1]
    assert parts[0].share("v2") == 50.0
    assert parts[1].failed == 1
    assert load.Summary(answers).share("v2") == pytest.approx(200 / 3)


def test_parse_reads_the_model_version_and_marks_a_200_without_it_failed() -> None:
    assert load.parse(200, b'{"model_version": "v2", "outputs": []}').version == "v2"
    no_version = load.parse(200, b'{"outputs": []}')
    assert not no_version.ok
    assert no_version.error == "no model_version in the body"
    assert not load.parse(200, b"<html>").ok
    assert load.parse(503, b"no healthy upstream").error == "no healthy upstream"


# --- prometheus ----------------------------------------------------------------------------
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(prometheus.scrape_config(tmp_path / "pods.json")))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed with Debian's prometheus (hack/setup.sh)"
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _pod(
    name: str, labels: dict[str, str], port_name: str = "metrics", **status: str
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels},
        "spec": {
            "nodeName": "real-1",
            "containers": [
                {
                    "name": "server",
                    "image": "localhost/modelfleet-server:dev",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": port_name, "containerPort": 8082, "protocol": "TCP"},
                    ],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": status.get("ip", f"127.0.0.{len(name)}"), **status},
    }


SLOT_LABELS = {
    "app.kubernetes.io/name": "modelfleet-server",
    "app.kubernetes.io/instance": "fraud",
    "app.kubernetes.io/managed-by": "modelfleet",
    "modelfleet.io/deployment": "fraud",
    "modelfleet.io/slot": "blue",
}


def test_pod_targets_carry_kubernetes_discovery_meta_labels() -> None:
    (http, metrics) = prometheus.pod_targets([_pod("fraud-blue-1", SLOT_LABELS, ip="10.241.1.7")])
    assert http["targets"] == ["10.241.1.7:8080"]
    assert metrics["targets"] == ["10.241.1.7:8082"]
    labels = metrics["labels"]
    assert labels["__meta_kubernetes_pod_label_modelfleet_io_deployment"] == "fraud"
    assert labels["__meta_kubernetes_pod_labelpresent_app_kubernetes_io_instance"] == "true"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "metrics"
    assert labels["__meta_kubernetes_namespace"] == "ns"
    no_ip = _pod("pending", SLOT_LABELS)
    del no_ip["status"]["podIP"]
    assert prometheus.pod_targets([no_ip]) == []


def test_prometheus_keeps_only_modelfleet_metrics_ports_with_the_podmonitor_labels(
    tmp_path: Path,
) -> None:
    """The real Prometheus runs the job's relabelling on what discovery wrote: only the slot
    pod's `metrics` port survives, labelled like a PodMonitor's target."""
    unmanaged = {**SLOT_LABELS, "app.kubernetes.io/managed-by": "helm"}
    no_deployment = {k: v for k, v in SLOT_LABELS.items() if k != "modelfleet.io/deployment"}
    pods = [
        _pod("slot", SLOT_LABELS),
        _pod("other-app", unmanaged),
        _pod("no-deployment", no_deployment),
        _pod("finished", SLOT_LABELS, phase="Succeeded"),
        _pod("renamed-port", SLOT_LABELS, port_name="prom"),
    ]
    targets_file = tmp_path / "pods.json"
    targets_file.write_text(json.dumps(prometheus.pod_targets(pods)))
    active = _targets_of(prometheus.scrape_config(targets_file, interval="1h"), tmp_path)
    assert [t["labels"]["pod"] for t in active] == ["slot"]
    labels = active[0]["labels"]
    assert labels["namespace"] == "ns"
    assert labels["container"] == "server"
    assert labels["endpoint"] == "metrics"
    assert labels["job"] == "modelfleet-pods"
    assert active[0]["scrapeUrl"] == "http://127.0.0.4:8082/metrics"


def _targets_of(run_config: dict[str, object], tmp_path: Path) -> list[dict[str, Any]]:
    """Start Debian's prometheus on loopback with `run_config`; its active targets."""
    import httpx
    from modelfleet_dev.localcluster.ports import free_port

    (tmp_path / "run.yml").write_text(yaml.safe_dump(run_config))
    port = free_port()
    binary = shutil.which("prometheus")
    assert binary
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'run.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=1).json()
                if body["data"]["activeTargets"] or body["data"]["droppedTargets"]:
                    active: list[dict[str, object]] = body["data"]["activeTargets"]
                    return active
            except (httpx.HTTPError, ValueError):  # not up yet, or "Service Unavailable"
                pass
            time.sleep(0.2)
        pytest.fail("prometheus never discovered the file-SD targets")
    finally:
        proc.terminate()
        proc.wait(10)


# --- install -------------------------------------------------------------------------------
def _render(folder: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_install_kustomization_changes_only_the_prometheus_url(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        install.operator_kustomization("http://10.240.0.1:9090", tmp_path)
    )
    ours, overlay = _render(tmp_path), _render(install.OVERLAY_DIR)
    assert len(ours) == len(overlay)
    changed = [(a, b) for a, b in zip(ours, overlay, strict=True) if a != b]
    assert len(changed) == 1
    deployment, before = changed[0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[install.PROMETHEUS_ENV] == "http://10.240.0.1:9090"
    (old,) = before["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    assert len(container["env"]) == len(old["env"])
