"""``agentstage registry STACK``: the A2A agent cards a stack publishes, checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from agentstage.commands.common import EXIT_FAILED, ConfigFileOpt, ProjectOpt, StackArg, check_stack_name

#: What the URL of an agent shows before its Cloud Run service exists.
URL_UNKNOWN = "(known after deploy)"


def registry(
    stack: StackArg,
    project: ProjectOpt = Path("."),
    config_file: ConfigFileOpt = None,
    new_stack: Annotated[
        bool,
        typer.Option("--new-stack", help="Plan as the first preview of a new stack: URLs are not known yet."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the registry as stable JSON (see docs/registry.md).")
    ] = False,
) -> None:
    """Print and check the agent registry of STACK: every agent's A2A card (name, version, URL,
    skills) and who may call it.

    Plans the stack offline, reads the cards the program publishes (stack output `registry`, or
    the card objects <agent>/.well-known/agent-card.json) and checks each with the a2a-sdk (the
    fields A2A requires), then against the stack: name = agent, version = the release the agent
    runs, unique skill ids, every agent of the call graph has a card. Exit 1 when the registry is
    invalid, 2 on bad input."""
    from agentstage.engine import run_plan
    from agentstage.registry import read_registry

    check_stack_name(stack)
    reg = read_registry(run_plan(project, stack, config_file, new_stack=new_stack))
    if as_json:
        typer.echo(json.dumps(reg.to_json(), indent=2))
    else:
        _render(reg, Console(highlight=False))
    if not reg.valid:
        raise typer.Exit(EXIT_FAILED)


def _render(reg, console: Console) -> None:  # reg: agentstage.registry.Registry
    where = f", bucket {reg.bucket}" if reg.bucket else ""
    console.print(Text(f"Agent registry of stack {reg.stack}: {len(reg.cards)} cards{where}"), soft_wrap=True)
    for agent, entry in sorted(reg.agents.items()):
        console.print()
        card = entry.card if isinstance(entry.card, dict) else {}
        version = card.get("version") or "-"
        if entry.card is None:
            console.print(Text.assemble((agent, "bold"), "  no card"), soft_wrap=True)
        elif not card:
            console.print(Text.assemble((agent, "bold"), "  card is not a JSON object"), soft_wrap=True)
        else:
            console.print(Text.assemble((agent, "bold"), f"  {version}  ", entry.url or URL_UNKNOWN), soft_wrap=True)
            console.print(Text(f"  {card.get('description', '')}"), soft_wrap=True)
            for skill in card.get("skills") or []:
                tags = ", ".join(skill.get("tags") or [])
                console.print(Text(f"  skill {skill.get('id')}: {skill.get('name')} [{tags}]"), soft_wrap=True)
        console.print(Text(f"  called by: {', '.join(entry.callers) or 'no agent'}"), soft_wrap=True)
        if entry.callees:
            console.print(Text(f"  calls: {', '.join(entry.callees)}"), soft_wrap=True)
    problems = reg.all_problems
    console.print()
    if not problems:
        console.print(Text(f"registry valid: {len(reg.cards)} cards checked"), soft_wrap=True)
        return
    for problem in problems:
        console.print(Text.assemble(("invalid: ", "red"), problem), soft_wrap=True)
    console.print(Text(f"registry INVALID: {len(problems)} problem{'s' if len(problems) != 1 else ''}"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("registry")(registry)
