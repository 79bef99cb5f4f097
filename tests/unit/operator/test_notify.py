"""Rollout notifications, the pure part: which of the machine's events are told, with which figures
(from the measurement or the status, never recomputed), and the Slack, Teams and CloudEvents bodies.

The transitions come from the real state machine, driven by the simulated cluster of test_rollout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelfleet.operator.api import NotifyTarget
from modelfleet.operator.measurement import Measurement
from modelfleet.operator.notify import (
    RolloutNotice,
    cloudevent_body,
    facts,
    notices,
    receiver_label,
    slack_body,
    teams_body,
    wants,
)
from modelfleet.operator.reconcile import InvalidSpecError, parse_spec
from modelfleet.operator.rollout.commands import Command
from modelfleet.operator.rollout.types import Transition
from tests.unit.operator.test_rollout import World, measurement, new_revision, world
from tests.unit.operator.test_rollout_gates import gated

FAIL = {
    "error_rate": 0.05,
    "error_rate_lower": 0.031,
    "error_rate_upper": 0.078,
    "p99_ms": 41.0,
    "stable_p99_ms": 38.5,
    "requests": 812,
    "request_share": 0.097,
}
PASS = {
    "error_rate": 0.002,
    "error_rate_lower": 0.0004,
    "error_rate_upper": 0.009,
    "p99_ms": 12.5,
    "requests": 1500,
    "prediction_drift": 0.031,
    "drift_output": "probability_1",
    "agreement": 0.994,
    "replayed_rows": 500,
    "score_delta_max": 0.02,
}


@dataclass
class Told:
    """A World whose every reconcile also says what it would notify."""

    world: World
    notices: list[RolloutNotice] = field(default_factory=list)
    look: Measurement | None = None

    def __post_init__(self) -> None:
        scripted = self.world.analyzer

        def analyzer(now: datetime) -> Measurement:
            self.look = scripted(now)
            return self.look

        self.world.analyzer = analyzer

    def run(self, seconds: float) -> None:
        """Reconcile every 5 s for `seconds`, as `World.run` does, noting what is told."""
        end = self.world.now + timedelta(seconds=seconds)
        while self.world.now < end:
            old, self.look = self.world.status, None
            transition = self.world.step()
            self.notices += notices("ml", "fraud", old, transition, self.look, self.world.now)
            self.world.now += timedelta(seconds=5)

    def events(self) -> list[str]:
        return [notice.event for notice in self.notices]


def _rolling(**analyzer_values: Any) -> Told:
    w = new_revision(world().deployed())
    phase = analyzer_values.pop("phase", "Pass")
    w.analyzer = lambda now: measurement(phase, now, **analyzer_values)
    return Told(w)


def test_a_promoted_rollout_tells_start_each_passed_step_and_the_promotion() -> None:
    told = _rolling(**PASS)
    told.run(400)

    assert told.events() == ["Started", "StepPassed", "StepPassed", "StepPassed", "Promoted"]
    started, *passed, promoted = told.notices
    assert (started.version, started.weight, started.analysis) == ("v2", 0, {})
    assert started.active_version == "v1"
    assert [(n.weight, n.step, n.steps) for n in passed] == [
        (10, 1, (10, 25, 50, 100)),
        (25, 2, (10, 25, 50, 100)),
        (50, 3, (10, 25, 50, 100)),
    ]
    figures = passed[0].analysis  # the passing look, as status.canary.analysis holds it
    assert figures["phase"] == "Pass"
    assert (figures["errorRate"], figures["errorRateLower"], figures["errorRateUpper"]) == (
        0.002,
        0.0004,
        0.009,
    )
    assert (figures["p99Ms"], figures["requests"]) == (12.5, 1500)
    assert (figures["predictionDrift"], figures["agreement"], figures["replayedRows"]) == (
        0.031,
        0.994,
        500,
    )
    assert (promoted.version, promoted.active_version, promoted.weight, promoted.step) == (
        "v2",
        "v2",
        100,
        4,
    )
    assert promoted.analysis["phase"] == "Pass"
    assert promoted.reason == "Promoted"
    assert promoted.slot == "green"


def test_a_rolled_back_rollout_tells_the_failing_measurement_and_where() -> None:
    told = _rolling(phase="Fail", **FAIL)
    told.run(120)

    assert told.events() == ["Started", "RolledBack"]
    rolled_back = told.notices[-1]
    assert (rolled_back.version, rolled_back.active_version) == ("v2", "v1")
    assert (rolled_back.weight, rolled_back.step) == (10, 1)
    assert rolled_back.reason == "AnalysisFailed"
    assert (
        rolled_back.message == "fail look at 10%"
    )  # the condition's message, as the machine said it
    assert rolled_back.analysis["phase"] == "Fail"
    assert rolled_back.analysis["errorRateLower"] == 0.031
    assert rolled_back.analysis["requestShare"] == 0.097


def test_pause_abort_and_undo_are_told_and_other_events_are_not() -> None:
    told = _rolling(**PASS)
    told.run(10)
    told.world.command = Command("pause", "c1")
    told.run(5)
    told.world.command = Command("abort", "c2")
    told.run(5)
    assert told.events() == ["Started", "Paused", "Aborted"]
    paused, aborted = told.notices[1:]
    assert paused.reason == "Paused"
    assert paused.analysis["phase"] == "Pass"  # no new look while paused: the status's last one
    assert (aborted.weight, aborted.version, aborted.active_version) == (10, "v2", "v1")

    promoted = _rolling(**PASS)
    promoted.run(400)
    promoted.world.command = Command("undo", "c3")
    promoted.run(5)
    undone = promoted.notices[-1]
    assert (undone.event, undone.version, undone.active_version) == ("Undone", "v2", "v1")
    assert (undone.weight, undone.analysis) == (None, {})
    assert undone.title == "ml/fraud: v2 undone, v1 active again"


def test_a_transition_without_told_events_gives_nothing() -> None:
    w = world().deployed()
    transition = w.step()
    assert notices("ml", "fraud", w.status, transition, None, w.now) == []
    assert notices("ml", "fraud", w.status, Transition(w.status), None, w.now) == []


# --- approvals: told once per wait, and who approved --------------------------------------------


def _gated(answer: Any = None, **hook: Any) -> Told:
    answer = answer or (lambda gate, now: (True, "HTTP 200"))
    return Told(gated(answer, webhooks=[hook]))


def test_a_manual_gate_is_told_once_when_its_wait_opens_and_its_approver_when_approved() -> None:
    told = _gated(name="ops", type="confirmStep", manual=True)
    told.run(120)  # many looks while it waits at 10 %
    assert told.events() == ["Started", "AwaitingApproval"]  # the step passes once approved
    waiting = told.notices[-1]
    assert (waiting.stage, waiting.gates, waiting.weight, waiting.step) == (
        "confirmStep",
        ("ops",),
        10,
        1,
    )
    assert waiting.approve_command == "kubectl modelfleet approve fraud -n ml"
    assert waiting.message == (
        "canary v2 waiting for approval at 10%: confirmStep gate ops (kubectl modelfleet approve)"
    )
    assert waiting.analysis["phase"] == "Pass"  # the figures of the step that just passed
    assert waiting.title == "ml/fraud: v2 waiting for approval at 10%"

    told.world.command = Command("approve", "c1", by="ana@example.org")
    told.run(60)
    assert told.events()[2:] == ["Approved", "StepPassed", "AwaitingApproval"]  # a new wait
    approved = told.notices[2]
    assert (approved.stage, approved.gates, approved.weight, approved.step) == (
        "confirmStep",
        ("ops",),
        10,
        1,
    )
    assert approved.approved_by == "kubectl modelfleet approve by ana@example.org, command c1"
    assert approved.approve_command is None
    assert approved.title == "ml/fraud: v2 approved at 10%"
    assert (told.notices[3].weight, told.notices[4].weight) == (10, 25)


def test_a_holding_webhook_is_told_when_it_first_holds_and_its_answer_when_it_passes() -> None:
    answers = {"release": (False, "HTTP 403: change freeze")}
    told = _gated(lambda gate, now: answers[gate], name="release", type="confirmPromotion")
    told.run(400)  # held at 100 %, asked at every interval
    assert told.events()[-2:] == ["StepPassed", "AwaitingApproval"]  # passed 50 %, held at 100
    assert told.events().count("AwaitingApproval") == 1
    waiting = told.notices[-1]
    assert (waiting.stage, waiting.gates, waiting.weight) == ("confirmPromotion", ("release",), 100)
    assert waiting.approve_command is None  # a webhook's answer, not a person, lets it go
    assert waiting.message.endswith(
        "confirmPromotion gate release (answered HTTP 403: change freeze)"
    )

    answers["release"] = (True, "HTTP 202")
    told.run(30)
    assert told.events()[-2:] == ["Approved", "Promoted"]
    approved = told.notices[-2]
    assert (approved.approved_by, approved.weight, approved.gates) == (
        "webhook answered HTTP 202",
        100,
        ("release",),
    )


def test_a_webhook_that_approves_at_once_is_told_as_approved_only() -> None:
    told = _gated(name="qa", type="confirmStep")
    told.run(400)
    assert "AwaitingApproval" not in told.events()
    assert told.events().count("Approved") == 3  # after 10, 25 and 50 %
    assert told.events()[-1] == "Promoted"


WAITING = RolloutNotice(
    event="AwaitingApproval",
    namespace="ml",
    name="fraud",
    reason="AwaitingApproval",
    message="canary v2 waiting for approval at 50%: confirmStep gate ops (kubectl modelfleet approve)",
    version="v2",
    active_version="v1",
    time="2026-12-05T12:00:00Z",
    slot="green",
    weight=50,
    step=2,
    steps=(10, 50, 100),
    analysis={"phase": "Pass", "errorRate": 0.002, "requests": 900},
    stage="confirmStep",
    gates=("ops",),
    approve_command="kubectl modelfleet approve fraud -n ml",
)


def test_the_approval_notices_in_every_format() -> None:
    assert facts(WAITING)[2:5] == [
        ("Weight", "50% (step 2/3)"),
        ("Waiting for", "confirmStep ops"),
        ("Approve with", "kubectl modelfleet approve fraud -n ml"),
    ]
    assert ("Error rate", "0.20%") in facts(WAITING)
    slack = slack_body(WAITING)
    assert slack["blocks"][0]["text"]["text"] == "ml/fraud: v2 waiting for approval at 50%"
    fields = [f["text"] for f in slack["blocks"][2]["fields"]]
    assert "*Approve with*\nkubectl modelfleet approve fraud -n ml" in fields
    card = teams_body(WAITING)["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Warning"  # someone has to act
    event = cloudevent_body(WAITING, "id-2")
    assert event["type"] == "io.modelfleet.rollout.awaitingapproval"
    data = event["data"]
    assert (data["stage"], data["gates"], data["approveCommand"]) == (
        "confirmStep",
        ["ops"],
        "kubectl modelfleet approve fraud -n ml",
    )
    assert "approvedBy" not in data

    by = "kubectl modelfleet approve by ana@example.org, command c1"
    approved = dataclasses.replace(
        WAITING, event="Approved", reason="Approved", approve_command=None, approved_by=by
    )
    assert ("Approved", "confirmStep ops") in facts(approved)
    assert ("Approved by", by) in facts(approved)
    assert teams_body(approved)["attachments"][0]["content"]["body"][0]["color"] == "Good"
    event = cloudevent_body(approved, "id-3")
    assert event["type"] == "io.modelfleet.rollout.approved"
    assert (event["data"]["approvedBy"], event["data"]["weight"]) == (by, 50)
    assert "approveCommand" not in event["data"]


def test_the_approval_events_are_in_the_default_set_and_can_be_left_out() -> None:
    assert wants(_target(url="https://x.example.org/h"), WAITING)  # no events list: every event
    only = _target(url="https://x.example.org/h", events=["Promoted", "RolledBack"])
    assert not wants(only, WAITING)
    assert wants(_target(url="https://x.example.org/h", events=["AwaitingApproval"]), WAITING)


# --- the bodies -------------------------------------------------------------------------------

NOTICE = RolloutNotice(
    event="RolledBack",
    namespace="ml",
    name="fraud",
    reason="AnalysisFailed",
    message="error rate 5.0 % [3.1–7.8 %] > 1.0 % over 8,120 requests at 10%",
    version="v2",
    active_version="v1",
    time="2026-12-05T12:00:00Z",
    slot="green",
    weight=10,
    step=1,
    steps=(10, 25, 50, 100),
    analysis={
        "phase": "Fail",
        "errorRate": 0.05,
        "errorRateLower": 0.031,
        "errorRateUpper": 0.078,
        "p99Ms": 1041.0,
        "stableP99Ms": 38.5,
        "requests": 8120,
        "predictionDrift": 0.31,
        "driftOutput": "p1",
        "agreement": 0.91,
        "replayedRows": 500,
        "measuredAt": "2026-12-05T11:59:58Z",
    },
)


def test_facts_render_each_figure_with_its_interval() -> None:
    assert facts(NOTICE) == [
        ("Version", "v2"),
        ("Serving", "v1"),
        ("Weight", "10% (step 1/4)"),
        ("Error rate", "5.00% (interval 3.10% to 7.80%)"),
        ("p99", "1,041 ms (stable 38 ms)"),
        ("Requests", "8,120"),
        ("Prediction PSI", "0.310 (p1)"),
        ("Agreement", "91.0% of 500 rows"),
        ("Analysis", "Fail at 2026-12-05T11:59:58Z"),
    ]


def test_slack_body_has_a_fallback_text_and_blocks_with_the_figures() -> None:
    body = slack_body(NOTICE)
    escaped = NOTICE.message.replace(">", "&gt;")  # Slack's mrkdwn reads <…> as a link
    assert body["text"] == f"ml/fraud: v2 rolled back at 10%: {escaped}"
    header, message, figures, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "ml/fraud: v2 rolled back at 10%"},
    }
    assert message["text"]["text"] == escaped
    assert {"type": "mrkdwn", "text": "*Error rate*\n5.00% (interval 3.10% to 7.80%)"} in figures[
        "fields"
    ]
    assert len(figures["fields"]) <= 10
    assert context["elements"][0]["text"] == "RolledBack · 2026-12-05T12:00:00Z"


def test_slack_text_escapes_its_control_characters() -> None:
    notice = RolloutNotice(
        "Paused", "ml", "fraud", "Paused", "p99 <2 & >1", "v2", "v1", "2026-12-05T12:00:00Z"
    )
    assert slack_body(notice)["text"].endswith("p99 &lt;2 &amp; &gt;1")


def test_teams_body_is_an_adaptive_card_with_the_facts() -> None:
    body = teams_body(NOTICE)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, message, fact_set, _ = card["body"]
    assert (title["text"], title["color"]) == ("ml/fraud: v2 rolled back at 10%", "Attention")
    assert message["text"] == NOTICE.message
    assert {"title": "p99", "value": "1,041 ms (stable 38 ms)"} in fact_set["facts"]
    good = RolloutNotice("Promoted", "ml", "fraud", "Promoted", "ok", "v2", "v2", NOTICE.time)
    assert teams_body(good)["attachments"][0]["content"]["body"][0]["color"] == "Good"


def test_cloudevent_carries_the_notice_as_data() -> None:
    event = cloudevent_body(NOTICE, "id-1")
    assert {key: event[key] for key in ("specversion", "id", "type", "subject", "time")} == {
        "specversion": "1.0",
        "id": "id-1",
        "type": "io.modelfleet.rollout.rolledback",
        "subject": "fraud",
        "time": "2026-12-05T12:00:00Z",
    }
    assert event["source"] == "/apis/modelfleet.io/v1alpha1/namespaces/ml/modeldeployments/fraud"
    data = event["data"]
    assert (data["event"], data["version"], data["activeVersion"]) == ("RolledBack", "v2", "v1")
    assert (data["weight"], data["step"], data["steps"]) == (10, 1, [10, 25, 50, 100])
    assert data["analysis"] == NOTICE.analysis
    assert data["message"] == NOTICE.message


# --- targets ----------------------------------------------------------------------------------


def _target(**values: Any) -> NotifyTarget:
    return NotifyTarget.model_validate({"type": "slack", **values})


def test_the_events_filter_and_the_label_that_hides_the_url() -> None:
    only = _target(url="https://hooks.example.org/services/T0/B0/SECRET", events=["RolledBack"])
    assert wants(only, NOTICE)
    assert not wants(only, RolloutNotice("Promoted", "ml", "f", "P", "", "v", "v", "t"))
    assert wants(_target(url="https://x.example.org/h"), NOTICE)
    assert receiver_label(0, only) == "slack target 0 (hooks.example.org)"
    secret = _target(urlSecretRef={"name": "slack"})
    assert receiver_label(2, secret) == "slack target 2 (Secret slack, key url)"


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ({"type": "teams"}, "spec.rollout.notify[0]: set exactly one of url and urlSecretRef"),
        (
            {"type": "teams", "url": "https://a.example.org/h", "urlSecretRef": {"name": "t"}},
            "spec.rollout.notify[0]: set exactly one of url and urlSecretRef",
        ),
        (
            {"type": "cloudevents", "url": "ftp://a.example.org/h"},
            "spec.rollout.notify[0].url must be an http:// or https:// URL",
        ),
    ],
)
def test_a_target_the_crd_refuses_is_refused_by_the_reconcile_too(
    target: dict[str, Any], said: str
) -> None:
    body = {
        "metadata": {"name": "fraud"},
        "spec": {"model": {"uri": "s3://m/model.onnx"}, "rollout": {"notify": [target]}},
    }
    with pytest.raises(InvalidSpecError, match="notify") as refused:
        parse_spec(body)
    assert str(refused.value) == said
