"""The model-aware chapters of the demo: a silent bug that only the paired gate sees, then a good
model promoted through every gate and undone in one router write.

4. v4 is the example model retrained with its input features permuted: every answer 200 and fast,
   and its prediction distribution looks like v2's. Under the error, latency and drift gates it
   passes a step (the measured values are printed); then the paired gate is switched on (a spec edit
   of the analysis, the same revision: no restart) and the next look rolls it back, with the measured
   agreement in the Degraded condition.
5. v5 (a good retrain) is promoted through every gate, the previous slot kept warm (keepPrevious);
   `kubectl modelfleet undo` flips all traffic back to v2, timed from the command to the HTTPRoute write.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelfleet_dev.harness.model_aware import model_aware_analysis
from modelfleet_dev.harness.rollout import apply
from modelfleet_dev.harness.weights import backends_from_httproute

from .cluster import BIN
from .spec import LIMITS, NAME, NAMESPACE, manifest
from .watch import condition, describe

if TYPE_CHECKING:
    from .story import Story

MAX_DRIFT = 0.2
MIN_DRIFT_SAMPLES = 1000
MIN_AGREEMENT = 0.9
KEEP_PREVIOUS = "5m"
_AGREEMENT = re.compile(r"agreement ([0-9.]+) % < ")


def gates(story: Story, *, paired: bool) -> dict[str, Any]:
    """The drift gate, and with `paired` the paired gate replaying examples/models/reference.csv
    (read by the operator from where this tier serves the model files)."""
    return model_aware_analysis(
        max_prediction_drift=MAX_DRIFT,
        min_drift_samples=MIN_DRIFT_SAMPLES,
        min_agreement=MIN_AGREEMENT if paired else None,
        reference_uri=story.cluster.model_uri("reference.csv"),
    )


def chapter_silent_bug(story: Story) -> None:
    story.chapter(4, "v4: a silent bug (features permuted): 200, fast, and a familiar distribution")
    generic = manifest(
        story.cluster, model="model-permuted.txt", version="v4", gates=gates(story, paired=False)
    )
    apply(story.cluster, NAMESPACE, generic)
    story.view.say(
        "applied v4 (examples/models/model-permuted.txt) with the error, p99 and prediction-drift "
        f"gates (PSI ≤ {MAX_DRIFT:.2f} over at least {MIN_DRIFT_SAMPLES} canary rows)"
    )
    watch = story.new_watch("v4")
    story.watches["v4"] = watch
    status = story.follow(watch, _passed_with_drift, timeout=240)
    passed = _last_pass(watch)
    story.check(
        passed is not None and passed.get("predictionDrift", 1.0) <= MAX_DRIFT,
        f"RESULT v4 passes the generic gates and the drift gate at {watch.weights()[-1]} %: "
        + (describe(passed) if passed else "–"),
    )
    if status.get("history") and _ended("v4")(status):
        story.failures.append("v4 ended before the paired gate was switched on")
        return
    paired = manifest(
        story.cluster, model="model-permuted.txt", version="v4", gates=gates(story, paired=True)
    )
    apply(story.cluster, NAMESPACE, paired)
    story.view.say(
        "switched on the paired gate (same revision, analysis only): the operator replays the 512 "
        "rows of examples/models/reference.csv to one pod of each slot and compares the answers "
        f"row by row (agreement ≥ {MIN_AGREEMENT:.0%})"
    )
    status = story.follow(watch, _ended("v4"), timeout=120)
    last = (status.get("history") or [{}])[0]
    story.revisions["v4"] = str(last.get("revision") or watch.revision)
    message = str(condition(status, "Degraded").get("message") or last.get("message") or "")
    found = _AGREEMENT.search(message)
    story.agreements["v4"] = float(found.group(1)) / 100 if found else None
    story.check(
        last.get("outcome") == "RolledBack" and found is not None,
        f"RESULT v4 {last.get('outcome')}: {message}",
    )
    most = max(watch.weights() or [0])
    story.check(
        status.get("activeVersion") == "v2" and most <= LIMITS.steps[1],
        f"v2 still serves all traffic (active {status.get('activeVersion')}); v4 never had more "
        f"than {most} % of live traffic",
    )


def chapter_undo(story: Story) -> None:
    story.chapter(5, "v5: a good retrain through every gate, then `kubectl modelfleet undo`")
    body = manifest(
        story.cluster,
        model="model.txt",
        version="v5",
        gates=gates(story, paired=True),
        steps=(50, 100),
    )
    body["spec"]["rollout"]["keepPrevious"] = KEEP_PREVIOUS
    apply(story.cluster, NAMESPACE, body)
    story.view.say(
        "applied v5 (examples/models/model.txt: trained with another seed than v2, an honest "
        f"retrain), every gate on, steps 50 → 100 %, previous slot kept warm for {KEEP_PREVIOUS}"
    )
    watch = story.new_watch("v5")
    story.watches["v5"] = watch
    status = story.follow(watch, _ended("v5"), timeout=240)
    last = (status.get("history") or [{}])[0]
    story.revisions["v5"] = str(last.get("revision") or watch.revision)
    passed = _last_pass(watch)
    story.check(
        last.get("outcome") == "Promoted" and passed is not None,
        f"RESULT v5 {last.get('outcome')} after {' → '.join(map(str, watch.weights()))} %: "
        + (describe(passed) if passed else "no passing measurement seen"),
    )
    previous_slot = (status.get("previous") or {}).get("slot")
    if last.get("outcome") != "Promoted" or not previous_slot:
        story.failures.append(
            f"v5 was not promoted with a warm previous slot ({status.get('previous')})"
        )
        return
    timing, said = undo(story, NAME, NAMESPACE, f"{NAME}-{previous_slot}")
    story.undo_s = timing.command_s
    story.view.say(f"kubectl modelfleet undo {NAME}: {said}")
    status = story.follow(watch, lambda s: s.get("activeVersion") == "v2", timeout=60)
    story.check(
        timing.command_s is not None and status.get("activeVersion") == "v2",
        f"RESULT undo: all traffic on v2 again {timing.command_s or 0:.2f}s after the command "
        f"(the operator's router write {timing.operator_text()} after the command landed; the "
        "rest is the kubectl plugin starting up)",
    )


@dataclass
class UndoTiming:
    command_s: float | None = None  # plugin started → HTTPRoute flipped
    landed_s: float | None = None  # plugin started → its command annotation on the object

    def operator_text(self) -> str:
        if self.command_s is None:
            return "–"
        if self.landed_s is None:  # landed and acted on between two looks (50 ms + two reads)
            return "within one poll"
        return f"{self.command_s - self.landed_s:.2f}s"


def undo(story: Story, name: str, namespace: str, previous_service: str) -> tuple[UndoTiming, str]:
    """Run the kubectl plugin; seconds from its start until its command lands on the object and
    until the HTTPRoute sends 100 % to the previous slot's Service (polled every 50 ms), and
    what the plugin printed."""
    env = {
        **os.environ,
        "KUBECONFIG": str(story.cluster.kubeconfig),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "kubectl"), "modelfleet", "undo", name, "-n", namespace],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timing = UndoTiming()
    deadline = started + 60
    while timing.command_s is None and time.monotonic() < deadline:
        if timing.landed_s is None and _command(story, name, namespace).startswith("undo"):
            timing.landed_s = time.monotonic() - started
        if _all_to(_route(story, name, namespace), previous_service):
            timing.command_s = time.monotonic() - started
        else:
            time.sleep(0.05)
    output, _ = process.communicate(timeout=60)
    return timing, " ".join(output.split())


def _command(story: Story, name: str, namespace: str) -> str:
    """The ModelDeployment's pending command annotation (`modelfleet.io/command`), or ''."""
    body = _custom_object(story, ("modelfleet.io", "v1alpha1", "modeldeployments"), namespace, name)
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get("modelfleet.io/command", ""))


