"""Options and evidence reading shared by the release commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from agentstage.boundary import clean, err_console
from agentstage.errors import EXIT_ROLLED_BACK, BadInput

__all__ = ["EXIT_ROLLED_BACK", "build_evidence", "apply_or_explain"]


EvalOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--eval",
        metavar="[AGENT[@VERSION]=]FILE",
        help="Evaluation report (agentstage JSON, Vertex AI evaluation output or an ADK eval set result). Repeat "
        "per agent; a report of the stable version is compared with the release's, one of a running agent counts "
        "its cost.",
    ),
]
LoadTestOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--load-test",
        metavar="[AGENT=]PATH",
        help="Locust --csv output: PREFIX_stats.csv, the PREFIX or a directory of runs, each with its "
        "PREFIX_stats_history.csv and PREFIX_manifest.json naming the agent and version it measured.",
    ),
]
MemoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--memory", metavar="[AGENT=]FILE", help="Memory series over the load test: CSV timestamp,memory_bytes."
    ),
]
CostOpt = Annotated[
    float | None,
    typer.Option(
        "--cost-per-request",
        metavar="USD",
        help="Measured cost per request of the one agent released (else its eval report's cost_per_request_usd).",
    ),
]
AgentOpt = Annotated[list[str] | None, typer.Option("--agent", "-a", help="Only this agent (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as stable JSON (see docs/release.md).")]
ApplyOpt = Annotated[
    bool,
    typer.Option(
        "--apply", help="Also run `pulumi up --stack STACK` through the Automation API (needs the Pulumi CLI)."
    ),
]


def build_evidence(
    evals: list[str] | None, load_tests: list[str] | None, memory: list[str] | None, cost: float | None
) -> Any:
    from agentstage.release.evidence import EvidenceError, parse_binding, read_eval, read_load_tests, read_memory
    from agentstage.release.gates import Evidence

    if cost is not None and not math.isfinite(cost):
        raise BadInput(f"--cost-per-request: {cost} is not a finite number")
    if cost is not None and cost < 0:
        raise BadInput(f"--cost-per-request: {cost} is negative")
    ev = Evidence(cost_per_request_usd=cost)
    ev.evals = [read_eval(e) for e in evals or []]
    seen: dict[tuple[str, str], str] = {}
    for report in ev.evals:
        if report.agent and report.version:
            key = (report.agent, report.version)
            if key in seen:
                raise EvidenceError(
                    f"--eval: two reports for {report.agent} {report.version} ({seen[key]}, {report.path}); give one"
                )
            seen[key] = report.path
    for raw in load_tests or []:
        agent, version, path = parse_binding(raw)
        if version:
            raise EvidenceError(f"--load-test {raw}: give AGENT=PATH; the version a run measured is its manifest's")
        runs = ev.load_tests.setdefault(agent, [])
        runs += [r for r in read_load_tests(path) if r.path not in {x.path for x in runs}]
    for raw in memory or []:
        agent, version, path = parse_binding(raw)
        if version:
            raise EvidenceError(f"--memory {raw}: give AGENT=FILE (no version)")
        if agent in ev.memory:
            raise EvidenceError(f"--memory: two series for {agent or 'the released agent'}; give one")
        ev.memory[agent] = read_memory(path)
    return ev


def apply_or_explain(project: Path, stack: str, wrote: bool, deployed: list[dict[str, Any]] | None = None) -> None:
    """``--apply``: run pulumi up, or explain why not; exit 1 when it could not deploy.

    ``deployed`` are the decisions whose config this deploys: a successful ``pulumi up`` records
    its measured seconds against each in the ledger (what the release gate's rollback item reads);
    a failed one records nothing, since a partial deploy's time says nothing about a rollback's."""
    from agentstage.release.apply import ApplyFailed, apply_stack, record_applied
    from agentstage.release.lock import LockBusy

    if not wrote:
        err_console.print("--apply: no config change, nothing to deploy")
        return
    try:
        result = apply_stack(
            project, stack, on_output=lambda line: err_console.print(clean(line.rstrip()), markup=False)
        )
    except ApplyFailed as err:
        if not deployed:
            raise
        raise ApplyFailed(f"{err.message}; the deploy time was not recorded in the ledger") from None
    err_console.print(
        f"applied: pulumi up --stack {stack}: {result.summary} {json.dumps(result.changes)} in {result.seconds:.1f} s",
        markup=False,
    )
    if not deployed:
        return
    try:
        recorded = record_applied(project, stack, deployed, result)
    except LockBusy as err:
        # the deploy itself succeeded: say what is missing rather than fail a finished deploy
        err_console.print(
            clean(f"--apply: deployed, but its {result.seconds:.1f} s were not recorded in the ledger: {err.message}"),
            markup=False,
        )
        return
    if recorded:
        what = ", ".join(f"{d['deployed_action']} of {d['agent']}" for d in recorded)
        err_console.print(
            clean(f"recorded in the ledger: applied_seconds {result.seconds:.1f} for the {what}"), markup=False
        )
