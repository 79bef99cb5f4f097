"""Rollout notifications, pure: which of the machine's events are told (`notices`), and the body each
kind of receiver wants (`slack_body`, `teams_body`, `cloudevent_body`).

A `RolloutNotice` carries what the condition carries: the versions, the weight and step, the event's
message (for a rollback: the measured value against its limit) and the figures of the measurement
it rests on, taken from the measurement or the status, never recomputed, with the advisory (dryRun)
gates' would-be failures counted over the rollout; the approval notices (AwaitingApproval,
Approved) add the confirm gates, the full `kubectl modelfleet approve` command, and who approved.
`notifier` delivers them.
No I/O, no clock: the time and the CloudEvent's id are passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from modelfleet.operator import reasons
from modelfleet.operator.analysis import advisory_summary
from modelfleet.operator.api import (
    API_VERSION,
    PLURAL,
    AdvisoryTally,
    CanaryStatus,
    ModelDeploymentStatus,
    NotifyTarget,
    as_json,
)
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.rollout.approvals import APPROVE
from modelfleet.operator.rollout.types import Event, GateNote, Transition
from modelfleet.operator.timestamps import timestamp

CLOUDEVENT_TYPE_PREFIX = "io.modelfleet.rollout."
# the machine's event reasons that are told, and the notification event each one is
EVENT_OF_REASON = {
    reasons.ROLLOUT_IN_PROGRESS: "Started",
    reasons.STEP_PASSED: "StepPassed",
    reasons.AWAITING_APPROVAL: "AwaitingApproval",  # a confirm gate holds (once per wait)
    reasons.APPROVED: "Approved",
    reasons.PAUSED: "Paused",
    reasons.PROGRESS_DEADLINE_EXCEEDED: "Paused",
    reasons.PROMOTED: "Promoted",
    reasons.ANALYSIS_FAILED: "RolledBack",
    reasons.METRICS_UNAVAILABLE: "RolledBack",  # onMetricsUnavailable: rollback
    reasons.GATE_FAILED: "RolledBack",  # a webhook gate with onFailure: rollback
    reasons.SMOKE_TEST_FAILED: "RolledBack",
    reasons.ABORTED: "Aborted",
    reasons.UNDONE: "Undone",
}
BAD_NEWS = ("RolledBack", "Aborted", "Paused")
SLACK_FIELDS_MAX = 10  # Slack refuses a section with more


@dataclass(frozen=True)
class RolloutNotice:
    """One rollout event as every receiver is told it."""

    event: str  # Started, StepPassed, AwaitingApproval, Approved, Paused, Promoted, RolledBack, …
    namespace: str
    name: str
    reason: str
    message: str
    version: str  # the version the rollout is about (the undone one for Undone)
    active_version: str | None  # what serves all traffic after the event
    time: str
    slot: str | None = None
    weight: int | None = None
    step: int | None = None  # 1-based position of `weight` in the steps
    steps: tuple[int, ...] = ()
    analysis: dict[str, Any] = field(default_factory=dict)  # status.canary.analysis's figures
    # the advisory (dryRun) gates over the rollout so far: looks and would-be failures per gate
    advisory: tuple[AdvisoryTally, ...] = ()
    # AwaitingApproval and Approved: the confirm stage and its gates (those that hold, or the one
    # approved), the command that approves a manual gate, who or which webhook approved
    stage: str | None = None
    gates: tuple[str, ...] = ()
    approve_command: str | None = None
    approved_by: str | None = None

    @property
    def title(self) -> str:
        where = f" at {self.weight}%" if self.weight is not None else ""
        said = {
            "Started": f"rolling out {self.version}",
            "StepPassed": f"{self.version} passed{where}",
            "AwaitingApproval": f"{self.version} waiting for approval{where}",
            "Approved": f"{self.version} approved{where}",
            "Paused": f"{self.version} paused{where}",
            "Promoted": f"{self.version} promoted",
            "RolledBack": f"{self.version} rolled back{where}",
            "Aborted": f"{self.version} aborted{where}",
            "Undone": f"{self.version} undone, {self.active_version} active again",
        }[self.event]
        return f"{self.namespace}/{self.name}: {said}"

    def data(self) -> dict[str, Any]:
        """The notice as JSON (camelCase, no nulls): a CloudEvent's data."""
        values = {
            "event": self.event,
            "namespace": self.namespace,
            "name": self.name,
            "reason": self.reason,
            "message": self.message,
            "version": self.version,
            "activeVersion": self.active_version,
            "slot": self.slot,
            "weight": self.weight,
            "step": self.step,
            "steps": list(self.steps) or None,
            "analysis": self.analysis or None,
            "advisory": [as_json(tally) for tally in self.advisory] or None,
            "stage": self.stage,
            "gates": list(self.gates) or None,
            "approveCommand": self.approve_command,
            "approvedBy": self.approved_by,
        }
        return {key: value for key, value in values.items() if value is not None}


