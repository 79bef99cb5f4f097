"""The demo's terminal: a live rich panel on a TTY, plain progress lines otherwise (CI, pipes).

Event lines go to both; the panel (weight bar, step, last analysis, what the traffic driver saw)
only to a terminal. The summary is a rich table, which renders as plain text without a TTY.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from modelfleet_dev.harness.driver import Tally

from .watch import RolloutWatch, describe, percent


@dataclass(frozen=True)
class Limits:
    steps: Sequence[int]
    step_duration: str
    interval: str
    max_error_rate: float
    max_p99_ms: float
    min_requests: int

    def text(self) -> str:
        return (
            f"steps {'→'.join(map(str, self.steps))} %, {self.step_duration} each, analysed every "
            f"{self.interval}; limits: error rate {percent(self.max_error_rate)}, "
            f"p99 {self.max_p99_ms:.0f} ms, at least {self.min_requests} requests"
        )


@dataclass(frozen=True)
class Outcome:
    """One row of the summary."""

    version: str
    outcome: str
    steps: str
    error_rate: str
    p99: str
    requests: int
    failed: int
    gates: str = "–"  # PSI and agreement (the model-aware gates)


class View:
    def __init__(self) -> None:
        probe = Console()
        self.tty = probe.is_terminal
        self.console = probe if self.tty else Console(width=120, no_color=True)
        self.started = time.monotonic()
        self._live: Live | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.console.print(
            f"[demo {self.elapsed():5.1f}s] {text}", markup=False, highlight=False, soft_wrap=True
        )

    def chapter(self, title: str) -> None:
        if self.tty:
            self.console.rule(title)
        else:
            self.say(f"== {title} ==")

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        if not self.tty:
            yield
            return
        with Live(Text(""), console=self.console, refresh_per_second=4) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def update(
        self,
        watch: RolloutWatch,
        status: Mapping[str, Any],
        tally: Tally,
        versions: Mapping[str, str],
        limits: Limits,
    ) -> None:
        if self._live is not None:
            self._live.update(panel(watch, status, tally, versions, limits, self.elapsed()))

    def summary(self, rows: Sequence[Outcome]) -> None:
        table = Table(title="What happened", title_justify="left")
        columns = ("version", "outcome", "time per step", "error rate", "p99", "PSI · agreement")
        for column in (*columns, "requests"):
            table.add_column(column, no_wrap=column not in ("time per step", "PSI · agreement"))
        table.add_column("failed", justify="right")
        for row in rows:
            table.add_row(
                row.version,
                row.outcome,
                row.steps,
                row.error_rate,
                row.p99,
                row.gates,
                f"{row.requests:,}",
                f"{row.failed:,}",
            )
        self.console.print(table)


def _bar(weight: int, width: int = 20) -> str:
    filled = round(weight / 100 * width)
    return "█" * filled + "░" * (width - filled)


def traffic_line(tally: Tally, versions: Mapping[str, str]) -> str:
    """'v1 75 % · v2 25 % — 4,812 answers, 0 failed' (shares by slot, named by version)."""
    shares = tally.shares[-1][1] if tally.shares else {}
    split = " · ".join(
        f"{versions.get(slot, slot)} {share:.0f} %" for slot, share in shares.items()
    )
    return f"{split or 'no endpoints yet'} — {tally.total():,} answers, {tally.failed():,} failed"


def panel(
    watch: RolloutWatch,
    status: Mapping[str, Any],
    tally: Tally,
    versions: Mapping[str, str],
    limits: Limits,
    elapsed: float,
) -> Panel:
    canary = status.get("canary") or {}
    weight = int(canary.get("weight") or 0)
    step = int(canary.get("stepIndex") or 0) + 1 if canary else 0
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("phase", f"{status.get('phase') or '…'}  {status.get('message') or ''}")
    grid.add_row(
        "canary",
        f"{canary.get('version', '–')}  {_bar(weight)} {weight:>3} %  step {step}/{len(limits.steps)}"
        if canary
        else f"none (active {status.get('activeVersion') or '–'})",
    )
    grid.add_row("analysis", describe(canary.get("analysis") or {}) if canary else "–")
    grid.add_row("traffic", traffic_line(tally, versions))
    done = " · ".join(f"{s.weight} % {s.seconds(elapsed):.0f}s" for s in watch.steps)
    grid.add_row("steps", done or "waiting for the canary pods")
    return Panel(
        Group(grid, Text(limits.text(), style="dim")),
        title=f"rollout of {watch.version}",
        title_align="left",
    )
