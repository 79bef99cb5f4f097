"""`modelfleet serve`: registered on the shared CLI; heavy imports happen inside the command.

Every setting of `ServerSettings` is a flag (`--max-batch-size 32`) and an env var
(`MODELFLEET_MAX_BATCH_SIZE=32`); flags win. Short aliases: --model, --name, --format,
--version, --sha256.
"""

from __future__ import annotations

import typer

ALIASES = {
    "model": "model_uri",
    "name": "model_name",
    "format": "model_format",
    "version": "model_version",
    "sha256": "model_sha256",
}


def parse_flags(args: list[str], fields: set[str], booleans: set[str]) -> dict[str, str]:
    """`--some-flag value` / `--some-flag=value` pairs as settings field names → raw values."""
    values: dict[str, str] = {}
    position = 0
    while position < len(args):
        arg = args[position]
        if not arg.startswith("--"):
            raise typer.BadParameter(f"unexpected argument {arg!r}")
        flag, sep, value = arg[2:].partition("=")
        field = ALIASES.get(flag, flag.replace("-", "_"))
        if field not in fields:
            raise typer.BadParameter(f"unknown option --{flag}; see `modelfleet serve --help`")
        if not sep:
            nxt = args[position + 1] if position + 1 < len(args) else None
            if field in booleans and (nxt is None or nxt.startswith("--")):
                value = "true"
            elif nxt is None:
                raise typer.BadParameter(f"--{flag} needs a value")
            else:
                value, position = nxt, position + 1
        values[field] = value
        position += 1
    return values


def _options_help() -> str:
    from modelfleet.server.settings import ServerSettings

    reverse = {field: alias for alias, field in ALIASES.items()}
    lines = []
    for field, info in ServerSettings.model_fields.items():
        flag = reverse.get(field, field.replace("_", "-"))
        default = (
            ""
            if info.is_required()
            else f" (default: {info.get_default(call_default_factory=False)})"
        )
        lines.append(f"--{flag} / MODELFLEET_{field.upper()}: {info.description or ''}{default}")
    return "\n\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add the server's commands to the shared CLI."""

    @app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        epilog=_options_help(),
    )
    def serve(ctx: typer.Context) -> None:
        """Serve a LightGBM or ONNX model over the Open Inference Protocol (v2) and KServe v1."""
        from pydantic import ValidationError

        from modelfleet.server.main import run
        from modelfleet.server.settings import ServerSettings

        fields = set(ServerSettings.model_fields)
        booleans = {f for f, i in ServerSettings.model_fields.items() if i.annotation is bool}
        overrides = parse_flags(list(ctx.args), fields, booleans)
        try:
            settings = ServerSettings(**overrides)  # type: ignore[arg-type]
        except ValidationError as error:
            for problem in error.errors():
                where = ".".join(str(p) for p in problem["loc"]) or "settings"
                typer.echo(f"modelfleet serve: {where}: {problem['msg']}", err=True)
            raise typer.Exit(code=2) from error
        raise typer.Exit(code=run(settings))
