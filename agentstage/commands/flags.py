"""``agentstage flags set|show``: an agent's feature flags, which live in Parameter Manager and
are read by the agent at run time, so a flip is one parameter version and never a new revision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentstage.commands.common import ProjectOpt, StackArg
from agentstage.release.cli import ApplyOpt, JsonOpt, apply_or_explain

flags_app = typer.Typer(
    name="flags",
    help="Feature flags in Parameter Manager: flip one without a new revision.",
    no_args_is_help=True,
)

AgentArg = Annotated[str, typer.Option("--agent", "-a", help="The agent whose flags to set.", show_default=False)]
AssignmentsArg = Annotated[
    list[str], typer.Argument(help="NAME=on|off (also true|false), one or more.", show_default=False)
]


def set_(
    stack: StackArg,
    assignments: AssignmentsArg,
    agent: AgentArg,
    create: Annotated[
        bool, typer.Option("--create", help="Allow flag names the agent does not have yet (a typo is refused).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the ledger.")] = "set by the operator",
    apply: ApplyOpt = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Set feature flags of one agent: `agentstage flags set staging --agent support-bot web_search_tool=off`.

    Edits `agents.<agent>.features` in the stack config (comments kept), after checking on the
    offline plan that the change is exactly one new version of the agent's flags parameter (no
    new revision, no other resource); records it in the ledger. The agent sees the flip within
    its reader's cache time (30 s by default) once the version is deployed (--apply)."""
    from agentstage.release.flagset import parse_assignments, set_flags
    from agentstage.release.render import render_diff

    wanted = parse_assignments(assignments)
    change = set_flags(project, stack, agent, wanted, create=create, reason=reason)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "stack": stack,
                    "agent": agent,
                    "wrote": change.wrote,
                    "message": change.message,
                    "diff": change.diff.to_json() if change.diff else None,
                    "decisions": change.decisions,
                },
                indent=2,
            )
        )
    else:
        console = Console(highlight=False)
        for note in change.notes:
            console.print(f"note: {note}", markup=False, soft_wrap=True)
        console.print(change.message, markup=False, soft_wrap=True)
        if change.wrote:
            console.print(f"wrote {change.path}", markup=False)
            render_diff(change.diff, console)
    if apply:
        apply_or_explain(project, stack, change.wrote, change.decisions)


def show(
    stack: StackArg,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="Only this agent.")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The flags of each agent as the stack config sets them, and the parameter (and version)
    where the agent reads them."""
    from agentstage.release.flagset import show_flags

    views = show_flags(project, stack, agent)
    if as_json:
        typer.echo(json.dumps({"stack": stack, "agents": [v.to_json() for v in views]}, indent=2))
        return
    console = Console(highlight=False)
    table = Table(title=f"feature flags in {escape(stack)}", title_justify="left")
    for col in ("agent", "flags", "parameter version"):
        table.add_column(col, overflow="fold")
    for v in views:
        shown = ", ".join(f"{n}={'on' if on else 'off'}" for n, on in v.flags.items()) or "(none)"
        table.add_row(escape(v.agent), escape(shown), escape(v.version))
    console.print(table)


def register(app: typer.Typer) -> None:
    """``flags set`` and ``flags show`` under one ``flags`` group."""
    from agentstage.boundary import command

    # the boundary wraps commands registered on the main app; a sub-app's are wrapped here
    flags_app.command("set")(command(set_))
    flags_app.command("show")(command(show))
    app.add_typer(flags_app, name="flags")
