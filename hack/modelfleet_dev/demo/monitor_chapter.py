"""The real demo's sixth chapter: after promotion, the operator watches the model.

Every manifest of the real story carries the same `spec.monitoring` (demo/real.py
`RealDemoCluster.monitoring`): the 512 rows of examples/models/reference.csv as the training
baseline, read by each server from the model-files server, a short interval and window so that
drift shows within a minute, and the demo's webhook receiver (demo/webhook_receiver.py) inside the
namespace. The baseline is part of the pod template's revision, so it is there from the first
chapter: v2's pods, active again after the undo, have counted their inputs on the baseline's bins
since chapter 2, and this chapter rolls nothing out.

1. Calm: the client has sent rows like the baseline's all along; the next look at the active
   revision says `Drifting` False (or Unknown, and why) and `DataQuality` False, and no CloudEvent
   before it said drift.
2. The client's rows change: SHIFTED moves by SHIFT_SD standard deviations (an upstream change)
   and NULLED arrives empty in NULL_SHARE of the rows. Measured: the seconds from the switch to each
   condition turning True, what each names, the CloudEvents the receiver got, and the figures of
   the shifted feature once its PSI passes the threshold too (KS usually passes first).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelfleet_dev.harness.model_aware import FEATURES

from .spec import MONITOR_INTERVAL, MONITOR_WINDOW, NAME, NAMESPACE, ROWS_PER_REQUEST
from .watch import condition
from .webhook_receiver import Received, received

if TYPE_CHECKING:
    from .real import ClientTraffic, RealDemoCluster
    from .story import Story

SHIFTED, SHIFT_SD = "f1", 2.0  # a feature the example model uses: its answers move too
NULLED, NULL_SHARE = "f9", 0.25
PSI_THRESHOLD = 0.2  # spec.monitoring.thresholds' defaults, left as they are
KS_THRESHOLD = 0.1
POLL_S = 0.5
_DURATION = re.compile(r"(\d+)([smh])")
Status = Mapping[str, Any]


def shifted_payloads(batches: int = 256, seed: int = 23) -> list[dict[str, Any]]:
    """OIP bodies of fresh N(0, 1) rows like the story's, SHIFTED moved by SHIFT_SD and NULLED
    null (JSON null: a missing value) in about NULL_SHARE of the rows."""
    generator = np.random.default_rng(seed)
    values = np.round(generator.normal(size=(batches, ROWS_PER_REQUEST, FEATURES)), 6)
    values[:, :, int(SHIFTED[1:])] += SHIFT_SD
    blank = generator.random(size=(batches, ROWS_PER_REQUEST)) < NULL_SHARE
    bodies = []
    for batch, nulls in zip(values, blank, strict=True):
        data: list[float | None] = batch.ravel().tolist()
        for row in np.flatnonzero(nulls):
            data[int(row) * FEATURES + int(NULLED[1:])] = None
        tensor = {"name": "input", "datatype": "FP64", "shape": [ROWS_PER_REQUEST, FEATURES]}
        bodies.append({"inputs": [{**tensor, "data": data}]})
    return bodies


def seconds(duration: str) -> float:
    """'1m' → 60.0 (the spec's durations as this chapter writes them)."""
    found = _DURATION.fullmatch(duration)
    if found is None:
        raise ValueError(f"not a duration: {duration!r}")
    return float(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)]


INTERVAL_S = seconds(MONITOR_INTERVAL)


@dataclass
class Seen:
    """When (seconds after the shift, and at which of the operator's looks since) each condition
    was first seen True, with its message."""

    before: str | None = None  # status.monitoring.lastEvaluated when the rows changed
    looks: set[str] = field(default_factory=set)  # the looks since
    drifting_s: float | None = None
    drifting: str = ""
    drifting_look: int = 0
    quality_s: float | None = None
    quality: str = ""
    quality_look: int = 0

    def note(self, status: Status, after_s: float) -> list[str]:
        """Record what turned True in `status`; the lines worth printing."""
        looked = (status.get("monitoring") or {}).get("lastEvaluated")
        if looked and looked != self.before:
            self.looks.add(looked)
        lines = []
        drifting, quality = condition(status, "Drifting"), condition(status, "DataQuality")
        if self.drifting_s is None and drifting.get("status") == "True":
            self.drifting_s, self.drifting = after_s, str(drifting.get("message") or "")
            self.drifting_look = len(self.looks)
            lines.append(f"+{after_s:.1f}s Drifting True: {self.drifting}")
        if self.quality_s is None and quality.get("status") == "True":
            self.quality_s, self.quality = after_s, str(quality.get("message") or "")
            self.quality_look = len(self.looks)
            lines.append(f"+{after_s:.1f}s DataQuality True: {self.quality}")
        return lines

    def both(self) -> bool:
        return self.drifting_s is not None and self.quality_s is not None


