"""``agentstage gate STACK``: the release readiness checklist, from evidence files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentstage.commands.common import EXIT_FAILED, ProjectOpt, StackArg
from agentstage.release.cli import AgentOpt, CostOpt, EvalOpt, JsonOpt, LoadTestOpt, MemoryOpt, build_evidence, guarded


def gate(
    stack: StackArg,
    eval_: EvalOpt = None,
    load_test: LoadTestOpt = None,
    memory: MemoryOpt = None,
    cost_per_request: CostOpt = None,
    from_stack: Annotated[str | None, typer.Option(
        "--from", help="Gate the promotion of this stack's releases into STACK (what `promote FROM STACK` checks).")] = None,
    agent: AgentOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Check a release's readiness: each gate passed or failed, with evidence and threshold.

    Gates: evaluation scores per metric (thresholds: agent-platform:gates.eval), load test p50/p95/p99
    and error rate (Locust --csv), memory stability (with --memory), cost per request x production
    volume within the budget, alerts and budget in the plan, policy check, rollback possible.
    Missing evidence fails its gate. Exit code 1 when a gate fails, 2 on bad input."""
    from agentstage.release.flow import gate as run_gate
    from agentstage.release.render import render_gates

    evidence = build_evidence(eval_, load_test, memory, cost_per_request)
    report = guarded(lambda: run_gate(project, stack, evidence, from_stack=from_stack, agents=agent))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        render_gates(report, Console(highlight=False))
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
