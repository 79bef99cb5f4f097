"""What `kubectl modelfleet undo` says before it acts: a warm slot to flip to, or a rollout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelfleet.operator.control import undo_outlook

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def md(status: dict[str, Any], keep_previous: str = "10m") -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"uri": "s3://models/fraud/model.onnx"},
            "rollout": {"keepPrevious": keep_previous, "stepDuration": "60s"},
        },
        "status": {"activeSlot": "green", "activeVersion": "v2", **status},
    }


PREVIOUS = {"slot": "blue", "revision": "r1", "version": "v1", "until": "2026-01-01T12:07:30Z"}


def test_a_warm_previous_slot_is_an_instant_undo() -> None:
    outlook = undo_outlook(md({"previous": PREVIOUS}), NOW)
    assert outlook.instant
    assert outlook.message == (
        "v1 is still warm in slot blue until 2026-01-01T12:07:30Z (7m30s left): "
        "undo flips all traffic back to it in one router write"
    )


@pytest.mark.parametrize(
    ("status", "keep", "said"),
    [
        ({}, "10m", "no previous slot is warm (it is kept 10m after a promotion)"),
        ({}, "0", "keepPrevious is 0, so no previous slot is kept warm"),
        ({"previous": {**PREVIOUS, "until": "2026-01-01T11:59:00Z"}}, "10m", "no previous slot"),
    ],
)
def test_nothing_warm_says_a_revert_is_a_normal_rollout(
    status: dict[str, Any], keep: str, said: str
) -> None:
    outlook = undo_outlook(md(status, keep), NOW)
    assert not outlook.instant
    assert said in outlook.message
    assert "normal rollout (10% → 25% → 50% → 100%, 60s each)" in outlook.message


def test_a_rollout_in_progress_is_not_undone() -> None:
    canary = {"slot": "blue", "revision": "r3", "version": "v3", "weight": 10}
    outlook = undo_outlook(md({"canary": canary}), NOW)
    assert not outlook.instant
    assert "a rollout of v3 is in progress" in outlook.message


def test_status_view_shows_the_shadow_step_and_the_warm_slot() -> None:
    from rich.console import Console

    from modelfleet.operator.control import render_status

    canary = {
        "slot": "blue",
        "revision": "r3",
        "version": "v3",
        "mirror": 100,
        "shadowStartedAt": "2026-01-01T12:00:00Z",
    }
    console = Console(width=200, record=True)
    console.print(render_status(md({"canary": canary})))
    console.print(render_status(md({"previous": PREVIOUS})))
    text = console.export_text()
    assert "100 % of live traffic mirrored since 2026-01-01T12:00:00Z" in text
    assert "v1 warm in slot blue until 2026-01-01T12:07:30Z" in text
