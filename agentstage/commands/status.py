"""``agentstage status [STACK]``: releases, traffic and the last decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentstage.commands.common import ProjectOpt
from agentstage.release.cli import JsonOpt


def status(
    stack: Annotated[
        str | None, typer.Argument(help="Stack name; default: every stack of the project.", show_default=False)
    ] = None,
    history: Annotated[int, typer.Option("--history", min=0, help="Decisions shown per agent.")] = 3,
    observed_file: Annotated[
        Path | None,
        typer.Option("--observed-file", help="Read the live traffic split from this JSON file (see docs/canary.md)."),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Read the live split (Cloud Run Admin API, else the stack outputs) beside the desired one.",
        ),
    ] = True,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show releases, the desired and the live traffic, and the last decisions of each agent.

    Desired: the stack config. Live: the Cloud Run Admin API when Google credentials exist, else
    the stack outputs of the last `pulumi up`, or --observed-file. Decisions: the release ledger
    under .agentstage/."""
    from agentstage.release.flow import status as run_status
    from agentstage.release.render import render_status

    def observer_for(name: str, spec):
        from agentstage.release.observed import default_observer

        return default_observer(project, name, spec.project, spec.region, observed_file=observed_file, spec=spec)

    stacks = run_status(
        project,
        [stack] if stack else None,
        history=history,
        observer_for=observer_for if live or observed_file else None,
    )
    if as_json:
        typer.echo(json.dumps({"stacks": stacks}, indent=2))
    else:
        render_status(stacks, Console(highlight=False))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
