"""The `kubectl-modelfleet` plugin: the rollout-control commands alone.

A module of its own so that the plugin loads neither the server's CLI nor its settings: `undo` is
timed from the command to the router write, and most of that is this process starting.
"""

from __future__ import annotations

import typer

from modelfleet.operator import cli as operator_cli

app = typer.Typer(
    name="kubectl modelfleet",
    help="Control ModelDeployment rollouts: promote, abort, retry, pause, resume, undo, approve, "
    "status.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
operator_cli.register_plugin(app)


def main() -> None:
    """Entry point of the `kubectl-modelfleet` console script, named as kubectl shows it."""
    app(prog_name="kubectl modelfleet")
