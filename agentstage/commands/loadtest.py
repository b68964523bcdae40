"""``agentstage loadtest STACK --agent A``: Locust against the candidate, and what it can take."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from agentstage.boundary import clean
from agentstage.commands.common import EXIT_FAILED, ProjectOpt, StackArg
from agentstage.ops import loadtest as lt
from agentstage.release.cli import JsonOpt


def _cost(target: Any, results: dict[str, Any], monthly: int | None, cost_per_request: float | None) -> Any:
    """The cost finding (:mod:`agentstage.ops.cost`) from the steady phase's rate and mean
    latency; with the step phase alone, from its fastest good step (latency by Little's law:
    concurrency / requests per second). None when nothing was measured."""
    from agentstage.ops.cost import project as project_cost
    from components.spec import cpu_count, memory_mib

    phase = results.get("steady")
    rps, latency_ms = (phase["rps"], phase["mean_ms"]) if phase else (None, None)
    if phase is None and results.get("step"):
        ok = [s for s in results["step"].get("steps", []) if s["ok"]]
        if ok:
            best = max(ok, key=lambda s: s["rps"])
            rps, latency_ms = best["rps"], best["users"] / best["rps"] * 1000 if best["rps"] else None
    if not rps or latency_ms is None:
        return None
    spec = target.spec
    out = project_cost(
        cpu=cpu_count(spec.resources.cpu),
        memory_gib=memory_mib(spec.resources.memory) / 1024,
        concurrency=spec.scaling.concurrency,
        min_instances=spec.scaling.min_instances,
        request_based=spec.scaling.min_instances == 0 or spec.resources.fractional,
        rps=rps,
        mean_latency_s=latency_ms / 1000,
        monthly_requests=monthly if monthly is not None else target.platform.gates.monthly_requests.get(target.agent),
        cost_per_request=cost_per_request,
    )
    budget = target.platform.budget
    if budget.monthly_amount:
        out["budget"] = {"monthly_amount": budget.monthly_amount, "currency": budget.currency}
    return out


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f} ms"


def _render(findings: dict[str, Any], results: dict[str, Any], files: list[str], console: Console) -> None:
    from agentstage.ops.loadchart import sparkline

    say = lambda text: console.print(Text(clean(text)), soft_wrap=True)  # noqa: E731
    say(f"{findings['agent']} {findings['version']} at {findings['url']} ({findings['url_source']})")
    for name, p in findings["phases"].items():
        say(
            f"{name:<7} {p['requests']:,} requests, {p['rps']:,.1f} req/s, {p['timeouts']} timeouts, "
            f"{p['errors']} errors; p50 {_ms(p['p50'])}, p95 {_ms(p['p95'])}, p99 {_ms(p['p99'])}"
        )
        for s in p.get("steps", []):
            mark = "✓" if s["ok"] else "✗"
            say(
                f"        {s['users']:>5} concurrent {mark} {s['rps']:,.1f} req/s, p95 {_ms(s['p95'])}: "
                f"{s['timeouts']} timeouts, {s['errors']} errors of {s['requests']:,} ({s['error_ratio']:.1%})"
            )
    cap = findings["capacity"]
    if cap:
        if cap["max_sustainable_users"] is None:
            say(f"capacity: errors from the first step ({cap['errors_start_at_users']} concurrent)")
        elif cap["errors_start_at_users"] is None:
            say(
                f"capacity: at least {cap['max_sustainable_users']} concurrent, "
                f"{cap['max_sustainable_rps']:,.1f} req/s (no step passed {cap['max_error_ratio']:.1%} failures)"
            )
        else:
            e = cap["errors_at_start"]
            say(
                f"capacity: {cap['max_sustainable_users']} concurrent, {cap['max_sustainable_rps']:,.1f} req/s within "
                f"{cap['max_error_ratio']:.1%} failures; errors start at {cap['errors_start_at_users']} concurrent "
                f"({e['timeouts']} timeouts, {e['errors']} errors)"
            )
        if cap.get("configured_concurrency"):
            say(
                f"          the service takes at most {cap['configured_concurrency']:,} requests at once "
                "(scaling.max_instances x scaling.concurrency); past it, requests wait, then get a 429"
            )
        steps = (results.get("step") or {}).get("steps", [])
        if len(steps) > 1:
            say(f"p95 by step: {sparkline([s['p95'] for s in steps])}")
    mem = findings["memory"]
    if mem["available"]:
        growth = f" ({mem['growth_ratio']:+.0%})" if mem.get("growth_ratio") is not None else ""
        say(
            f"memory: {mem['first_bytes'] / 2**20:,.1f} -> {mem['last_bytes'] / 2**20:,.1f} MiB{growth}, "
            f"{mem['bytes_per_hour'] / 2**20:,.1f} MiB/hour"
            + (f", the limit in {mem['hours_to_limit']:.1f} h" if "hours_to_limit" in mem else "")
        )
    else:
        say(f"memory: {mem['reason']}")
    cost = findings["cost"]
    if cost:
        line = f"cost: ${cost['usd_per_request']:.8f} per request ({cost['source']}, {cost['billing']} billing)"
        if cost.get("monthly_usd") is not None:
            line += f"; {cost['monthly_requests']:,} requests/month: ${cost['monthly_usd']:,.2f}/month"
            if cost.get("budget"):
                b = cost["budget"]
                line += f" ({cost['monthly_usd'] / b['monthly_amount']:.1%} of the {b['monthly_amount']:,g} budget)"
        else:
            line += "; no production volume (--monthly-requests or gates.monthly_requests)"
        say(line)
    for c in findings["checks"]:
        value = c["value"]
        shown = "–" if value is None else (f"{value:.2%}" if "errors" in c["name"] else _ms(value))
        say(f"{'✓' if c['ok'] else '✗'} {c['name']}: {shown} ({c['threshold']})")
    for note in findings["notes"]:
        say(f"note: {note}")
    say("files: " + ", ".join(files))


def loadtest(
    stack: StackArg,
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent to load test.", show_default=False)],
    url: Annotated[
        str | None, typer.Option("--url", help="Call this URL (default: the candidate's `canary` tag URL).")
    ] = None,
    phases: Annotated[str, typer.Option("--phases", help="steady, step or steady,step.")] = "steady,step",
    rate: Annotated[float, typer.Option("--rate", help="Steady phase: requests per second.")] = lt.DEFAULT_RATE,
    duration: Annotated[float, typer.Option("--duration", help="Steady phase: seconds.")] = lt.DEFAULT_DURATION_S,
    users: Annotated[
        int | None,
        typer.Option("--users", help="Steady phase: users sharing the rate.", show_default="one per request/s"),
    ] = None,
    step_users: Annotated[
        str, typer.Option("--step-users", metavar="START,STEP,MAX", help="Step phase: concurrent users.")
    ] = ",".join(str(n) for n in lt.DEFAULT_STEP_USERS),
    step_duration: Annotated[
        float, typer.Option("--step-duration", help="Step phase: seconds per step.")
    ] = lt.DEFAULT_STEP_DURATION_S,
    max_error_ratio: Annotated[
        float,
        typer.Option("--max-error-ratio", help="Step phase: stop after a step whose errors + timeouts pass this."),
    ] = lt.DEFAULT_MAX_ERROR_RATIO,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds a request may take; past it, a timeout.")
    ] = lt.DEFAULT_TIMEOUT_S,
    processes: Annotated[
        int,
        typer.Option("--processes", help="Locust worker processes generating the load (1: one process)."),
    ] = 1,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", metavar="FILE.jsonl", help='Requests: {"prompt": ...} or {"method", "path", ...}.'),
    ] = None,
    prompt_path: Annotated[str, typer.Option("--path", help="Where prompts are POSTed.")] = "/",
    id_token: Annotated[
        bool | None,
        typer.Option(
            "--id-token/--no-id-token",
            help="Send a Google identity token (default: when the URL is https and credentials are found).",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Send this identity token (a file holding it).")
    ] = None,
    csv_prefix: Annotated[
        Path | None,
        typer.Option("--csv", metavar="PREFIX", help="Output prefix.", show_default="loadtest/<agent> in the project"),
    ] = None,
    monthly_requests: Annotated[
        int | None,
        typer.Option("--monthly-requests", help="Production volume for the cost projection.", show_default=False),
    ] = None,
    cost_per_request: Annotated[
        float | None,
        typer.Option("--cost-per-request", metavar="USD", help="Use this cost per request instead of the model."),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Load test an agent's candidate with Locust: a steady phase, then a step phase.

    Steady: --rate requests/s for --duration s. Step: START concurrent users, STEP more every
    --step-duration s up to MAX, until a step's errors + timeouts pass --max-error-ratio.
    Writes Locust's CSVs (PREFIX_stats.csv, _stats_history.csv, _failures.csv) with
    PREFIX_manifest.json (what `agentstage gate --load-test PREFIX` reads), the step phase's
    CSVs as PREFIX_step_*, PREFIX_findings.json (capacity, p50/p95/p99 per phase, memory, cost)
    and PREFIX_report.html (the charts). Exit code 1 when the gated phase fails the stack's
    gates.load_test limits, 2 on bad input."""
    from agentstage.engine import load_project
    from agentstage.errors import BadInput, Failed
    from agentstage.ops.loadchart import html_report
    from agentstage.ops.loadtest import (
        Options,
        default_requests,
        findings,
        identity_token,
        memory_of_run,
        parse_phases,
        parse_step_users,
        phase_prefixes,
        read_requests,
        resolve_target,
        run_phases,
        write_manifest,
    )

    options = Options(
        parse_phases(phases),
        rate,
        duration,
        users,
        parse_step_users(step_users),
        step_duration,
        max_error_ratio,
        timeout,
        processes,
    )
    options.check()
    if not prompt_path.startswith("/"):
        raise BadInput(f"--path: {prompt_path!r} is not a request path (it starts with '/')")
    if cost_per_request is not None and (not math.isfinite(cost_per_request) or cost_per_request < 0):
        raise BadInput(f"--cost-per-request: {cost_per_request} is not a cost (a finite number, not negative)")
    if monthly_requests is not None and monthly_requests < 0:
        raise BadInput(f"--monthly-requests: {monthly_requests} is negative")
    requests = read_requests(input_file, prompt_path) if input_file is not None else default_requests(prompt_path)
    target = resolve_target(project, stack, agent, url)
    token, token_note = identity_token(target.url, id_token, token_file)
    prefix = csv_prefix if csv_prefix is not None else load_project(project).dir / "loadtest" / agent
    notes = [token_note]
    if target.source != "--url" and target.spec.ingress != "all":
        notes.append(
            f"{agent}'s ingress is {target.spec.ingress}: its run.app URLs answer only from its VPC (or through "
            "the load balancer); run the load test from there, or pass --url"
        )

    console = Console(stderr=True, highlight=False)
    if as_json:
        results = run_phases(target, options, requests, token, prefix)
    else:
        results = _with_progress(target, options, requests, token, prefix, console)

    gated_name = "steady" if "steady" in results else "step"
    gated = results[gated_name]
    if gated["requests"] == 0:
        raise Failed(
            f"no request of the {gated_name} phase finished, not even with a timeout; check --url ({target.url}), "
            "--timeout and the phase's length"
        )
    steady = results.get("steady")
    if steady and steady["rps"] < 0.9 * options.rate:
        notes.append(
            f"the steady phase reached {steady['rps']:,.1f} of {options.rate:g} req/s: the agent answers slower than "
            f"{options.steady_users} users can keep up with (raise --users), or the load generator is saturated"
        )
    manifest = write_manifest(prefix, target, gated)
    memory = memory_of_run(
        target, project, min(r["started"] for r in results.values()), max(r["ended"] for r in results.values())
    )
    cost = _cost(target, results, monthly_requests, cost_per_request)
    found = findings(target, options, results, prefix, memory=memory, cost=cost, notes=notes)
    found["manifest"] = str(manifest)
    findings_path = prefix.with_name(prefix.name + "_findings.json")
    report_path = prefix.with_name(prefix.name + "_report.html")
    found["report"] = str(report_path)
    findings_path.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    report_path.write_text(html_report(found, results), encoding="utf-8")
    files = [str(p) + "_stats.csv" for p in phase_prefixes(prefix, options.phases).values()]
    files += [str(manifest), str(findings_path), str(report_path)]
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        _render(found, results, files, Console(highlight=False))
    if not all(c["ok"] for c in found["checks"]):
        raise typer.Exit(EXIT_FAILED)


