"""Options and error handling shared by the release commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from agentstage.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, err_console, fail

T = TypeVar("T")

#: Exit code of `rollout` when a canary was rolled back.
EXIT_ROLLED_BACK = 3

EvalOpt = Annotated[list[str] | None, typer.Option(
    "--eval", metavar="[AGENT[@VERSION]=]FILE",
    help="Evaluation report (agentstage JSON or Vertex AI evaluation output). Repeat per agent.")]
LoadTestOpt = Annotated[list[str] | None, typer.Option(
    "--load-test", metavar="[AGENT=]PATH",
    help="Locust --csv output: PREFIX_stats.csv, the PREFIX or its directory (with _stats_history.csv).")]
MemoryOpt = Annotated[list[str] | None, typer.Option(
    "--memory", metavar="[AGENT=]FILE", help="Memory series over the load test: CSV timestamp,memory_bytes.")]
CostOpt = Annotated[float | None, typer.Option(
    "--cost-per-request", metavar="USD", help="Measured cost per request (else the eval report's cost_per_request_usd).")]
AgentOpt = Annotated[list[str] | None, typer.Option("--agent", "-a", help="Only this agent (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as stable JSON (see docs/release.md).")]
ApplyOpt = Annotated[bool, typer.Option(
    "--apply", help="Also run `pulumi up --stack STACK` through the Automation API (needs the Pulumi CLI).")]


def build_evidence(evals: list[str] | None, load_tests: list[str] | None, memory: list[str] | None,
                   cost: float | None) -> Any:
    from agentstage.release.evidence import EvidenceError, parse_binding, read_eval, read_locust, read_memory
    from agentstage.release.gates import Evidence

    ev = Evidence(cost_per_request_usd=cost)
    try:
        ev.evals = [read_eval(e) for e in evals or []]
        for raw in load_tests or []:
            agent, _, path = parse_binding(raw)
            ev.load_tests[agent] = read_locust(path)
        for raw in memory or []:
            agent, _, path = parse_binding(raw)
            ev.memory[agent] = read_memory(path)
    except EvidenceError as err:
        fail(str(err), EXIT_BAD_INPUT)
    if cost is not None and cost < 0:
        fail(f"--cost-per-request: {cost} is negative", EXIT_BAD_INPUT)
    return ev


def guarded(fn: Callable[[], T]) -> T:
    """Run a release operation; turn its refusals into CLI errors with the right exit code."""
    from agentstage.release.flow import ReleaseError
    from agentstage.release.lock import LockBusy
    from agentstage.release.metrics import MetricsError
    from agentstage.release.stackfile import StackFileError

    try:
        return fn()
    except ReleaseError as err:
        err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True, markup=True)
        for line in err.details:
            err_console.print(f"  {line}", soft_wrap=True, markup=False)
        raise typer.Exit(err.code) from None
    except LockBusy as err:
        fail(str(err), EXIT_FAILED)
    except (MetricsError, StackFileError) as err:
        fail(str(err), EXIT_BAD_INPUT)


def apply_or_explain(project: Path, stack: str, wrote: bool) -> None:
    """``--apply``: run pulumi up, or explain why not; exit 1 when it could not deploy."""
    from agentstage.release.apply import ApplyFailed, PulumiMissing, apply_stack

    if not wrote:
        err_console.print("--apply: no config change, nothing to deploy")
        return
    try:
        result = apply_stack(project, stack, on_output=lambda line: err_console.print(line.rstrip(), markup=False))
    except (PulumiMissing, ApplyFailed) as err:
        fail(str(err), EXIT_FAILED)
    err_console.print(f"applied: pulumi up --stack {stack}: {result.summary} {json.dumps(result.changes)}")
