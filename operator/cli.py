"""Operator and kubectl-plugin commands: registered on the shared CLI, imports kept lazy."""

from __future__ import annotations

from typing import Any

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
        from modelfleet.operator.process import run
        from modelfleet.operator.settings import OperatorSettings

        overrides: dict[str, object] = {}
        if namespace:
            overrides["namespaces"] = namespace
        if standalone:
            overrides["peering"] = None
        run(OperatorSettings(**overrides))  # type: ignore[arg-type]

    register_plugin(app)


def register_plugin(app: typer.Typer) -> None:
    """Add the rollout-control commands (all that `kubectl modelfleet` has)."""
    for verb, doc in _VERBS.items():
        _register_verb(app, verb, doc)

    @app.command()
    def status(
        name: str = typer.Argument(..., help="ModelDeployment name."),
        namespace: str | None = _NAMESPACE,
        watch: bool = typer.Option(False, "--watch", "-w", help="Keep the view live."),
    ) -> None:
        """Show a ModelDeployment's rollout: slots, steps, weight, analysis, conditions."""
        import asyncio

        asyncio.run(_status(name, namespace, watch))


_NAMESPACE = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's).")

_VERBS = {
    "promote": "Skip the current step's analysis (--full: straight to 100 % and promote).",
    "abort": "Roll the canary back now: weight 0, the active slot keeps serving.",
    "retry": "Roll out again a revision that was rolled back, aborted or undone.",
    "pause": "Hold the canary at its current weight.",
    "resume": "Continue a paused rollout (with a fresh analysis window).",
    "undo": "Flip all traffic back to the previous slot kept warm after the last promotion "
    "(says first whether it is still warm, or that a revert would run as a normal rollout).",
    "approve": "Approve the manual confirm gates (rollout.webhooks, manual: true) the canary "
    "waits for; recorded in the status history.",
}


def _register_verb(app: typer.Typer, verb: str, doc: str) -> None:
    def command(
        name: str = typer.Argument(..., help="ModelDeployment name."),
        namespace: str | None = _NAMESPACE,
        full: bool = typer.Option(False, "--full", help="promote: skip every remaining step."),
        wait: float = typer.Option(30.0, help="Seconds to wait for the acknowledgement (0: none)."),
    ) -> None:
        import asyncio

        if full and verb != "promote":
            raise typer.BadParameter("--full only applies to promote")
        message = asyncio.run(_send(name, namespace, verb, full, wait))
        typer.echo(message)

    command.__doc__ = doc
    app.command(name=verb)(command)


async def _send(name: str, namespace: str | None, verb: str, full: bool, wait: float) -> str:
    from modelfleet.operator.control import ControlError, send_command
    from modelfleet.operator.kube import HttpKubeClient
    from modelfleet.operator.kube_credentials import current_namespace

    kube = HttpKubeClient.from_environment()
    namespace = namespace or current_namespace()
    try:
        if verb == "undo":
            await _say_what_undo_will_do(kube, namespace, name)
        by = await kube.who_am_i() if verb == "approve" else None  # recorded with the approval
        status = await send_command(
            kube, namespace, name, verb, full=full, wait_seconds=wait, by=by
        )
    except ControlError as error:
        raise typer.Exit(_fail(str(error))) from error
    finally:
        await kube.close()
    if not status:
        return f"{verb} sent to {namespace}/{name}"
    return f"{verb} acknowledged: {status.get('phase')}: {status.get('message', '')}"


async def _say_what_undo_will_do(kube: Any, namespace: str, name: str) -> None:
    """Before acting: a flip to the warm previous slot, or why a revert would be a rollout."""
    from datetime import UTC, datetime

    from modelfleet.operator.api import API_VERSION
    from modelfleet.operator.control import undo_outlook

    obj = await kube.get(API_VERSION, "ModelDeployment", namespace, name)
    if obj is None:
        raise typer.Exit(_fail(f"modeldeployment {namespace}/{name} not found"))
    outlook = undo_outlook(obj, datetime.now(UTC))
    if not outlook.instant:
        raise typer.Exit(_fail(f"undo {namespace}/{name}: {outlook.message}"))
    typer.echo(f"undo {namespace}/{name}: {outlook.message}")


def _fail(message: str) -> int:
    typer.echo(message, err=True)
    return 1


async def _status(name: str, namespace: str | None, watch: bool) -> None:
    import asyncio

    from rich.console import Console
    from rich.live import Live

    from modelfleet.operator.api import API_VERSION
    from modelfleet.operator.control import render_status
    from modelfleet.operator.kube import HttpKubeClient
    from modelfleet.operator.kube_credentials import current_namespace

    kube = HttpKubeClient.from_environment()
    namespace = namespace or current_namespace()
    console = Console()
    try:
        obj = await kube.get(API_VERSION, "ModelDeployment", namespace, name)
        if obj is None:
            raise typer.Exit(_fail(f"modeldeployment {namespace}/{name} not found"))
        if not watch:
            console.print(render_status(obj))
            return
        with Live(render_status(obj), console=console, refresh_per_second=4) as live:
            while obj is not None:
                await asyncio.sleep(1)
                obj = await kube.get(API_VERSION, "ModelDeployment", namespace, name)
                if obj is not None:
                    live.update(render_status(obj))
    finally:
        await kube.close()
