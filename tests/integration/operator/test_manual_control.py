"""Manual control through the kubectl plugin, on the replica-ratio router (no traffic block).

No traffic reaches the canary here, so every analysis is Inconclusive and the rollout holds at its
weight until a command moves it: that makes each command's effect observable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.operator.kube import (
    backend_weights,
    items,
    model_deployment,
    must_get,
    status,
    wait_for,
    wait_ready,
)
from tests.operator_fixtures import OperatorProcess

PLUGIN = Path(sys.executable).parent / "kubectl-modelfleet"


def run_plugin(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def plugin(cluster: Any, *args: str) -> str:
    done = run_plugin(cluster, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _selector(cluster: Any, namespace: str) -> dict[str, str]:
    selector: dict[str, str] = must_get(cluster, "service", "fraud", namespace)["spec"]["selector"]
    return selector


def _weight(cluster: Any, namespace: str) -> int | None:
    canary = status(cluster, "fraud", namespace).get("canary")
    return canary["weight"] if canary else None


def test_replica_ratio_split_and_every_command(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    rollout = {
        "steps": [50, 100],
        "stepDuration": "5s",
        "progressDeadline": "10m",
        "scaleDownDelay": "2s",
        "analysis": {"interval": "2s"},
    }
    spec: dict[str, Any] = {"model": {"uri": example_model(), "version": "v1"}, "rollout": rollout}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "blue"

    spec["model"] = {"uri": example_model("model-v2.onnx"), "version": "v2"}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_for(lambda: _weight(cluster, namespace) == 50, 60, "the canary at 50 %")
    # replica ratio: the stable Service selects both slots, one pod each
    assert "modelfleet.io/slot" not in _selector(cluster, namespace)
    assert must_get(cluster, "deployment", "fraud-green", namespace)["spec"]["replicas"] == 1
    wait_for(
        lambda: status(cluster, "fraud", namespace)["canary"]["analysis"].get("phase"),
        30,
        "a first (inconclusive) measurement",
    )
    assert status(cluster, "fraud", namespace)["canary"]["analysis"]["phase"] == "Inconclusive"

    assert "acknowledged" in plugin(cluster, "pause", "fraud", "-n", namespace)
    assert status(cluster, "fraud", namespace)["phase"] == "Paused"
    plugin(cluster, "resume", "fraud", "-n", namespace)
    assert status(cluster, "fraud", namespace)["phase"] == "Progressing"

    plugin(cluster, "promote", "fraud", "-n", namespace)  # skip the 50 % analysis
    wait_for(lambda: _weight(cluster, namespace) == 100, 60, "the canary at 100 %")
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "green"

    plugin(cluster, "abort", "fraud", "-n", namespace)
    current = status(cluster, "fraud", namespace)
    assert current["phase"] == "Degraded"
    assert current["history"][0]["outcome"] == "Aborted"
    assert "canary" not in current
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "blue"
    wait_for(
        lambda: not items(cluster, "pods", namespace, "modelfleet.io/slot=green"),
        60,
        "the aborted canary scaled down after scaleDownDelay",
    )

    plugin(cluster, "retry", "fraud", "-n", namespace)
    wait_for(lambda: _weight(cluster, namespace) == 50, 60, "the retried canary at 50 %")
    plugin(cluster, "promote", "--full", "fraud", "-n", namespace)
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("activeVersion") == "v2",
        60,
        "v2 promoted",
    )
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "green"

    said = plugin(cluster, "undo", "fraud", "-n", namespace)
    assert "v1 is still warm in slot blue until " in said, said  # said before acting
    assert "one router write" in said
    current = status(cluster, "fraud", namespace)
    assert (current["activeSlot"], current["activeVersion"]) == ("blue", "v1")
    assert current["history"][0]["outcome"] == "Undone"
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "blue"

    view = plugin(cluster, "status", "fraud", "-n", namespace)
    assert "Undone" in view
    assert "v1 (slot blue)" in view


def test_a_spec_revert_inside_keep_previous_is_an_undo_and_outside_a_rollout(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    rollout = {"steps": [50, 100], "stepDuration": "5s", "keepPrevious": "10m"}
    traffic = {"gateway": {"parentRefs": [{"name": "gw"}]}}
    v1 = {"uri": example_model(), "version": "v1"}
    apply_yaml(model_deployment("fraud", namespace, model=v1, rollout=rollout, traffic=traffic))
    wait_ready(cluster, "fraud", namespace)
    v2 = {"uri": example_model("model-v2.onnx"), "version": "v2"}
    apply_yaml(model_deployment("fraud", namespace, model=v2, rollout=rollout, traffic=traffic))
    wait_for(lambda: _weight(cluster, namespace) == 50, 60, "the canary at 50 %")
    plugin(cluster, "promote", "--full", "fraud", "-n", namespace)
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("previous"), 60, "v2 promoted, v1 warm"
    )
    route = must_get(cluster, "httproute", "fraud", namespace)
    assert backend_weights(route) == [("fraud-green", 100)]

    # the spec goes back to v1 (as `git revert` would): one flip, no steps replayed
    apply_yaml(model_deployment("fraud", namespace, model=v1, rollout=rollout, traffic=traffic))
    current = wait_for(
        lambda: (s := status(cluster, "fraud", namespace)).get("activeVersion") == "v1" and s,
        30,
        "the revert undone to the warm slot",
    )
    assert current["activeSlot"] == "blue"
    assert "canary" not in current
    assert current["history"][0]["outcome"] == "Undone"
    assert "spec reverted" in current["history"][0]["message"]
    assert backend_weights(must_get(cluster, "httproute", "fraud", namespace)) == [
        ("fraud-blue", 100)
    ]
    assert _selector(cluster, namespace)["modelfleet.io/slot"] == "blue"
    events = items(cluster, "events", namespace)
    assert any(event.get("reason") == "Undone" for event in events)

    # nothing is warm any more: the plugin says a revert would be a normal rollout, and sends nothing
    acknowledged = status(cluster, "fraud", namespace).get("acknowledgedCommand")
    done = run_plugin(cluster, "undo", "fraud", "-n", namespace)
    assert done.returncode == 1
    assert "no previous slot is warm" in done.stderr, done.stderr
    assert "normal rollout" in done.stderr
    assert status(cluster, "fraud", namespace).get("acknowledgedCommand") == acknowledged


def test_steps_shortened_at_step_two_neither_stick_nor_block_abort_or_a_new_revision(
    cluster: Any,
    namespace: str,
    operator: OperatorProcess,
    apply_yaml: Callable[[Any], str],
    example_model: Callable[..., str],
) -> None:
    rollout: dict[str, Any] = {
        "steps": [10, 25, 50, 100],
        "stepDuration": "5s",
        "progressDeadline": "10m",
        "scaleDownDelay": "2s",
        "analysis": {"interval": "2s"},
    }
    spec: dict[str, Any] = {"model": {"uri": example_model(), "version": "v1"}, "rollout": rollout}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    wait_ready(cluster, "fraud", namespace)

    def at_step_two_then_shortened(version: str, model: str) -> None:
        """The canary walked to step 2 of [10, 25, 50, 100] by `promote` (no traffic: it holds
        at each weight), then the steps edited to [50, 100] under it."""
        rollout["steps"] = [10, 25, 50, 100]
        spec["model"] = {"uri": example_model(model), "version": version}
        apply_yaml(model_deployment("fraud", namespace, **spec))
        wait_for(lambda: _weight(cluster, namespace) == 10, 60, f"{version} at 10 %")
        plugin(cluster, "promote", "fraud", "-n", namespace)
        wait_for(lambda: _weight(cluster, namespace) == 25, 60, f"{version} at 25 %")
        plugin(cluster, "promote", "fraud", "-n", namespace)
        wait_for(lambda: _weight(cluster, namespace) == 50, 60, f"{version} at 50 %")
        assert status(cluster, "fraud", namespace)["canary"]["stepIndex"] == 2
        rollout["steps"] = [50, 100]
        apply_yaml(model_deployment("fraud", namespace, **spec))
        canary = wait_for(
            lambda: (
                (c := status(cluster, "fraud", namespace).get("canary", {})).get("steps")
                == [50, 100]
                and c
            ),
            30,
            f"{version}'s step re-anchored in [50, 100]",
        )
        assert (canary["stepIndex"], canary["weight"]) == (0, 50)  # no weight gained by the edit

    at_step_two_then_shortened("v2", "model-v2.onnx")
    assert "acknowledged" in plugin(cluster, "abort", "fraud", "-n", namespace)
    current = status(cluster, "fraud", namespace)
    assert (current["phase"], current["history"][0]["outcome"]) == ("Degraded", "Aborted")
    assert "canary" not in current

    at_step_two_then_shortened("v3", "model.onnx")
    # a new revision (v4) supersedes the canary and walks the new steps: 50 %, then 100 %
    spec["model"] = {"uri": example_model("model-v2.onnx"), "version": "v4"}
    apply_yaml(model_deployment("fraud", namespace, **spec))
    current = wait_for(
        lambda: (
            (s := status(cluster, "fraud", namespace)).get("canary", {}).get("version") == "v4"
            and s
        ),
        30,
        "v4 superseding v3",
    )
    assert current["history"][0]["outcome"] == "Superseded"
    wait_for(lambda: _weight(cluster, namespace) == 50, 60, "v4 at 50 %, the new first step")
    plugin(cluster, "promote", "--full", "fraud", "-n", namespace)
    wait_for(
        lambda: status(cluster, "fraud", namespace).get("activeVersion") == "v4", 60, "v4 promoted"
    )
    assert "reconcile failed" not in operator.logs()
