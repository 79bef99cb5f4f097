"""docs/architecture.md draws the rollout's states from the transition table: the drawing must be
the one `make docs` would write now."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.operator.rollout.transitions import BEGIN, END, render_mermaid, with_diagram

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_rollout_diagram_is_current() -> None:
    page = ARCHITECTURE.read_text()
    assert page == with_diagram(page), (
        "docs/architecture.md's rollout diagram is stale (operator/rollout/transitions.py changed): "
        "run `make docs`"
    )
    assert f"{BEGIN}\n{render_mermaid()}{END}\n" in page


def test_the_diagram_replaces_only_its_block() -> None:
    page = f"# title\n\nbefore\n{BEGIN}\nold drawing\n{END}\nafter\n"
    assert with_diagram(page) == f"# title\n\nbefore\n{BEGIN}\n{render_mermaid()}{END}\nafter\n"


def test_a_page_without_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="no <!-- BEGIN rollout-states"):
        with_diagram("# title\n")
