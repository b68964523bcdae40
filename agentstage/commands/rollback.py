"""``agentstage rollback STACK``: all traffic to the stable release, now."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from agentstage.commands.common import ProjectOpt, StackArg
from agentstage.release.cli import AgentOpt, ApplyOpt, JsonOpt, apply_or_explain


def rollback(
    stack: StackArg,
    agent: AgentOpt = None,
    apply: ApplyOpt = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Send all traffic of every canary in flight (or of --agent) to its stable revision.

    Sets `rollout.canary_percent: 0`: one update of one resource per agent (the Cloud Run
    service's traffic), no new revision - checked on the offline plan diff before the stack
    file is written. The candidate revision leaves the traffic block (no tag, so no warm, billed instances); the
    revision itself stays for debugging (see docs/release.md)."""
    from agentstage.release.flow import rollback as run_rollback
    from agentstage.release.render import render_change

    change = run_rollback(project, stack, agent)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "stack": stack,
                    "wrote": change.wrote,
                    "message": change.message,
                    "diff": change.diff.to_json() if change.diff else None,
                    "decisions": change.decisions,
                },
                indent=2,
            )
        )
    else:
        render_change(change, Console(highlight=False))
    if apply:
        apply_or_explain(project, stack, change.wrote, change.decisions)


def register(app: typer.Typer) -> None:
    app.command("rollback")(rollback)
