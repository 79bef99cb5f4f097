"""Operator and kubectl-plugin commands: registered on the shared CLI, imports kept lazy."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the operator's commands to the shared CLI."""
