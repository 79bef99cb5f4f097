"""Process-backed pods: real local processes behind pods labelled as model servers."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import httpx
from modelfleet_dev.localcluster import LocalCluster
from modelfleet_dev.localcluster.procs import alive

from tests.integration.waiting import wait_for

FAKE_SERVER = Path(__file__).with_name("cluster_fake_server.py")
LABELS = {"app.kubernetes.io/name": "modelfleet-server", "modelfleet.io/deployment": "fake"}


def server_pod_spec(env: dict[str, str]) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 10}
    return {
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "server",
                "image": "modelfleet/server:dev",
                "command": ["python", str(FAKE_SERVER)],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "metrics", "containerPort": 8082},
                ],
                "readinessProbe": probe,
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}},
            }
        ],
    }


def create_pod(cluster: LocalCluster, namespace: str, name: str, env: dict[str, str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "spec": server_pod_spec(env),
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))


def get_pod(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def is_ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_process_backed_pod_is_ready_only_when_its_probe_answers_and_prometheus_scrapes_it(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    ready_file = tmp_path / "ready"
    create_pod(
        cluster,
        namespace,
        "srv",
        {"FAKE_READY_FILE": str(ready_file), "MODELFLEET_DEPLOYMENT": "fake"},
    )

    def running() -> dict[str, Any] | None:
        pod = get_pod(cluster, namespace, "srv")
        statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
        annotated = (pod or {}).get("metadata", {}).get("annotations", {})
        if (
            statuses
            and "running" in statuses[0]["state"]
            and annotated.get("modelfleet.io/local-address")
        ):
            return pod
        return None

    pod = wait_for("the process to run", running)
    address = pod["metadata"]["annotations"]["modelfleet.io/local-address"]
    assert address.startswith("127.0.0.1:")
    assert pod["metadata"]["annotations"]["modelfleet.io/local-metrics-address"].startswith(
        "127.0.0.1:"
    )
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("10.244.128.0/17")
    assert pod["spec"]["nodeName"].startswith("kwok-")

    # The process answers 503 on its readiness probe (once it listens): the pod stays not Ready.
    def readiness_code() -> int | None:
        try:
            return httpx.get(f"http://{address}/v2/health/ready").status_code
        except httpx.TransportError:  # running, but not listening yet
            return None

    assert wait_for("the process to listen", readiness_code) == 503
    time.sleep(3)  # three probe periods of the runner
    assert not is_ready(get_pod(cluster, namespace, "srv"))

    ready_file.touch()
    cluster.kubectl("wait", "--for=condition=Ready", "pod/srv", "-n", namespace, "--timeout=30s")
    assert httpx.get(f"http://{address}/v2/health/ready").status_code == 200

    # Prometheus scrapes it, with the pod's namespace, name and labels as target labels.
    prometheus = cluster.prometheus
    assert prometheus is not None
    promql = f'fake_server_up{{namespace="{namespace}", pod="srv"}}'
    series = wait_for("Prometheus to scrape the pod", lambda: prometheus.query(promql))
    labels = series[0]["metric"]
    assert series[0]["value"][1] == "1"
    assert labels["app_kubernetes_io_name"] == "modelfleet-server"
    assert labels["modelfleet_io_deployment"] == "fake"
    assert labels["deployment"] == "fake"

    # Deleting the pod stops its process (SIGTERM) and then removes the pod.
    process = cluster.runner.process(namespace, "srv")
    assert process is not None
    assert process.managed is not None
    pid, started = process.managed.pid, process.managed.started
    cluster.kubectl("delete", "pod", "srv", "-n", namespace, "--timeout=30s")
    assert get_pod(cluster, namespace, "srv") is None
    wait_for("the process to exit", lambda: not alive(pid, started), timeout=10)
    assert not (prometheus.sd_dir / f"{namespace}_srv.json").exists()


def test_a_crashing_process_is_reported_in_container_statuses_and_restarted(
    cluster: LocalCluster, namespace: str
) -> None:
    message = "model file not found: /models/fraud.onnx"
    create_pod(cluster, namespace, "crash", {"FAKE_EXIT_CODE": "3", "FAKE_STDERR": message})

    def crashed_twice() -> dict[str, Any] | None:
        pod = get_pod(cluster, namespace, "crash")
        statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 2 else None

    status = wait_for("two restarts", crashed_twice)
    assert status["ready"] is False
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert message in status["lastState"]["terminated"]["message"]
    pod = get_pod(cluster, namespace, "crash")
    assert pod is not None
    assert not is_ready(pod)
    waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting")
    if waiting:  # between two runs of the process
        assert waiting["reason"] == "CrashLoopBackOff"
        assert message in waiting["message"]


def test_a_deployment_of_process_backed_pods_rolls_out_and_its_service_gets_endpoints(
    cluster: LocalCluster, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fake", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": server_pod_spec({})},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fake", "namespace": namespace},
        "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
    cluster.kubectl("rollout", "status", "deployment/fake", "-n", namespace, "--timeout=60s")

    def ready_endpoints() -> list[dict[str, Any]]:
        slices = json.loads(
            cluster.kubectl(
                "get",
                "endpointslices",
                "-n",
                namespace,
                "-l",
                "kubernetes.io/service-name=fake",
                "-o",
                "json",
            ).stdout
        )["items"]
        endpoints = [e for s in slices for e in s.get("endpoints") or []]
        ready = [e for e in endpoints if e["conditions"].get("ready")]
        return ready if len(ready) == 2 else []

    endpoints = wait_for("two ready endpoints", ready_endpoints)
    assert all(e["addresses"][0].startswith("10.244.") for e in endpoints)

    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    processes = [cluster.runner.process(namespace, p["metadata"]["name"]) for p in pods]
    assert all(p is not None and p.managed is not None for p in processes)
    for pod in pods:
        address = pod["metadata"]["annotations"]["modelfleet.io/local-address"]
        assert httpx.get(f"http://{address}/v2/health/live").status_code == 200

    cluster.kubectl("scale", "deployment/fake", "-n", namespace, "--replicas=0")
    wait_for(
        "the processes to stop",
        lambda: all(
            p is None or p.managed is None
            for p in (cluster.runner.process(namespace, q["metadata"]["name"]) for q in pods)
        ),
    )


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def test_the_model_server_runs_as_a_process_backed_pod(
    cluster: LocalCluster, namespace: str
) -> None:
    """The contract between the runner and `modelfleet serve`: env, ports, probes, metrics."""
    labels = {**LABELS, "modelfleet.io/slot": "blue"}
    env = {
        "MODELFLEET_MODEL_URI": (EXAMPLES / "model.onnx").as_uri(),
        "MODELFLEET_MODEL_NAME": "fraud",
        "MODELFLEET_CACHE_DIR": "/var/cache/modelfleet",
        "MODELFLEET_DEPLOYMENT": "fraud",
        "MODELFLEET_SLOT": "blue",
        "MODELFLEET_REVISION": "r1",
    }
    spec = server_pod_spec(env)
    container = spec["containers"][0]
    container["command"] = ["modelfleet", "serve"]
    container["volumeMounts"] = [{"name": "cache", "mountPath": "/var/cache/modelfleet"}]
    spec["volumes"] = [{"name": "cache", "emptyDir": {}}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fraud", "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/fraud", "-n", namespace, "--timeout=90s")

    ready = get_pod(cluster, namespace, "fraud")
    assert ready is not None
    address = ready["metadata"]["annotations"]["modelfleet.io/local-address"]
    request = json.loads((EXAMPLES / "request.json").read_text())
    for _ in range(5):
        answer = httpx.post(f"http://{address}/v2/models/fraud/infer", json=request, timeout=10)
        assert answer.status_code == 200, answer.text

    prometheus = cluster.prometheus
    assert prometheus is not None
    promql = (
        f'sum(modelfleet_requests_total{{namespace="{namespace}", pod="fraud",'
        ' deployment="fraud", slot="blue", code="200"})'
    )
    counted = wait_for(
        "Prometheus to count the 5 requests",
        lambda: [r for r in prometheus.query(promql) if r["value"][1] == "5"],
    )
    assert counted[0]["value"][1] == "5"
