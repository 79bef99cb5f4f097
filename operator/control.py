"""Manual control (`kubectl modelfleet promote|abort|retry|pause|resume|undo|approve|status`).

A command is an annotation `modelfleet.io/command: "<verb>[ --full]:<id>"` that the operator acts on
once and acknowledges in `status.acknowledgedCommand`; GitOps tools leave unknown annotations alone,
so they never fight it. `render_status` draws the rich view of `status [-w]`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelfleet.operator.api import API_VERSION, KIND, ModelDeployment, parse_duration
from modelfleet.operator.kube import KubeClient
from modelfleet.operator.rollout.commands import COMMAND_ANNOTATION, Command
from modelfleet.operator.timestamps import parse_timestamp

if TYPE_CHECKING:  # the command path stays light: rich loads only to draw
    from rich.console import Group


class ControlError(Exception):
    """A command that could not be delivered or was not acknowledged in time."""


async def send_command(
    kube: KubeClient,
    namespace: str,
    name: str,
    verb: str,
    *,
    full: bool = False,
    wait_seconds: float = 30.0,
    by: str | None = None,
) -> dict[str, Any]:
    """Annotate the object with a fresh command and wait for the operator to acknowledge it."""
    command = Command(verb=verb, id=uuid.uuid4().hex[:12], full=full, by=by)
    patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: command.render()}}}
    if await kube.merge_patch(API_VERSION, KIND, namespace, name, patch) is None:
        raise ControlError(f"modeldeployment {namespace}/{name} not found")
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        obj = await kube.get(API_VERSION, KIND, namespace, name)
        status = (obj or {}).get("status", {})
        if status.get("acknowledgedCommand") == command.id:
            return dict(status)
        if wait_seconds == 0:
            break
        await asyncio.sleep(0.5)
    if wait_seconds == 0:
        return {}
    raise ControlError(f"{command.render()} not acknowledged within {wait_seconds:.0f}s")


@dataclass(frozen=True)
class UndoOutlook:
    """What `undo` would do, said before it acts: flip to a warm slot, or nothing to flip."""

    instant: bool
    message: str


def undo_outlook(obj: dict[str, Any], now: datetime) -> UndoOutlook:
    """Whether the previous slot is still warm (and until when), or why undo cannot flip."""
    md = ModelDeployment.model_validate(obj)
    status, rollout = md.status, md.spec.rollout
    steps = " → ".join(f"{weight}%" for weight in rollout.steps)
    normal = (
        f"reverting the spec to the earlier model runs as a normal rollout ({steps}, "
        f"{rollout.step_duration} each)"
    )
    if status.canary is not None:
        return UndoOutlook(
            False,
            f"a rollout of {status.canary.version} is in progress: undo applies after a promotion "
            "(`kubectl modelfleet abort` rolls the canary back)",
        )
    previous = status.previous
    if previous is not None:
        left = (parse_timestamp(previous.until) - now).total_seconds()
        if left > 0:
            return UndoOutlook(
                True,
                f"{previous.version} is still warm in slot {previous.slot} until {previous.until} "
                f"({_duration(left)} left): undo flips all traffic back to it in one router write",
            )
    if parse_duration(rollout.keep_previous) == 0:
        why = "keepPrevious is 0, so no previous slot is kept warm"
    else:
        why = f"no previous slot is warm (it is kept {rollout.keep_previous} after a promotion)"
    return UndoOutlook(False, f"{why}: {normal}")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def render_status(obj: dict[str, Any]) -> Group:
    """A live view of one ModelDeployment: slots, steps, weight, last analysis, conditions."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    md = ModelDeployment.model_validate(obj)
    status, spec = md.status, md.spec
    name = md.metadata.get("name", "?")
    head = Table.grid(padding=(0, 2))
    head.add_row("Phase", Text(status.phase or "—", style=_phase_style(status.phase)))
    head.add_row("Active", f"{status.active_version or '—'} (slot {status.active_slot or '—'})")
    head.add_row("Ready", status.ready or "—")
    head.add_row("URL", status.url or "—")
    head.add_row("Message", status.message or "")
    if status.previous is not None:
        previous = status.previous
        head.add_row(
            "Previous", f"{previous.version} warm in slot {previous.slot} until {previous.until}"
        )
    parts: list[Any] = [head]
    canary = status.canary
    if canary is not None:
        steps = Text()
        for index, weight in enumerate(spec.rollout.steps):
            style = "bold green" if index < canary.step_index else ""
            if index == canary.step_index:
                style = "bold yellow" if canary.weight == weight else "yellow"
            steps.append(f" {weight}% ", style=style)
        analysis = canary.analysis
        table = Table.grid(padding=(0, 2))
        table.add_row("Canary", f"{canary.version} (slot {canary.slot})")
        table.add_row("Weight", f"{canary.weight} %")
        if canary.mirror:
            table.add_row(
                "Shadow",
                f"{canary.mirror} % of live traffic mirrored since {canary.shadow_started_at}",
            )
        table.add_row("Steps", steps)
        table.add_row(
            "Analysis",
            f"{analysis.phase or '—'}: error rate {_percent(analysis.error_rate)} "
            f"[{_percent(analysis.error_rate_lower)}–{_percent(analysis.error_rate_upper)}], "
            f"p99 {analysis.p99_ms if analysis.p99_ms is not None else '—'} ms, "
            f"{analysis.requests if analysis.requests is not None else '—'} requests",
        )
        if analysis.message:
            table.add_row("", analysis.message)
        parts.append(Panel(table, title="rollout"))
    conditions = Table("type", "status", "reason", "message", box=None)
    for condition in status.conditions:
        conditions.add_row(condition.type, condition.status, condition.reason, condition.message)
    parts.append(conditions)
    if status.history:
        history = Table("finished", "version", "outcome", "message", box=None)
        for entry in status.history[:5]:
            history.add_row(entry.finished_at, entry.version, entry.outcome, entry.message)
        parts.append(Panel(history, title="history"))
    return Group(Text(f"modeldeployment/{name}", style="bold"), *parts)


def _phase_style(phase: str | None) -> str:
    return {"Healthy": "green", "Degraded": "red", "Paused": "yellow"}.get(phase or "", "cyan")