def _route(story: Story, name: str, namespace: str) -> Mapping[str, Any]:
    return _custom_object(story, ("gateway.networking.k8s.io", "v1", "httproutes"), namespace, name)


def _custom_object(
    story: Story, resource: tuple[str, str, str], namespace: str, name: str
) -> Mapping[str, Any]:
    """One custom object as its JSON body; `resource` is (group, version, plural)."""
    from kubernetes import client

    group, version, plural = resource
    api = client.CustomObjectsApi(story.api())
    body = api.get_namespaced_custom_object(
        group, version, namespace, plural, name, _request_timeout=5
    )
    if not isinstance(body, dict):  # the client types it `object`; the API answers a JSON object
        raise TypeError(f"{plural}/{name}: expected a JSON object, got {type(body).__name__}")
    return body


def _all_to(route: Mapping[str, Any], service: str) -> bool:
    backends = backends_from_httproute(route)
    total = sum(b.weight for b in backends)
    return total > 0 and sum(b.weight for b in backends if b.service == service) == total


def _last_pass(watch: Any) -> Mapping[str, Any] | None:
    for step in reversed(watch.steps):
        if (
            step.analysis.get("phase") == "Pass"
            and step.analysis.get("predictionDrift") is not None
        ):
            return dict(step.analysis)
    return None


def _passed_with_drift(status: Mapping[str, Any]) -> bool:
    canary = status.get("canary") or {}
    analysis = canary.get("analysis") or {}
    judged = analysis.get("phase") == "Pass" and analysis.get("predictionDrift") is not None
    return (canary.get("version") == "v4" and int(canary.get("weight") or 0) > 0 and judged) or (
        _ended("v4")(status)
    )


def _ended(version: str) -> Any:
    def check(status: Mapping[str, Any]) -> bool:
        last = (status.get("history") or [{}])[0]
        return last.get("version") == version and bool(last.get("outcome"))

    return check