def feature(status: Status, name: str) -> Mapping[str, Any]:
    """status.monitoring's figures of one feature ({} when absent)."""
    features = (status.get("monitoring") or {}).get("features") or []
    return next((f for f in features if f.get("name") == name), {})


def drifting_inputs(status: Status) -> list[str]:
    features = (status.get("monitoring") or {}).get("features") or []
    return sorted(str(f["name"]) for f in features if f.get("drifting"))


def figures_text(figures: Mapping[str, Any]) -> str:
    """'PSI 0.41 > 0.2, KS 0.22 > 0.1, W1 0.48 over 18,400 rows'."""
    psi, ks, w1 = figures.get("psi"), figures.get("ks"), figures.get("wasserstein")
    parts = []
    if psi is not None:
        parts.append(f"PSI {psi:.2f} {'>' if psi > PSI_THRESHOLD else '≤'} {PSI_THRESHOLD}")
    if ks is not None:
        parts.append(f"KS {ks:.2f} {'>' if ks > KS_THRESHOLD else '≤'} {KS_THRESHOLD}")
    if w1 is not None:
        parts.append(f"W1 {w1:.2f}")
    return ", ".join(parts) + f" over {int(figures.get('rows') or 0):,} rows"


def missing_text(figures: Mapping[str, Any]) -> str:
    rate, baseline = figures.get("missingRate"), figures.get("baselineMissingRate")
    if rate is None:
        return "missing rate –"
    return f"missing {rate * 100:.1f} % vs {(baseline or 0) * 100:.1f} % in baseline"


def _poll(story: Story, done: Callable[[Status], bool], timeout: float) -> Status | None:
    deadline = time.monotonic() + timeout
    while True:
        status = story.status()
        if done(status):
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)


def chapter_monitoring(story: Story, cluster: RealDemoCluster, traffic: ClientTraffic) -> None:
    began = time.monotonic()
    story.chapter(story.chapters, "after promotion: the operator watches the model")
    story.view.say(
        "every version of this story was applied with spec.monitoring: baselineUri "
        f"{cluster.monitoring()['baselineUri']} (the 512 reference rows, from the model-files "
        f"server), interval {MONITOR_INTERVAL} and window {MONITOR_WINDOW} (short for the demo; "
        f"the defaults are 1m and 1h), default thresholds, webhook {cluster.webhook_url} (the "
        "demo's receiver inside the namespace, a bearer token from a Secret); the baseline is "
        "part of the revision, so v2's pods, active again since the undo, have counted their "
        "inputs on its bins since chapter 2: nothing rolls out here"
    )
    if not calm(story, cluster):
        return
    payloads = shifted_payloads()
    seen = Seen(before=(story.status().get("monitoring") or {}).get("lastEvaluated"))
    shifted_at_wall = time.time()
    shifted_at = traffic.switch(payloads)
    story.view.say(
        f"the client's rows change: {SHIFTED} + {SHIFT_SD:g} standard deviations (an upstream "
        f"change in a feature the model uses), {NULLED} null in {NULL_SHARE:.0%} of the rows"
    )
    window_s = seconds(MONITOR_WINDOW)

    def flagged(status: Status) -> bool:
        for line in seen.note(status, time.monotonic() - shifted_at):
            story.view.say(line)
        return seen.both()

    status = _poll(story, flagged, timeout=window_s + 3 * INTERVAL_S)
    if status is None:
        story.failures.append(
            f"Drifting and DataQuality not both True {window_s + 3 * INTERVAL_S:.0f}s after the "
            f"shift (Drifting: {seen.drifting or '–'}; DataQuality: {seen.quality or '–'})"
        )
        return
    report_conditions(story, seen, status)
    report_events(story, cluster, shifted_at_wall)
    report_figures(story, shifted_at)
    print_columns(story)
    story.monitoring_s = time.monotonic() - began