def notices(
    namespace: str,
    name: str,
    old: ModelDeploymentStatus,
    transition: Transition,
    measurement: Measurement | None,
    now: datetime,
) -> list[RolloutNotice]:
    """The notices of one transition, in the order of its events."""
    about = Subject(namespace, name, old, transition.status, measurement, timestamp(now))
    return [about.notice(event) for event in transition.events if event.reason in EVENT_OF_REASON]


@dataclass(frozen=True)
class Subject:
    """The ModelDeployment a transition is about: its status before and after, the measurement."""

    namespace: str
    name: str
    old: ModelDeploymentStatus
    new: ModelDeploymentStatus
    measurement: Measurement | None
    time: str

    def notice(self, event: Event) -> RolloutNotice:
        kind = EVENT_OF_REASON[event.reason]
        # the new canary for the events that keep it; the old one for those that end or move it
        keep = kind in ("Started", "StepPassed", "AwaitingApproval", "Paused")
        canary = self.new.canary if keep else self.old.canary
        if canary is None:  # undo: the history's newest entry is the version taken out of traffic
            history = self.new.history
            version = history[0].version if history else (self.new.active_version or "")
            return RolloutNotice(
                kind,
                self.namespace,
                self.name,
                event.reason,
                event.message,
                version,
                self.new.active_version,
                self.time,
            )
        weight = 100 if kind == "Promoted" else canary.weight
        steps = tuple(canary.steps or ())
        notice = RolloutNotice(
            event=kind,
            namespace=self.namespace,
            name=self.name,
            reason=event.reason,
            message=event.message,
            version=canary.version,
            active_version=self.new.active_version,
            time=self.time,
            slot=canary.slot,
            weight=weight,
            step=steps.index(weight) + 1 if weight in steps else None,
            steps=steps,
            analysis={} if kind == "Started" else self._figures(canary),
            advisory=self._advisory(canary.revision),
        )
        return notice if event.gate is None else self._with_gates(notice, event.gate)

    def _with_gates(self, notice: RolloutNotice, note: GateNote) -> RolloutNotice:
        """An approval event's gates, and the full command when a person must approve."""
        command = f"{APPROVE} {self.name} -n {self.namespace}" if note.manual else None
        return replace(
            notice,
            stage=note.stage,
            gates=note.gates,
            approve_command=command,
            approved_by=note.by,
        )

    def _advisory(self, revision: str) -> tuple[AdvisoryTally, ...]:
        """The tallies after this pass: the canary's, or the history entry of the one it ended."""
        if self.new.canary is not None and self.new.canary.revision == revision:
            return tuple(self.new.canary.advisory)
        ended = next((h for h in self.new.history if h.revision == revision), None)
        return tuple(ended.advisory) if ended is not None else ()

    def _figures(self, canary: CanaryStatus) -> dict[str, Any]:
        """The measurement this pass took, else the last one the status holds."""
        measured = self.measurement
        return as_json(measured.to_status() if measured is not None else canary.analysis)


def facts(notice: RolloutNotice) -> list[tuple[str, str]]:
    """The notice's figures as (label, value) lines, for people."""
    lines: list[tuple[str, str]] = [("Version", notice.version)]
    if notice.active_version and notice.active_version != notice.version:
        lines.append(("Serving", notice.active_version))
    if notice.weight is not None:
        step = f" (step {notice.step}/{len(notice.steps)})" if notice.step else ""
        lines.append(("Weight", f"{notice.weight}%{step}"))
    if notice.gates:
        label = "Approved" if notice.event == "Approved" else "Waiting for"
        lines.append((label, f"{notice.stage} {', '.join(notice.gates)}"))
    if notice.approve_command:
        lines.append(("Approve with", notice.approve_command))
    if notice.approved_by:
        lines.append(("Approved by", notice.approved_by))
    figures = notice.analysis
    for label, render in FIGURES:
        text = render(figures)
        if text is not None:
            lines.append((label, text))
    if advisory := advisory_summary(notice.advisory):
        lines.append(("Advisory gates", advisory.removeprefix("advisory ")))
    return lines