def _with_progress(target: Any, options: Any, requests: Any, token: Any, prefix: Path, console: Console) -> Any:
    """Run the phases with a live display on stderr: the phase, its clock, requests/s, p95 and
    failures of the last second."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agentstage.ops.loadtest import run_phases

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=False
    ) as progress:
        tasks: dict[str, Any] = {}
        totals: dict[str, float] = {}

        def on_event(event: dict[str, Any]) -> None:
            kind = event["event"]
            if kind == "phase":
                name = event["name"]
                if name == "steady":
                    total = options.duration
                else:
                    start, step, top = options.step_users
                    total = options.step_duration * (len(range(start, top, step)) + 1)
                tasks[name], totals[name] = progress.add_task(name, total=total), total
            elif kind == "tick":
                p95 = "–" if event["p95"] is None else f"{event['p95']:.0f} ms"
                progress.update(
                    tasks[event["phase"]],
                    advance=1,
                    description=f"{event['phase']:<6} {event['users']:>5} users {event['rps']:>8,.1f} req/s "
                    f"p95 {p95:>8} {event['errors']} errors {event['timeouts']} timeouts",
                )
            elif kind == "phase_end":
                progress.update(tasks[event["name"]], completed=totals[event["name"]])

        return run_phases(target, options, requests, token, prefix, on_event)


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)
