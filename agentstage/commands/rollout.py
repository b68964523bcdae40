"""``agentstage rollout STACK``: analyse each canary in flight, then advance, hold or roll back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from agentstage.commands.common import ProjectOpt, StackArg
from agentstage.release.cli import EXIT_ROLLED_BACK, AgentOpt, ApplyOpt, JsonOpt, apply_or_explain, guarded


def _now():
    from agentstage.release.ledger import now_utc

    return now_utc()


#: Clock and sleep of --watch (injectable: tests replace them with a simulated clock).
CLOCK = _now
SLEEP = time.sleep
#: With --watch, how many analyses in a row may fail to read the metrics before the command
#: stops (the canaries stay where they are).
MAX_METRICS_FAILURES = 5


def _source(project: Path, stack: str, metrics_file: Path | None) -> Any:
    from agentstage.release.metrics import FileSource, MonitoringSource

    if metrics_file is not None:
        return FileSource(metrics_file, clock=CLOCK)
    from agentstage.release.flow import load_state

    spec = load_state(project, stack).spec
    return MonitoringSource(spec.project, spec.region, clock=CLOCK)


def rollout(
    stack: StackArg,
    metrics_file: Annotated[Path | None, typer.Option(
        "--metrics-file", help="Read the revisions' series from this JSON file (see docs/release.md) "
        "instead of Cloud Monitoring.")] = None,
    agent: AgentOpt = None,
    apply: ApplyOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="Repeat until every canary completes or rolls back.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=1, help="Seconds between analyses with --watch.")] = 60,
    max_wait: Annotated[float | None, typer.Option(
        "--max-wait", min=0, help="Minutes --watch may run before it stops (the canary stays where it is).")] = None,
    skip_bake: Annotated[bool, typer.Option(
        "--skip-bake", help="Do not wait for the bake time (the analysis, sample sizes and thresholds still "
        "apply); recorded in the ledger. For replaying recorded metrics and demos.")] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Analyse each canary in flight, then advance, hold or roll it back.

    Reads the last bake_minutes of the canary and of its stable revision, then advances
    it to the next step (at 100% the release takes all traffic and `stable` is dropped),
    holds it (bake time not over, or inconclusive), or rolls it back.

    Metrics come from Cloud Monitoring (run.googleapis.com/request_count and request_latencies of
    the cloud_run_revision resources), or from --metrics-file. Every decision is recorded in the
    ledger and shown by `agentstage status`. Exit code 0 advanced or held, 3 rolled back."""
    from rich.progress import BarColumn, Progress, TextColumn

    from agentstage.release.analysis import ADVANCE, HOLD, ROLLBACK
    from agentstage.release.flow import rollout_once
    from agentstage.release.render import render_change, render_diff

    console = Console(highlight=False, stderr=as_json)
    iterations: list[dict[str, Any]] = []
    rolled_back = False
    started = CLOCK()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:>3.0f}%"),
                        console=console, transient=False, disable=not watch or as_json)
    tasks: dict[str, Any] = {}
    failures = 0

    def analyse_once(source: Any) -> tuple[Any, Exception | None]:
        from agentstage.release.metrics import MetricsError

        try:
            return rollout_once(project, stack, source, clock=CLOCK, skip_bake=skip_bake, agents=agent), None
        except MetricsError as err:
            if not watch:
                raise
            return None, err  # a transient Monitoring failure must not end --watch

    with progress:
        while True:
            source = guarded(lambda: _source(project, stack, metrics_file))
            change, error = guarded(lambda: analyse_once(source))
            if error is not None:
                failures += 1
                progress.console.print(
                    f"[yellow]metrics unavailable[/] ({failures} of {MAX_METRICS_FAILURES} in a row): {escape(str(error))}; "
                    "nothing was decided, every canary stays where it is", soft_wrap=True)
                if failures >= MAX_METRICS_FAILURES:
                    console.print(f"stopping: the metrics could not be read {failures} times in a row; run "
                                  "`agentstage rollout` again once they can", soft_wrap=True)
                    raise typer.Exit(1)
                SLEEP(interval)
                continue
            failures = 0
            rolled_back |= any(a.verdict == ROLLBACK for a in change.analyses)
            iterations.append({"time": CLOCK().isoformat(), "wrote": change.wrote, "message": change.message,
                               "diff": change.diff.to_json() if change.diff else None, "decisions": change.decisions})
            if not as_json:
                if watch:
                    for a in change.analyses:
                        if a.agent not in tasks:
                            tasks[a.agent] = progress.add_task(a.agent, total=100)
                        progress.update(tasks[a.agent], completed=100 if a.verdict == "complete" else a.to_percent,
                                        description=f"{a.agent} {a.release}: {a.verdict}")
                    progress.console.print(f"[dim]{CLOCK().isoformat(timespec='seconds')}[/]")
                render_change(change, progress.console if watch else console)
            if apply:
                apply_or_explain(project, stack, change.wrote)
            pending = [a for a in change.analyses if a.verdict in (HOLD, ADVANCE)]
            if not watch or not pending:
                break
            elapsed = (CLOCK() - started).total_seconds()
            if max_wait is not None and elapsed >= max_wait * 60:
                console.print(f"--max-wait of {max_wait:g} min reached; still in flight: "
                              + ", ".join(f"{a.agent} at {a.to_percent}%" for a in pending))
                break
            if skip_bake and change.wrote:
                continue  # no bake to wait for: analyse the new step at once
            wait = interval if max_wait is None else min(interval, max_wait * 60 - elapsed)
            SLEEP(max(wait, 0))
    if as_json:
        typer.echo(json.dumps({"stack": stack, "rolled_back": rolled_back, "iterations": iterations}, indent=2))
    if rolled_back:
        raise typer.Exit(EXIT_ROLLED_BACK)


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout)