def _error_rate(f: dict[str, Any]) -> str | None:
    if f.get("errorRate") is None:
        return None
    text = f"{f['errorRate']:.2%}"
    if f.get("errorRateLower") is not None and f.get("errorRateUpper") is not None:
        text += f" (interval {f['errorRateLower']:.2%} to {f['errorRateUpper']:.2%})"
    return text


def _p99(f: dict[str, Any]) -> str | None:
    if f.get("p99Ms") is None:
        return None
    stable = f" (stable {f['stableP99Ms']:,.0f} ms)" if f.get("stableP99Ms") is not None else ""
    return f"{f['p99Ms']:,.0f} ms{stable}"


def _requests(f: dict[str, Any]) -> str | None:
    if f.get("requests") is None:
        return None
    share = f" ({f['requestShare']:.1%} of both slots)" if f.get("requestShare") is not None else ""
    return f"{f['requests']:,}{share}"


def _psi(f: dict[str, Any]) -> str | None:
    if f.get("predictionDrift") is None:
        return None
    output = f" ({f['driftOutput']})" if f.get("driftOutput") else ""
    return f"{f['predictionDrift']:.3f}{output}"


def _agreement(f: dict[str, Any]) -> str | None:
    if f.get("agreement") is None:
        return None
    rows = f" of {f['replayedRows']:,} rows" if f.get("replayedRows") is not None else ""
    delta = (
        f", score delta max {f['scoreDeltaMax']:.3f}" if f.get("scoreDeltaMax") is not None else ""
    )
    return f"{f['agreement']:.1%}{rows}{delta}"


def _accuracy(f: dict[str, Any]) -> str | None:
    if f.get("accuracy") is None:
        return None
    stable = f" (stable {f['stableAccuracy']:.1%})" if f.get("stableAccuracy") is not None else ""
    return f"{f['accuracy']:.1%}{stable}"


def _analysis(f: dict[str, Any]) -> str | None:
    if f.get("phase") is None:
        return None
    return f"{f['phase']} at {f['measuredAt']}" if f.get("measuredAt") else str(f["phase"])


FIGURES: tuple[tuple[str, Callable[[dict[str, Any]], str | None]], ...] = (
    ("Error rate", _error_rate),
    ("p99", _p99),
    ("Requests", _requests),
    ("Prediction PSI", _psi),
    ("Agreement", _agreement),
    ("Accuracy", _accuracy),
    ("Analysis", _analysis),
)


# --- the bodies -----------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: RolloutNotice) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the fallback, and all that Slack-compatible chats
    such as Mattermost read) and Block Kit blocks with the figures as fields."""
    title, message = _slack_escape(notice.title), _slack_escape(notice.message)
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}
        for label, value in facts(notice)
    ][:SLACK_FIELDS_MAX]
    return {
        "text": f"{title}: {message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message[:3000]}},
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{notice.event} · {notice.time}"}],
            },
        ],
    }


def teams_body(notice: RolloutNotice) -> dict[str, Any]:
    """A Microsoft Teams workflow webhook message: one Adaptive Card (title, message, facts)."""
    color = "Attention" if notice.event in BAD_NEWS else "Good"
    if notice.event == "AwaitingApproval":
        color = "Warning"  # someone has to act
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": notice.title,
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": True,
            },
            {"type": "TextBlock", "text": notice.message, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in facts(notice)],
            },
            {"type": "TextBlock", "text": f"{notice.event} · {notice.time}", "isSubtle": True},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def cloudevent_body(notice: RolloutNotice, event_id: str) -> dict[str, Any]:
    """A CloudEvents 1.0 event (structured JSON mode) of type io.modelfleet.rollout.<event>."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/apis/{API_VERSION}/namespaces/{notice.namespace}/{PLURAL}/{notice.name}",
        "type": CLOUDEVENT_TYPE_PREFIX + notice.event.lower(),
        "subject": notice.name,
        "time": notice.time,
        "datacontenttype": "application/json",
        "data": notice.data(),
    }


def wants(target: NotifyTarget, notice: RolloutNotice) -> bool:
    return target.events is None or notice.event in target.events


def receiver_label(index: int, target: NotifyTarget) -> str:
    """How logs and Events name a receiver without its URL (a webhook URL's path is a secret)."""
    if target.url_secret_ref is not None:
        ref = target.url_secret_ref
        return f"{target.type} target {index} (Secret {ref.name}, key {ref.key})"
    host = urlsplit(target.url or "").hostname or "?"
    return f"{target.type} target {index} ({host})"