def calm(story: Story, cluster: RealDemoCluster) -> bool:
    """The next look at the active revision: Drifting False (or Unknown, said why), DataQuality
    False; and no CloudEvent of the chapters before said drift."""
    first = story.status()
    looked = (first.get("monitoring") or {}).get("lastEvaluated")

    def new_look(status: Status) -> bool:
        monitoring = status.get("monitoring") or {}
        active = status.get("activeRevision")
        return monitoring.get("lastEvaluated") != looked and monitoring.get("revision") == active

    status = _poll(story, new_look, timeout=3 * INTERVAL_S)
    if status is None:
        story.failures.append(f"no monitoring look at the active revision in {3 * INTERVAL_S:.0f}s")
        return False
    drifting, quality = condition(status, "Drifting"), condition(status, "DataQuality")
    before = received(cluster.webhook_events)
    alarms = [e for e in before if e.condition.get("status") == "True"]
    too_few = drifting.get("status") == "Unknown" and drifting.get("reason") == "TooFewSamples"
    story.check(
        (drifting.get("status") == "False" or too_few)
        and quality.get("status") == "False"
        and not alarms,
        f"RESULT calm (active {status.get('activeVersion')}, revision "
        f"{status.get('activeRevision')}, rows like the baseline's): Drifting "
        f"{drifting.get('status')} ({drifting.get('reason')}): {drifting.get('message')}; "
        f"DataQuality {quality.get('status')} ({quality.get('reason')})",
    )
    story.view.say(
        f"the receiver got {len(before)} CloudEvent(s) during the chapters before, "
        f"{len(alarms)} saying True"
        + (f" ({'; '.join(e.text() for e in alarms)})" if alarms else "")
        + ": "
        + (" · ".join(e.text() for e in before) or "none")
    )
    if too_few:
        story.view.say(
            "Drifting is Unknown, not False: no feature had minSamples non-missing rows in the "
            "window yet (the message says how many)"
        )
    return True


def report_conditions(story: Story, seen: Seen, status: Status) -> None:
    inputs = drifting_inputs(status)
    story.check(
        seen.drifting_s is not None and re.search(rf"\b{SHIFTED} PSI ", seen.drifting) is not None,
        f"RESULT Drifting True {seen.drifting_s or 0:.1f}s after the shift ({_look(seen.drifting_look)})"
        f": {seen.drifting}",
    )
    story.check(
        inputs == [SHIFTED],
        f"the drifting inputs are exactly the shifted one: {', '.join(inputs) or 'none'} "
        f"({NULLED}'s non-missing values did not move)",
    )
    story.check(
        seen.quality_s is not None and seen.quality.startswith(f"{NULLED} missing"),
        f"RESULT DataQuality True {seen.quality_s or 0:.1f}s after the shift "
        f"({_look(seen.quality_look)}): {seen.quality}",
    )


def _look(count: int) -> str:
    """'at the operator's 1st look since, one every 10s'."""
    nth = {1: "1st", 2: "2nd", 3: "3rd"}.get(count, f"{count}th")
    return f"at the operator's {nth} look since, one every {MONITOR_INTERVAL}"


def report_events(story: Story, cluster: RealDemoCluster, since: float) -> None:
    """The CloudEvents that arrived after the shift (waiting a little for both)."""

    def arrived() -> list[Received]:
        return [e for e in received(cluster.webhook_events) if e.at >= since]

    deadline = time.monotonic() + 3 * INTERVAL_S
    events = arrived()
    while not _both_events(events) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        events = arrived()
    drift = next((e for e in events if e.type.endswith(".drifting")), None)
    story.check(
        _both_events(events) and drift is not None and SHIFTED in drift.flagged(),
        f"RESULT webhook: {len(events)} CloudEvent(s) received after the shift: "
        + (" · ".join(f"{e.text()} at +{e.at - since:.1f}s" for e in events) or "none"),
    )


def _both_events(events: list[Received]) -> bool:
    kinds = {e.type.rsplit(".", 1)[-1] for e in events if e.condition.get("status") == "True"}
    return {"drifting", "dataquality"} <= kinds


def report_figures(story: Story, shifted_at: float) -> None:
    """SHIFTED's figures once its PSI passes the threshold too (KS usually passes first)."""
    status = _poll(
        story, lambda s: (feature(s, SHIFTED).get("psi") or 0) > PSI_THRESHOLD, 3 * INTERVAL_S
    )
    last = status or story.status()
    shifted, nulled = feature(last, SHIFTED), feature(last, NULLED)
    story.check(
        status is not None,
        f"RESULT {SHIFTED} in the last {MONITOR_WINDOW} at +{time.monotonic() - shifted_at:.0f}s: "
        f"{figures_text(shifted)}; {NULLED} {missing_text(nulled)}",
    )


def print_columns(story: Story) -> None:
    """`kubectl get md` with the two conditions as columns (the CRD's own columns omit them)."""
    columns = ",".join(
        [
            "NAME:.metadata.name",
            "ACTIVE:.status.activeVersion",
            'DRIFTING:.status.conditions[?(@.type=="Drifting")].status',
            'DATAQUALITY:.status.conditions[?(@.type=="DataQuality")].status',
            "EVALUATED:.status.monitoring.lastEvaluated",
        ]
    )
    args = ("get", "md", NAME, "-n", NAMESPACE, "-o", f"custom-columns={columns}")
    try:
        shown = story.cluster.kubectl(*args, check=False)
    except subprocess.SubprocessError as error:
        story.view.say(f"kubectl get md: {error}")
        return
    story.view.say(f"kubectl {' '.join(args[:5])} -o custom-columns=…DRIFTING,DATAQUALITY…:")
    for line in (shown.stdout or shown.stderr or "").splitlines():
        story.view.console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
