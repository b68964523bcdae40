"""Options and error handling shared by the release commands."""

from __future__ import annotations

import json
import math
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
    help="Evaluation report (agentstage JSON or Vertex AI evaluation output). Repeat per agent; a report of "
    "the stable version is compared with the release's, one of a running agent counts its cost.")]
LoadTestOpt = Annotated[list[str] | None, typer.Option(
    "--load-test", metavar="[AGENT=]PATH",
    help="Locust --csv output: PREFIX_stats.csv, the PREFIX or a directory of runs, each with its "
    "PREFIX_stats_history.csv and PREFIX_manifest.json naming the agent and version it measured.")]
MemoryOpt = Annotated[list[str] | None, typer.Option(
    "--memory", metavar="[AGENT=]FILE", help="Memory series over the load test: CSV timestamp,memory_bytes.")]
CostOpt = Annotated[float | None, typer.Option(
    "--cost-per-request", metavar="USD",
    help="Measured cost per request of the one agent released (else its eval report's cost_per_request_usd).")]
AgentOpt = Annotated[list[str] | None, typer.Option("--agent", "-a", help="Only this agent (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as stable JSON (see docs/release.md).")]
ApplyOpt = Annotated[bool, typer.Option(
    "--apply", help="Also run `pulumi up --stack STACK` through the Automation API (needs the Pulumi CLI).")]


def build_evidence(evals: list[str] | None, load_tests: list[str] | None, memory: list[str] | None,
                   cost: float | None) -> Any:
    from agentstage.release.evidence import EvidenceError, parse_binding, read_eval, read_load_tests, read_memory
    from agentstage.release.gates import Evidence

    if cost is not None and not math.isfinite(cost):
        fail(f"--cost-per-request: {cost} is not a finite number", EXIT_BAD_INPUT)
    if cost is not None and cost < 0:
        fail(f"--cost-per-request: {cost} is negative", EXIT_BAD_INPUT)
    ev = Evidence(cost_per_request_usd=cost)
    try:
        ev.evals = [read_eval(e) for e in evals or []]
        seen: dict[tuple[str, str], str] = {}
        for report in ev.evals:
            if report.agent and report.version:
                key = (report.agent, report.version)
                if key in seen:
                    raise EvidenceError(f"--eval: two reports for {report.agent} {report.version} ({seen[key]}, "
                                        f"{report.path}); give one")
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
    except EvidenceError as err:
        fail(str(err), EXIT_BAD_INPUT)
    return ev


def guarded(fn: Callable[[], T]) -> T:
    """Run a release operation; turn its refusals into CLI errors with the right exit code."""
    from agentstage.release.flow import ReleaseError
    from agentstage.release.journal import JournalError
    from agentstage.release.observed import ObservedError
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
    except (MetricsError, StackFileError, ObservedError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    except JournalError as err:
        fail(str(err), EXIT_FAILED)


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
