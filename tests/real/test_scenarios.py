"""The real-node issue's headline scenarios on the real tier: the operator as a Pod installed with
`kubectl apply -k`, model servers from our image on a real node, Prometheus discovering them
through the API server, traffic through Traefik's Gateway, counted by a client (realnode.load).

S1  install → operator Pod Ready → a ModelDeployment v1 Ready (test_s1_…)
S8  a client Pod calls the model through its ClusterIP Service (test_s8_…)
S3  a v2 answering 5 % 5xx through Traefik is rolled back at 10 %, the measured rate in the
    condition, and the client sees v1 only afterwards (test_s3_…);
    its other half, a slow canary rolled back on p99, is test_scenario_slow_canary.py
S2  v2 promoted 10 → 25 → 50 → 100 through Traefik under steady traffic: the client's measured
    canary share within 3 points of each weight, 0 failed requests including the old slot's
    scale-down (test_s2_…)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from modelfleet_dev.realnode import clients, config, install, prometheus, traefik
from modelfleet_dev.realnode.images import SERVER_REF
from modelfleet_dev.realnode.load import Load

from tests.real.conftest import RealStack
from tests.real.waiting import wait_for

pytestmark = pytest.mark.slow

REQUEST = json.loads((install.MODELS_DIR / "request.json").read_text())
SETTLE_S = 2.0  # after a weight shows in status, before its measuring window opens
SHARE_TOLERANCE = 3.0  # points


def _wait(what: str, check: Callable[[], Any], timeout: float = 180.0, every: float = 0.5) -> Any:
    """`wait_for` with the scenarios' longer default timeout."""
    return wait_for(what, check, timeout, every)


def _get(stack: RealStack, path: str, **params: str) -> dict[str, Any]:
    """GET `path`; query parameters go in `params` (httpx drops a query written in the path)."""
    api = stack.real.control_plane.http()
    try:
        return api.get(path, **params) or {}
    finally:
        api.close()


def _apply(stack: RealStack, namespace: str, manifest: dict[str, Any]) -> None:
    stack.real.control_plane.kubectl(
        "-n", namespace, "apply", "-f", "-", input=json.dumps(manifest)
    )


def model_deployment(
    stack: RealStack,
    name: str,
    model_file: str,
    version: str,
    hostname: str | None = None,
    env: dict[str, str] | None = None,
    **rollout: Any,
) -> dict[str, Any]:
    """A ModelDeployment on the real node, routed by an HTTPRoute on Traefik's Gateway, with
    short steps so a rollout takes about a minute."""
    gateway: dict[str, Any] = {
        "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": "traefik"}],
        "path": "/",
    }
    if hostname:
        gateway["hostnames"] = [hostname]
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"{stack.models_url}/{model_file}", "version": version},
            "replicas": 1,
            "server": {"env": [{"name": k, "value": v} for k, v in (env or {}).items()]},
            "nodeSelector": dict(config.REAL_NODE_SELECTOR),
            "tolerations": [dict(config.REAL_TOLERATION)],
            "traffic": {"gateway": gateway},
            "rollout": {
                "steps": [10, 25, 50, 100],
                "stepDuration": "15s",
                "scaleDownDelay": "5s",
                "keepPrevious": "0",
                "analysis": {
                    "interval": "5s",
                    "minRequests": 20,
                    # the scenario is about traffic shares and failures on a loaded 2-core
                    # machine, not latency
                    "maxP99LatencyMs": 5000,
                },
                **rollout,
            },
        },
    }


def _wait_md_ready(stack: RealStack, namespace: str, name: str, timeout: int = 240) -> None:
    done = stack.real.control_plane.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", f"md/{name}", f"--timeout={timeout}s",
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        md = _get(stack, _md_path(namespace, name))
        pytest.fail(f"md/{name} not Ready: {done.stderr.strip()}; status {md.get('status')}")


