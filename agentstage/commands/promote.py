"""``agentstage promote FROM TO``: copy release manifests FROM -> TO and start the canary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentstage.commands.common import ProjectOpt
from agentstage.release.cli import (
    AgentOpt,
    ApplyOpt,
    CostOpt,
    EvalOpt,
    JsonOpt,
    LoadTestOpt,
    MemoryOpt,
    apply_or_explain,
    build_evidence,
)


def promote(
    from_stack: Annotated[
        str, typer.Argument(help="Stack whose releases are promoted, e.g. staging.", show_default=False)
    ],
    to_stack: Annotated[str, typer.Argument(help="Stack that receives them, e.g. production.", show_default=False)],
    eval_: EvalOpt = None,
    load_test: LoadTestOpt = None,
    memory: MemoryOpt = None,
    cost_per_request: CostOpt = None,
    agent: AgentOpt = None,
    observed_file: Annotated[
        Path | None,
        typer.Option(
            "--observed-file",
            help="Read what each agent serves now from this JSON file (see docs/canary.md); needed offline to "
            "record an Agent Engine's stable revision id.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run the gates and show the change; write nothing.")
    ] = False,
    apply: ApplyOpt = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Promote the exact release manifests FROM runs into TO, behind the release gates.

    For each agent whose release differs: TO's current release becomes `stable`, FROM's manifest
    becomes `release`, and `rollout.canary_percent` is set to the first step - a comment-preserving
    edit of TO's stack file. Refused, with no file changed, when a gate fails, a canary is already
    in flight, the version was recorded with other contents, or the stacks disagree on anything
    but the release. Exit code 1 when refused, 2 on bad input."""
    from agentstage.release.flow import promote as run_promote
    from agentstage.release.render import render_change, render_diff, render_gates

    console = Console(highlight=False)
    evidence = build_evidence(eval_, load_test, memory, cost_per_request)
    from agentstage.release.observed import ObserverForRuntimes

    def observer_for(_stack: str, spec):
        return ObserverForRuntimes(spec.project, spec.region, observed_file=observed_file, spec=spec)

    change = run_promote(
        project, from_stack, to_stack, evidence, agents=agent, dry_run=dry_run, observer_for=observer_for
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "from": from_stack,
                    "to": to_stack,
                    "wrote": change.wrote,
                    "message": change.message,
                    "notes": change.notes,
                    "gates": change.gates.to_json() if change.gates else None,
                    "diff": change.diff.to_json() if change.diff else None,
                    "decisions": change.decisions,
                },
                indent=2,
            )
        )
    else:
        if change.gates:
            render_gates(change.gates, console)
        if dry_run and change.diff is not None:
            console.print("dry run: nothing written")
            render_diff(change.diff, console)
        else:
            render_change(change, console)
            if change.wrote:
                console.print(f"promoted {from_stack} -> {to_stack}: {change.message}")
    if apply and not dry_run:
        apply_or_explain(project, to_stack, change.wrote, change.decisions)


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
