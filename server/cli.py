"""`modelfleet serve`: registered on the shared CLI; heavy imports happen inside the command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the server's commands to the shared CLI."""

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def serve(ctx: typer.Context) -> None:
        """Serve a LightGBM or ONNX model over the Open Inference Protocol (v2) and KServe v1."""
        typer.echo("modelfleet serve is not built yet (model server issue)", err=True)
        raise typer.Exit(code=2)
