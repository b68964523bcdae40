"""``agentstage rollout STACK``: observe each canary, then advance, hold or roll it back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentstage.commands.common import ProjectOpt, StackArg
from agentstage.release.cli import EXIT_ROLLED_BACK, AgentOpt, ApplyOpt, JsonOpt, apply_or_explain


def _now():
    from agentstage.release.ledger import now_utc

    return now_utc()


#: Clock and sleep of --watch (injectable: tests replace them with a simulated clock).
CLOCK = _now
SLEEP = time.sleep


def _source(project: Path, stack: str, metrics_file: Path | None) -> Any:
    from agentstage.release.metrics import FileSource, MonitoringSource

    if metrics_file is not None:
        return FileSource(metrics_file, clock=CLOCK)
    from agentstage.release.flow import load_state

    spec = load_state(project, stack).spec
    signals = sorted({s for a in spec.agents.values() for s in a.rollout.analysis.signals})
    return MonitoringSource(spec.project, spec.region, clock=CLOCK, signals=signals)


def _request_logs(project: Path, stack: str, metrics_file: Path | None) -> Any:
    """Cloud Run's request logs, read alongside Cloud Monitoring (or a local Logging server
    named by AGENTSTAGE_LOGGING_ENDPOINT); not with --metrics-file alone."""
    import os

    from agentstage.ops.logs import ENDPOINT_ENV

    if metrics_file is not None and not os.environ.get(ENDPOINT_ENV):
        return None
    from agentstage.release.flow import load_state
    from agentstage.release.requestlogs import RequestLogSource

    spec = load_state(project, stack).spec
    return RequestLogSource(spec.project, spec.region)


def _observer(project: Path, stack: str, observed_file: Path | None, assume_deployed: bool) -> Any:
    if assume_deployed:
        return None
    from agentstage.release.flow import load_state
    from agentstage.release.observed import default_observer

    spec = load_state(project, stack).spec
    return default_observer(project, stack, spec.project, spec.region, observed_file=observed_file, spec=spec)


def rollout(
    stack: StackArg,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            help="Read the revisions' series from this JSON file (see docs/release.md) instead of Cloud Monitoring.",
        ),
    ] = None,
    observed_file: Annotated[
        Path | None,
        typer.Option(
            "--observed-file",
            help="Read the live traffic split from this JSON file (see docs/canary.md) instead of "
            "the Cloud Run Admin API or the stack outputs.",
        ),
    ] = None,
    assume_deployed: Annotated[
        bool,
        typer.Option(
            "--assume-deployed",
            help="Trust that each config change is live once written (offline replays and demos); "
            "recorded in the ledger.",
        ),
    ] = False,
    approve: Annotated[
        list[str] | None,
        typer.Option(
            "--approve",
            metavar="AGENT",
            help="Advance this agent's paused canary on the evidence there is (recorded as approved by the operator).",
        ),
    ] = None,
    agent: AgentOpt = None,
    apply: ApplyOpt = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Repeat until every canary completes, rolls back or pauses for a person.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=1, help="Seconds between looks with --watch.")] = 60,
    max_wait: Annotated[
        float | None,
        typer.Option(
            "--max-wait", min=0, help="Minutes --watch may run before it stops (the canary stays where it is)."
        ),
    ] = None,
    skip_bake: Annotated[
        bool,
        typer.Option(
            "--skip-bake",
            help="Do not wait for the bake time or the watch, and judge on every minute of the metrics "
            "(the checks and sample sizes still apply); recorded in the ledger. For replaying recorded metrics and "
            "demos.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Observe each canary in flight, then advance, hold or roll it back.

    A step's bake time starts when the live traffic split (Cloud Run Admin API, else the stack
    outputs of the last `pulumi up`, or --observed-file) matches the stack config. The judge
    compares the canary with its stable revision over the whole rollout, minute by minute
    (failed requests 5xx + 429, latency distributions, absolute limits, the memory trend; see
    docs/canary.md). At 100% the release is watched with the previous revision kept, then
    completes. Too little traffic extends a step, then pauses it for a person (--approve).

    Metrics come from Cloud Monitoring, or from --metrics-file. A Cloud Run canary's failed
    requests are also read from its request logs (Cloud Logging), seconds old, so a failing canary
    is rolled back minutes sooner; a step advances on Monitoring alone. Every decision is recorded
    in the ledger and shown by `agentstage status`. Exit code 0 advanced or held, 3 rolled back."""
    from agentstage.release.flow import Change, rollout_once, rollout_watch
    from agentstage.release.render import render_change

    console = Console(highlight=False, stderr=as_json)
    iterations: list[dict[str, Any]] = []
    options = dict(
        skip_bake=skip_bake,
        agents=agent,
        assume_deployed=assume_deployed,
        approve=approve,
        observer=_observer(project, stack, observed_file, assume_deployed),
        request_logs=_request_logs(project, stack, metrics_file),
    )

    def shown(change: Change) -> None:
        iterations.append(
            {
                "time": CLOCK().isoformat(),
                "wrote": change.wrote,
                "message": change.message,
                "diff": change.diff.to_json() if change.diff else None,
                "decisions": change.decisions,
                "notes": change.notes,
            }
        )
        if not as_json:
            if watch:
                console.print(f"[dim]{CLOCK().isoformat(timespec='seconds')}[/]")
            render_change(change, console)
        if apply:
            apply_or_explain(project, stack, change.wrote, change.decisions)

    if watch:
        result = rollout_watch(
            project,
            stack,
            lambda: _source(project, stack, metrics_file),
            clock=CLOCK,
            sleep=SLEEP,
            interval=interval,
            max_wait_minutes=max_wait,
            on_change=shown,
            **options,
        )
        rolled_back = result.rolled_back
        if not as_json:
            console.print(f"stopped: {result.stopped}", soft_wrap=True, markup=False)
    else:
        change = rollout_once(project, stack, _source(project, stack, metrics_file), clock=CLOCK, **options)
        shown(change)
        rolled_back = any(a.verdict == "rollback" for a in change.analyses)
    if as_json:
        typer.echo(json.dumps({"stack": stack, "rolled_back": rolled_back, "iterations": iterations}, indent=2))
    if rolled_back:
        raise typer.Exit(EXIT_ROLLED_BACK)


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout)
