"""The `modelfleet` and `kubectl-modelfleet` command lines.

Each part registers its own commands from a light module (`modelfleet.server.cli`,
`modelfleet.operator.cli`); those import their heavy dependencies inside the command
bodies, so `modelfleet serve` never loads kopf and the operator never loads lightgbm.
"""

from __future__ import annotations

import typer

from modelfleet import __version__

app = typer.Typer(
    name="modelfleet",
    help="Ship ML models to Kubernetes safely: operator, model server and rollout control.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the modelfleet version."""
    typer.echo(__version__)


def _register_parts() -> None:
    from modelfleet.operator import cli as operator_cli
    from modelfleet.server import cli as server_cli

    server_cli.register(app)
    operator_cli.register(app)


_register_parts()


def main() -> None:
    """Entry point of the `modelfleet` console script."""
    app()