def _status(stack: RealStack, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = _get(stack, _md_path(namespace, name)).get("status", {})
    return status


def _start_v1(stack: RealStack, namespace: str, gateway: str, **rollout: Any) -> tuple[str, str]:
    """`fraud` v1 applied, Ready and answering through the Gateway; its name and host."""
    name, host = "fraud", f"{namespace}.real.test"
    _apply(stack, namespace, model_deployment(stack, name, "model.txt", "v1", host, **rollout))
    _wait_md_ready(stack, namespace, name)
    _wait("v1 through the Gateway", lambda: _through_gateway(gateway, host, name) == "v1", 60)
    return name, host


def _md_path(namespace: str, name: str) -> str:
    return f"/apis/modelfleet.io/v1alpha1/namespaces/{namespace}/modeldeployments/{name}"


def _pods(stack: RealStack, namespace: str, selector: str) -> list[dict[str, Any]]:
    path = f"/api/v1/namespaces/{namespace}/pods"
    items: list[dict[str, Any]] = _get(stack, path, labelSelector=selector).get("items", [])
    return items


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- S1 ------------------------------------------------------------------------------------
def test_s1_apply_k_operator_pod_ready_then_v1_ready(
    real_stack: RealStack, real_namespace: str
) -> None:
    """`kubectl apply -k` of the overlay (in real_stack) → the operator Pod Ready on the real node,
    its readiness endpoint answering → md v1 Ready → Prometheus scraping its pod."""
    print(f"stack installed in {real_stack.timings}")
    pods = _pods(
        real_stack, install.OPERATOR_NAMESPACE, "app.kubernetes.io/name=modelfleet-operator"
    )
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]  # manifests/: 2, peering

    def both_ready() -> list[dict[str, Any]] | None:
        # acting and standing by are both Ready (operator/peering.py): 2/2, as GitOps tools expect
        live = _pods(
            real_stack, install.OPERATOR_NAMESPACE, "app.kubernetes.io/name=modelfleet-operator"
        )
        live = [p for p in live if "deletionTimestamp" not in p["metadata"]]
        return live if len(live) == 2 and all(_ready(p) for p in live) else None

    def states(pods: list[dict[str, Any]]) -> list[str] | None:
        """Each pod's peering state from its own /readyz body (200 on both), once they agree."""
        found = []
        for pod in pods:
            container = pod["spec"]["containers"][0]
            health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] == "health"
            path = container["readinessProbe"]["httpGet"]["path"]
            target = f"http://{pod['status']['podIP']}:{health}{path}"
            curl = ["curl", "-s", "-w", "\n%{http_code}", "--max-time", "3", target]
            body, _, code = clients.run_inside(real_stack.real.netns, curl).stdout.rpartition("\n")
            if code != "200":
                return None
            found.append(json.loads(body)["state"])
        return found if sorted(found) == ["acting", "standby"] else None

    pods = _wait("both operator replicas Ready", both_ready, 60)
    # a newer replica takes over from an older one (priority = start time): wait for it to settle
    roles = _wait("one replica acting, the other standing by", lambda: states(pods), 60)
    print(f"operator replicas: {roles}")
    for pod in pods:
        assert pod["spec"]["nodeName"] in real_stack.real.node_names
        container = pod["spec"]["containers"][0]
        assert container["image"] == "localhost/modelfleet-operator:dev"
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env[install.PROMETHEUS_ENV] == real_stack.prometheus_url
        # the liveness probe means something too: asked on the Pod's own address, it passes
        health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
        path = container["livenessProbe"]["httpGet"]["path"]
        target = f"http://{pod['status']['podIP']}:{health}{path}"
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", target]
        assert clients.run_inside(real_stack.real.netns, curl).stdout == "200"

    md = model_deployment(real_stack, "fraud", "model.txt", "v1")
    _apply(real_stack, real_namespace, md)
    _wait_md_ready(real_stack, real_namespace, "fraud")
    status = _get(real_stack, _md_path(real_namespace, "fraud"))["status"]
    assert status["activeVersion"] == "v1"
    slot_pods = _pods(real_stack, real_namespace, "modelfleet.io/deployment=fraud")
    assert slot_pods
    assert all(p["spec"]["nodeName"] in real_stack.real.node_names for p in slot_pods)
    # Prometheus found the slot pod through the API server, with the labels the operator queries;
    # a new PodMonitor reaches it through prometheus-operator's config Secret, the kubelet's next
    # sync of the Prometheus pod (every 10 s here), a reload, discovery, and a 5 s scrape
    query = f'up{{namespace="{real_namespace}",container="server"}} == 1'
    scraped = _wait(
        f"Prometheus scraping {query}", lambda: prometheus.query(real_stack.real, query), 90
    )
    assert {s["metric"]["pod"] for s in scraped} == {p["metadata"]["name"] for p in slot_pods}


