"""Text rendering of gate reports, decisions and status (rich), shared by the commands."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentstage.release.gates import GateReport

__all__ = ["render_gates", "render_change", "render_status", "render_diff"]

MARK = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}
VERDICT = {
    "advance": "[green]advance[/]",
    "complete": "[green]complete[/]",
    "hold": "[yellow]hold[/]",
    "rollback": "[red]rollback[/]",
    "promote": "[cyan]promote[/]",
}


def render_gates(report: GateReport, console: Console) -> None:
    which = ", ".join(f"{a} {v}" for a, v in report.candidates.items())
    table = Table(title=f"Release gates for {report.stack}: {which}", title_justify="left")
    for col in ("", "agent", "gate", "evidence", "threshold"):
        table.add_column(col)
    for item in report.items:
        table.add_row(MARK[item.ok], item.agent, item.name, item.evidence, item.threshold)
    console.print(table)
    if report.passed:
        console.print(f"[bold green]all gates passed[/] ({len(report.items)} items)")
    else:
        console.print(
            f"[bold red]{len(report.failed)} gate(s) failed[/]: "
            + ", ".join(f"{i.agent + ' ' if i.agent else ''}{i.name}" for i in report.failed)
        )


def render_diff(diff: Any, console: Console) -> None:
    if diff is None:
        return
    console.print(
        f"plan diff: {len(diff.creates)} to create, {len(diff.updates)} to update, {len(diff.deletes)} to delete"
    )
    for urn in diff.creates:
        console.print(f"  [green]+[/] {urn.rsplit('::', 1)[-1]}", markup=True)
    for urn, paths in diff.updates.items():
        shown = ", ".join(paths[:6]) + (" …" if len(paths) > 6 else "")
        console.print(f"  [yellow]~[/] {urn.rsplit('::', 1)[-1]}: {shown}")
    for urn in diff.deletes:
        console.print(f"  [red]-[/] {urn.rsplit('::', 1)[-1]}")


def _value(name: str, v: Any) -> str:
    if v is None:
        return "no data"
    if name in ("error_rate", "errors_vs_stable") or name.startswith("signal:"):
        return f"{v:.2%}"
    if name.endswith("_ms") or name == "latency_vs_stable":
        return f"{v:.0f} ms"
    if name == "memory_trend":
        return f"{v:.0%}"
    return f"{v:g}"


def render_analysis(decision: dict[str, Any], console: Console) -> None:
    head = (
        f"[bold]{escape(decision['agent'])}[/] {escape(decision['release'])} at {decision['percent']}% "
        f"(stable {escape(str(decision.get('stable')))}): {VERDICT.get(decision['action'], decision['action'])}"
    )
    if decision["action"] in ("advance", "complete"):
        head += f" -> {decision['to_percent']}%"
    if decision.get("phase"):
        head += f" [dim]({escape(decision['phase'])})[/]"
    console.print(head)
    console.print(f"  {decision['reason']}", markup=False, soft_wrap=True)
    window = decision.get("window") or {}
    if window.get("live_source"):
        live = window.get("live_split")
        split = ", ".join(f"{r} {p}%" for r, p in live.items()) if live else "unknown"
        console.print(f"  live split: {split} ({window['live_source']})", markup=False, soft_wrap=True)
    if window.get("request_logs"):
        console.print(f"  request logs: {window['request_logs']}", markup=False, soft_wrap=True)
    checks = decision.get("checks") or []
    if checks:
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("", "check", "value", "evidence"):
            table.add_column(col)
        for c in checks:
            table.add_row(MARK[c["ok"]], escape(c["name"]), _value(c["name"], c["value"]), escape(c.get("detail", "")))
        console.print(table)


def render_change(change: Any, console: Console) -> None:
    for d in change.decisions:
        if d["action"] in ("advance", "complete", "hold", "rollback") and "checks" in d:
            render_analysis(d, console)
        else:
            console.print(
                f"[bold]{d['agent']}[/]: {VERDICT.get(d['action'], d['action'])} "
                f"{d['release']} -> {d['to_percent']}% ({d['reason']})"
            )
    for note in change.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if change.wrote:
        console.print(f"wrote {change.path}")
        render_diff(change.diff, console)
    elif change.message:
        console.print(change.message)


def render_status(stacks: list[dict[str, Any]], console: Console) -> None:
    for st in stacks:
        table = Table(title=f"Stack {st['stack']}", title_justify="left")
        unknown: dict[str, list[str]] = {}
        reasons: list[tuple[str, str]] = []
        table.add_column("agent", no_wrap=True)  # the name a person looks for, never cut
        for col in ("state", "release", "stable", "desired traffic", "live traffic", "last decision"):
            table.add_column(col)
        for a in st["agents"]:
            traffic = " / ".join(f"{t['percent']}%" + (f" {t['tag']}" if t["tag"] else "") for t in a["traffic"])
            last = a["decisions"][-1] if a["decisions"] else None
            # the reason (every check's figures, often several lines) is printed below the table:
            # in a column it wraps a word per line on an 80-column terminal
            last_text = f"{last['time']} {last['action']} -> {last['to_percent']}%" if last else "none recorded"
            if last and last.get("reason"):
                reasons.append((a["agent"], str(last["reason"])))
            state = a["state"] if not a["ledger_conflict"] else a["state"] + " [red](ledger conflict)[/]"
            live = a.get("live") or {}
            split = live.get("split")
            live_text = " / ".join(f"{p}% {escape(r)}" for r, p in split.items()) if split else "[dim]unknown[/]"
            if not split and live.get("source") not in (None, "not read"):
                unknown.setdefault(str(live["source"]), []).append(a["agent"])
            if a.get("phase"):
                state += f" [dim]({escape(a['phase'])})[/]"
            table.add_row(
                escape(a["agent"]),
                state,
                escape(a["release"]),
                escape(a["stable"] or ""),
                traffic,
                live_text,
                escape(last_text),
            )
        console.print(table)
        for agent, reason in reasons:
            console.print(f"[bold]{escape(agent)}[/], last decision: {escape(reason)}", soft_wrap=True)
        for source, names in unknown.items():
            console.print(
                f"[yellow]live traffic unknown[/] for {escape(', '.join(names))}: {escape(source)}", soft_wrap=True
            )
        for a in st["agents"]:
            if a["ledger_conflict"]:
                console.print(f"[red]warning:[/] {a['ledger_conflict']}", soft_wrap=True)
