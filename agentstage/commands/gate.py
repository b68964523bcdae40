"""``agentstage gate STACK``: the release readiness checklist, from evidence files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentstage.commands.common import EXIT_FAILED, ProjectOpt, StackArg
from agentstage.release.cli import AgentOpt, CostOpt, EvalOpt, JsonOpt, LoadTestOpt, MemoryOpt, build_evidence
from agentstage.release.ledger import iso, now_utc

#: The clock of the recorded decisions (tests replace it).
CLOCK = now_utc


def gate_decisions(report: Any, from_stack: str | None = None) -> list[dict[str, Any]]:
    """One ledger decision per candidate agent: the verdict and the items that concern it (its
    own and the stack's). A gate moves no traffic: ``percent`` and ``to_percent`` are the
    traffic the release has in the gated config (for ``--from``, the step promote would set)."""
    when = iso(CLOCK())
    out = []
    for agent, version in report.candidates.items():
        items = report.items_of(agent)
        failed = [i for i in items if i.ok is False]
        reason = (
            f"gate passed ({len(items)} items)"
            if not failed
            else f"gate failed: {len(failed)} of {len(items)} items: " + ", ".join(i.name for i in failed)
        )
        release = report.releases.get(agent, {})
        decision = {
            "time": when,
            "stack": report.stack,
            "agent": agent,
            "action": "gate",
            "release": version,
            "stable": release.get("stable"),
            "percent": release.get("percent"),
            "to_percent": release.get("percent"),
            "verdict": "failed" if failed else "passed",
            "reason": reason,
            "items": [asdict(i) for i in items],
        }
        if from_stack:
            decision["from_stack"] = from_stack
        out.append(decision)
    return out


def gate(
    stack: StackArg,
    eval_: EvalOpt = None,
    load_test: LoadTestOpt = None,
    memory: MemoryOpt = None,
    cost_per_request: CostOpt = None,
    from_stack: Annotated[
        str | None,
        typer.Option(
            "--from", help="Gate the promotion of this stack's releases into STACK (what `promote FROM STACK` checks)."
        ),
    ] = None,
    agent: AgentOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Check a release's readiness: each gate passed or failed, with evidence and threshold.

    Gates: the evaluation report of the release, its scores per metric (thresholds:
    agent-platform:gates.eval) and against the stable release's on the same dataset (with
    --eval AGENT@STABLE_VERSION=FILE); the load test whose manifest names the release (Locust
    --csv): p50/p95/p99 and error rate without health checks, 10x the expected peak sustained;
    memory stability (with --memory); every agent's cost per request x volume, summed, within
    the budget; a rollback measured to finish within 5 min; alerts and budget in the plan; the
    policy check. Missing evidence fails its gate. Each run is recorded in the stack's ledger
    (action "gate"). Exit code 1 when a gate fails, 2 on bad input."""
    from agentstage.engine import load_project
    from agentstage.release.flow import gate as run_gate
    from agentstage.release.flow import record_gate
    from agentstage.release.render import render_gates

    evidence = build_evidence(eval_, load_test, memory, cost_per_request)
    report = run_gate(project, stack, evidence, from_stack=from_stack, agents=agent)
    record_gate(load_project(project).dir, stack, gate_decisions(report, from_stack))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        render_gates(report, Console(highlight=False))
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