# --- S8 ------------------------------------------------------------------------------------
# A client as an application would write it: a connection refused or reset while kube-proxy is
# still programming the new Service's rules is retried (at most 30 s); an HTTP error is not.
# What it got, or why it gave up, goes to the termination message the test reads.
_CLIENT = """
import json, sys, time, urllib.error, urllib.request
url, body = sys.argv[1], sys.argv[2].encode()
request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read().decode()
        break
    except urllib.error.HTTPError as error:
        text = f"HTTP {error.code}: {error.read().decode()}"
        break
    except OSError as error:
        if time.monotonic() > deadline:
            text = f"gave up: {error!r}"
            break
        time.sleep(0.5)
with open("/dev/termination-log", "w") as out:
    out.write(text)
document = json.loads(text)
assert document["outputs"], "no outputs"
"""


def test_s8_client_pod_calls_the_model_through_its_cluster_ip(
    real_stack: RealStack, real_namespace: str
) -> None:
    _apply(real_stack, real_namespace, model_deployment(real_stack, "churn", "model.txt", "v1"))
    _wait_md_ready(real_stack, real_namespace, "churn")
    service = _get(real_stack, f"/api/v1/namespaces/{real_namespace}/services/churn")
    cluster_ip = service["spec"]["clusterIP"]
    port = service["spec"]["ports"][0]["port"]
    url = f"http://{cluster_ip}:{port}/v2/models/churn/infer"
    pod = clients.real_pod(
        "client", SERVER_REF, ["python", "-c", _CLIENT, url, json.dumps(REQUEST)], restart="Never"
    )
    _apply(real_stack, real_namespace, pod)

    def finished() -> dict[str, Any] | None:
        got = _get(real_stack, f"/api/v1/namespaces/{real_namespace}/pods/client")
        phase = got.get("status", {}).get("phase")
        return got if phase in ("Succeeded", "Failed") else None

    done = _wait("the client pod to finish", finished, 120)
    state = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", state
    answer = json.loads(state["message"])
    assert answer["model_name"] == "churn"
    assert answer["model_version"] == "v1"
    assert len(answer["outputs"][0]["data"]) >= 1


# --- S2 ------------------------------------------------------------------------------------
def _through_gateway(gateway: str, host: str, name: str) -> str | None:
    try:
        answer = httpx.post(
            f"http://{gateway}/v2/models/{name}/infer",
            json=REQUEST,
            headers={"host": host},
            timeout=5,
        )
    except httpx.HTTPError:
        return None
    return str(answer.json().get("model_version")) if answer.status_code == 200 else None


