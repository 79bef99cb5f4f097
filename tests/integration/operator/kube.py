"""Small helpers for the operator's integration tests: manifests, reads and polling via kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def model_deployment(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def get(cluster: Any, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if done.returncode != 0:
        return None
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def must_get(cluster: Any, kind: str, name: str, namespace: str) -> dict[str, Any]:
    obj = get(cluster, kind, name, namespace)
    assert obj is not None, f"{kind}/{name} does not exist in {namespace}"
    return obj


def items(cluster: Any, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    found: list[dict[str, Any]] = json.loads(cluster.kubectl(*args).stdout)["items"]
    return found


def wait_for(check: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll until `check()` returns something truthy; fail with `what` (and the last value)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def status(cluster: Any, name: str, namespace: str) -> dict[str, Any]:
    obj = get(cluster, "md", name, namespace) or {}
    found: dict[str, Any] = obj.get("status", {})
    return found


def condition(status_: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status_.get("conditions", []) if c["type"] == type_), {})


def rule_weights(rule: dict[str, Any]) -> list[tuple[str, int]]:
    """An HTTPRoute rule's (backend, weight) pairs; a weight left out is Gateway API's 1."""
    return [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]


def backend_weights(route: dict[str, Any]) -> list[tuple[str, int]]:
    return rule_weights(route["spec"]["rules"][0])


def wait_ready(cluster: Any, name: str, namespace: str, timeout: int = 90) -> None:
    """`kubectl wait --for=condition=Ready md/NAME`, exactly as a user would."""
    done = cluster.kubectl(
        "wait",
        "--for=condition=Ready",
        f"md/{name}",
        "-n",
        namespace,
        f"--timeout={timeout}s",
        check=False,
    )
    assert done.returncode == 0, done.stderr + json.dumps(status(cluster, name, namespace))
