"""Operator and kubectl-plugin commands: registered on the shared CLI, imports kept lazy."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the operator's commands to the shared CLI."""

    @app.command()
    def crd(
        peering: bool = typer.Option(False, help="Print kopf's ClusterKopfPeering CRD instead."),
    ) -> None:
        """Print the ModelDeployment CustomResourceDefinition (YAML) generated from the API models."""
        from modelfleet.operator.crd import render_crd_yaml, render_peering_yaml

        typer.echo(render_peering_yaml() if peering else render_crd_yaml(), nl=False)

    @app.command("operator")
    def operator_command(
        namespace: list[str] = typer.Option(
            [], "--namespace", "-n", help="Watch only these namespaces (repeatable)."
        ),
        standalone: bool = typer.Option(False, help="No peering: act even if other replicas run."),
    ) -> None:
        """Run the ModelDeployment operator against the cluster in KUBECONFIG (or in-cluster).

        Every setting is also an environment variable MODELFLEET_OPERATOR_<NAME>.
        """
        from modelfleet.operator.handlers import run
        from modelfleet.operator.settings import OperatorSettings

        overrides: dict[str, object] = {}
        if namespace:
            overrides["namespaces"] = namespace
        if standalone:
            overrides["peering"] = None
        run(OperatorSettings(**overrides))  # type: ignore[arg-type]