def test_s2_v2_promoted_through_traefik_with_measured_shares_and_no_failed_request(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    """Steady traffic (50 req/s) through Traefik while v2 goes 10 → 25 → 50 → 100: in each step,
    from 2 s after the weight shows in status until 0.5 s before the next change, the share of
    v2 answers the client counted is within 3 points of the weight; over the whole rollout,
    including the old slot's scale-down, no request fails."""
    name, host = "fraud", f"{real_namespace}.real.test"
    _apply(real_stack, real_namespace, model_deployment(real_stack, name, "model.txt", "v1", host))
    _wait_md_ready(real_stack, real_namespace, name)
    _wait(
        "v1 answering through the Gateway",
        lambda: _through_gateway(gateway, host, name) == "v1",
        60,
    )

    load = Load(
        f"http://{gateway}/v2/models/{name}/infer",
        REQUEST,
        rate=50,
        seconds=360,
        headers={"host": host},
    ).start()
    try:
        time.sleep(3)
        old_slot = _get(real_stack, _md_path(real_namespace, name))["status"]["activeSlot"]
        v2 = model_deployment(real_stack, name, "model-v2.txt", "v2", host)
        _apply(real_stack, real_namespace, v2)
        changes = _follow_rollout(real_stack, real_namespace, name, old_slot, load)
        time.sleep(3)  # traffic goes on after the old slot is gone
    finally:
        summary = load.stop()

    md = _get(real_stack, _md_path(real_namespace, name))
    print(f"weights seen: {changes}; answers: {summary.by_code}, versions {summary.by_version}")
    assert md["status"]["activeVersion"] == "v2", md["status"]
    weights = [weight for weight, _ in changes["weights"]]
    assert weights[:3] == [10, 25, 50], changes
    for weight, since, until in _windows(changes):
        window = load.summary(since + SETTLE_S, until - 0.5)
        assert window.requests >= 100, f"weight {weight}: only {window.requests} requests"
        share = window.share("v2")
        print(f"weight {weight}: v2 share {share:.1f} % of {window.requests} requests")
        assert abs(share - weight) <= SHARE_TOLERANCE, (weight, share, window.by_version)
    assert summary.requests >= 50 * 30
    assert summary.failed == 0, (summary.by_code, summary.failures())


def _windows(changes: dict[str, Any]) -> list[tuple[int, float, float]]:
    """(weight, from, to) per step: a step lasts until the next weight shows; weight 100 (the
    last step, then the promotion) lasts until the old slot's pods are gone."""
    starts = [(w, t) for w, t in changes["weights"] if w < 100]
    full = [t for w, t in changes["weights"] if w == 100]
    starts.append((100, min([*full, changes["promoted"]])))
    ends = [t for _, t in starts[1:]] + [changes["scaled_down"]]
    return [(w, t, end) for (w, t), end in zip(starts, ends, strict=True)]


def _follow_rollout(
    stack: RealStack,
    namespace: str,
    name: str,
    old_slot: str,
    load: Load,
    timeout: float = 300,
    version: str = "v2",
) -> dict[str, Any]:
    """Poll status; when each weight appeared, when `version` became active, when the old slot's pods
    were gone (monotonic times, like the load's)."""
    weights: list[tuple[int, float]] = []
    promoted = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        status = _get(stack, _md_path(namespace, name)).get("status", {})
        canary = status.get("canary")
        if canary and canary.get("version") == version:
            weight = int(canary.get("weight", 0))
            if weight and (not weights or weights[-1][0] != weight):
                weights.append((weight, now))
        if promoted is None and status.get("activeVersion") == version and not canary:
            promoted = now
        if promoted is not None:
            selector = f"modelfleet.io/deployment={name},modelfleet.io/slot={old_slot}"
            if not _pods(stack, namespace, selector):
                return {"weights": weights, "promoted": promoted, "scaled_down": time.monotonic()}
        if (
            status.get("phase") == "Degraded"
            or (canary or {}).get("analysis", {}).get("phase") == "Fail"
        ):
            pytest.fail(f"the rollout failed: {status}", pytrace=False)
        if not load.running:
            pytest.fail("the load generator ended before the rollout", pytrace=False)
        time.sleep(0.25)
    pytest.fail(f"{version} not promoted, the old slot not gone in {timeout:.0f}s: {weights}")


# --- S3 ------------------------------------------------------------------------------------
def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_s3_a_canary_answering_5xx_through_traefik_is_rolled_back(
    real_stack: RealStack, real_namespace: str, gateway: str
) -> None:
    name, host = _start_v1(real_stack, real_namespace, gateway)
    url = f"http://{gateway}/v2/models/{name}/infer"
    load = Load(url, REQUEST, rate=50, seconds=240, headers={"host": host}).start()
    try:
        bad = model_deployment(
            real_stack, name, "model-v2.txt", "v2", host, {"MODELFLEET_FAULT_ERROR_RATE": "0.05"}
        )
        _apply(real_stack, real_namespace, bad)

        def rolled_back() -> dict[str, Any] | None:
            status = _get(real_stack, _md_path(real_namespace, name)).get("status", {})
            history = status.get("history") or [{}]
            return status if history[0].get("outcome") == "RolledBack" else None

        status = _wait("v2 rolled back", rolled_back, 200)
        rolled_back_at = time.monotonic()
        time.sleep(SETTLE_S + 5)
    finally:
        summary = load.stop()
    message = _condition(status, "Degraded")["message"]
    print(f"Degraded: {message}; answers {summary.by_code}, versions {summary.by_version}")
    assert message.startswith("error rate "), message
    measured = float(message.removeprefix("error rate ").split("%")[0].strip())
    assert 1.0 < measured < 15.0, message  # 5 % injected, counted over a few hundred requests
    assert message.endswith("at 10%"), message
    assert status["activeVersion"] == "v1"
    after = load.summary(rolled_back_at + SETTLE_S)
    assert after.requests >= 100
    assert after.failed == 0, after.failures()
    assert after.by_version == {"v1": after.requests}
    assert summary.failed > 0  # the injected errors reached the client before the rollback
