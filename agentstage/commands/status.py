"""``agentstage status [STACK]``: releases, traffic and the last decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentstage.commands.common import ProjectOpt
from agentstage.release.cli import JsonOpt, guarded


def status(
    stack: Annotated[str | None, typer.Argument(help="Stack name; default: every stack of the project.", show_default=False)] = None,
    history: Annotated[int, typer.Option("--history", min=0, help="Decisions shown per agent.")] = 3,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show releases, traffic and the last decisions of each agent.

    Read from the stack config and the release ledger under .agentstage/."""
    from agentstage.release.flow import status as run_status
    from agentstage.release.render import render_status

    stacks = guarded(lambda: run_status(project, [stack] if stack else None, history=history))
    if as_json:
        typer.echo(json.dumps({"stacks": stacks}, indent=2))
    else:
        render_status(stacks, Console(highlight=False))


def register(app: typer.Typer) -> None:
    app.command("status")(status)
