"""Incident commands: ``errors``, ``inspect``, ``replay`` (Cloud Logging) and ``changes`` (the
ledger and the stack file's history). See docs/incidents.md."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentstage.boundary import clean
from agentstage.commands.common import ProjectOpt, StackArg

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as stable JSON (see docs/incidents.md).")]

AgentArg = Annotated[str, typer.Option("--agent", "-a", help="The agent (a key of agents: in the stack config).")]
RequestOpt = Annotated[
    str,
    typer.Option(
        "--request",
        "-r",
        help="The request: its trace id (32 hex digits, as `errors` prints it, or an X-Cloud-Trace-Context "
        "or traceparent header carried it) or the insertId of one of its log entries.",
    ),
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _platform(project: Path, stack: str) -> tuple[Path, Any]:
    """The stack file and its validated spec (the release flow's loader without its imports:
    these commands start in well under a second)."""
    from agentstage.config import ConfigError, platform_from_config
    from agentstage.engine import load_project, load_stack_config
    from agentstage.errors import BadInput

    loaded = load_project(project)
    values = load_stack_config(loaded, stack).values
    try:
        spec = platform_from_config(values, namespace=loaded.name)
    except ConfigError as err:
        raise BadInput(f"invalid stack config for stack {stack!r}:", details=err.issues) from None
    return loaded.stack_file(stack), spec


def _target(project: Path, stack: str, agent: str, since: str) -> tuple[Any, Any, dt.datetime]:
    from agentstage.ops.logs import log_target, parse_since

    start = parse_since(since, _now())
    _, spec = _platform(project, stack)
    return spec, log_target(spec, agent), start


def errors(
    stack: StackArg,
    agent: AgentArg,
    since: Annotated[
        str, typer.Option("--since", help="Window: a duration back from now (30m, 1h, 2d) or a time.")
    ] = "1h",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1_000_000, help="Most failing log entries read, newest first.")
    ] = 10_000,
    traces: Annotated[int, typer.Option("--traces", min=0, max=20, help="Trace links shown per group.")] = 3,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The agent's failing requests from Cloud Logging, grouped by error and revision.

    A failing entry is one with severity ERROR or worse, or a request log with a 5xx status.
    Messages are grouped by their shape (numbers, ids and hex stripped) and by the revision that
    wrote them, most frequent first, with first/last seen, an example and trace links. Reads
    with Application Default Credentials (roles/logging.viewer), or from the server at
    AGENTSTAGE_LOGGING_ENDPOINT."""
    from agentstage.ops.logs import failing_filter, group_errors, logging_client, read_entries, rfc3339

    spec, target, start = _target(project, stack, agent, since)
    client = logging_client()
    filter_ = failing_filter(target, start)
    groups, read = group_errors(read_entries(client, target.project, filter_, limit), target, max_traces=traces)
    out = {
        "stack": stack,
        "agent": agent,
        "project": target.project,
        "since": rfc3339(start),
        "filter": filter_,
        "entries": read,
        "truncated": read >= limit,
        "groups": [g.to_json(target.project, traces) for g in groups],
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console = Console(highlight=False)
    if not groups:
        console.print(Text(f"no failing requests of {agent} in {stack} since {out['since']}"))
        return
    table = Table(title=clean(f"{agent} in {stack}: {read} failing entries since {out['since']}"), title_justify="left")
    for col in ("#", "count", "error", "revision"):
        table.add_column(col, overflow="fold", justify="right" if col in ("#", "count") else "left")
    for col in ("first seen (UTC)", "last seen (UTC)"):
        table.add_column(col, no_wrap=True)
    for i, g in enumerate(out["groups"], start=1):
        table.add_row(
            str(i),
            str(g["count"]),
            Text(clean(g["error"])),
            Text(clean(g["revision"])),
            _short(g["first_seen"]),
            _short(g["last_seen"]),
        )
    console.print(table)
    if out["truncated"]:
        console.print(Text(f"read the newest {limit} entries only (--limit); older failures are not counted"))
    for i, g in enumerate(out["groups"], start=1):
        if not g["traces"]:
            console.print(
                Text(f"#{i} no trace; example entry insertId {clean(g['example']['insert_id'])}"), soft_wrap=True
            )
        for t in g["traces"]:
            console.print(Text(f"#{i} {t['link']}"), soft_wrap=True)


def _entries_of(target: Any, request: str, start: dt.datetime) -> tuple[str, list[Any]]:
    from agentstage.errors import Failed
    from agentstage.ops.logs import logging_client, read_entries, request_trace, trace_filter

    client = logging_client()
    trace = request_trace(client, target, request, start)
    entries = list(read_entries(client, target.project, trace_filter(target, trace, start), 10_000, newest_first=False))
    if not entries:
        raise Failed(
            f"no log entries of agent {target.agent} with trace {trace} since "
            f"{start.isoformat(timespec='seconds').replace('+00:00', 'Z')}; check the id, or give a longer --since"
        )
    return trace, entries


def inspect(
    stack: StackArg,
    agent: AgentArg,
    request: RequestOpt,
    since: Annotated[str, typer.Option("--since", help="How far back to look for the request.")] = "7d",
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One request's log entries in time order, with its trace id and link.

    The request log and the app's lines sharing its trace (docs/incidents.md)."""
    from agentstage.ops.logs import lines_of, trace_link

    spec, target, start = _target(project, stack, agent, since)
    trace, entries = _entries_of(target, request, start)
    lines = lines_of(entries, target)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "stack": stack,
                    "agent": agent,
                    "trace": trace,
                    "link": trace_link(target.project, trace),
                    "entries": [line.to_json() for line in lines],
                },
                indent=2,
            )
        )
        return
    console = Console(highlight=False)
    console.print(Text(f"trace {trace}: {len(lines)} entries"))
    console.print(Text(trace_link(target.project, trace)), soft_wrap=True)
    table = Table(show_header=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    for col in ("revision", "log"):
        table.add_column(col, overflow="fold")
    table.add_column("message", overflow="fold")
    for line in lines:
        message = line.message
        if line.request:
            r = line.request
            message = f"{r['method']} {r['url']} -> {r['status']} in {r['latency_ms']} ms"
        log = line.log.removeprefix("run.googleapis.com/")
        table.add_row(
            _short(line.time, ms=True),
            line.severity,
            Text(clean(line.revision)),
            Text(clean(log)),
            Text(clean(message)),
        )
    console.print(table)


def replay(
    stack: StackArg,
    agent: AgentArg,
    request: RequestOpt,
    to: Annotated[
        str, typer.Option("--to", help="canary: the canary tag URL; stable: the service URL (no canary in flight).")
    ] = "stable",
    url: Annotated[str | None, typer.Option("--url", help="Send to this base URL instead.")] = None,
    since: Annotated[str, typer.Option("--since", help="How far back to look for the request.")] = "7d",
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Re-send a logged request and show both answers: status, latency and a diff of the bodies.

    Only for agents that log request payloads (env LOG_REQUEST_PAYLOADS: "true" and the request
    logged under jsonPayload.agentstage_request: docs/incidents.md). Sends an identity token
    (AGENTSTAGE_ID_TOKEN, else minted from Application Default Credentials)."""
    from agentstage.errors import BadInput
    from agentstage.ops.replay import check_payload_logging, logged_request, target_url
    from agentstage.ops.replay import replay as run_replay

    if to not in ("canary", "stable"):
        raise BadInput(f"--to {to!r}: use canary or stable (or --url)", key="--to")
    if url is not None and not url.startswith(("http://", "https://")):
        raise BadInput(f"--url {url!r}: give an http:// or https:// URL", key="--url")
    spec, target, start = _target(project, stack, agent, since)
    check_payload_logging(spec, agent)
    trace, entries = _entries_of(target, request, start)
    logged = logged_request(entries, trace, agent)
    base = url or target_url(spec, agent, to, lambda: _service_url(project, stack, agent))
    result = run_replay(logged, base)
    if as_json:
        typer.echo(json.dumps({"stack": stack, "agent": agent, **result.to_json()}, indent=2))
        return
    console = Console(highlight=False)
    console.print(Text(f"replayed {logged.method} {result.url} (trace {trace})"), soft_wrap=True)
    table = Table()
    for col in ("", "status", "latency"):
        table.add_column(col)
    if result.logged is not None:
        table.add_row("logged", str(result.logged.status), _ms(result.logged.latency_ms))
    table.add_row("replayed", str(result.new.status), _ms(result.new.latency_ms))
    console.print(table)
    if result.logged is None:
        console.print(Text("the response was not logged; the new answer:"))
        console.print(
            Text(
                clean(
                    json.dumps(result.new.body, indent=2) if not isinstance(result.new.body, str) else result.new.body
                )
            )
        )
    elif result.diff:
        for line in result.diff:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            console.print(Text(clean(line), style=style), soft_wrap=True)
    else:
        console.print(Text("same body"))


def _short(iso_time: str, *, ms: bool = False) -> str:
    """``05-01 12:00:07`` (UTC) of ``2026-05-01T12:00:07.123Z``, for a table; the JSON keeps the full time."""
    return f"{iso_time[5:10]} {iso_time[11 : 23 if ms else 19]}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _service_url(project: Path, stack: str, agent: str) -> str:
    """The agent's URL from the stack outputs of the last ``pulumi up`` (``agents.<agent>.url``)."""
    import shutil

    from agentstage.errors import Failed
    from agentstage.release.observed import OutputsObserver

    if shutil.which("pulumi") is None:
        raise Failed(
            f"the URL of {agent} comes from the stack outputs of the last `pulumi up` (agents.{agent}.url), "
            "read with the Pulumi CLI, which is not installed (https://www.pulumi.com/docs/install/); give --url"
        )
    agents = OutputsObserver(project, stack).outputs().get("agents") or {}
    found = agents.get(agent, {}).get("url") if isinstance(agents, dict) else None
    if not isinstance(found, str) or not found:
        raise Failed(f"stack {stack} has no output agents.{agent}.url; run `pulumi up --stack {stack}`, or give --url")
    return found


def changes(
    stack: StackArg,
    since: Annotated[
        str, typer.Option("--since", help="Window: a duration back from now (1h, 24h, 7d) or a time.")
    ] = "24h",
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="Only this agent (and stack-wide changes).")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """What changed in the stack recently, newest first.

    Releases recorded, promotions, canary steps and rollbacks, flag changes (the ledger under
    .agentstage/), and the stack file's commits and uncommitted edits (git)."""
    from agentstage.errors import BadInput
    from agentstage.ops.changes import changes as run_changes
    from agentstage.ops.logs import parse_since

    start = parse_since(since, _now())
    stack_file, spec = _platform(project, stack)
    if agent is not None and agent not in spec.agents:
        raise BadInput(
            f"agent {agent!r} is not in the stack; agents: {', '.join(sorted(spec.agents))}", key=f"agents.{agent}"
        )
    found, notes = run_changes(project, stack, stack_file, start, agent)
    since_text = start.isoformat(timespec="seconds").replace("+00:00", "Z")
    if as_json:
        typer.echo(
            json.dumps(
                {"stack": stack, "since": since_text, "changes": [c.to_json() for c in found], "notes": notes}, indent=2
            )
        )
        return
    console = Console(highlight=False)
    for note in notes:
        console.print(Text(clean(note)))
    if not found:
        console.print(Text(f"no changes in {stack} since {since_text}"))
        return
    table = Table(title=clean(f"changes in {stack} since {since_text}, newest first"), title_justify="left")
    for col in ("time", "kind", "agent", "what"):
        table.add_column(col, overflow="fold")
    for c in found:
        what = c.summary
        if c.kind == "config" and c.details.get("lines"):
            what += "\n" + "\n".join(c.details["lines"][:10])
        table.add_row(c.to_json()["time"], c.kind, Text(clean(c.agent or "-")), Text(clean(what)))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("errors")(errors)
    app.command("inspect")(inspect)
    app.command("replay")(replay)
    app.command("changes")(changes)
