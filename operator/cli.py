"""Operator and kubectl-plugin commands: registered on the shared CLI, imports kept lazy."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the operator's commands to the shared CLI."""

    @app.command()
    def crd() -> None:
        """Print the ModelDeployment CustomResourceDefinition (YAML) generated from the API models."""
        from modelfleet.operator.crd import render_crd_yaml

        typer.echo(render_crd_yaml(), nl=False)
