"""``agentstage check STACK``: the policy pack on the offline plan of a stack, for CI."""

from __future__ import annotations

import gc
import io
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from agentstage.commands.common import (
    EXIT_FAILED,
    ConfigFileOpt,
    PlanProgress,
    ProjectOpt,
    StackArg,
    err_console,
    large_config_note,
)
from agentstage.errors import BadInput


class Format(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


def check(
    stack: StackArg,
    project: ProjectOpt = Path("."),
    config_file: ConfigFileOpt = None,
    policy_config: Annotated[
        Path | None,
        typer.Option(
            "--policy-config",
            help="Policy config JSON (the --policy-pack-config format): enforcement levels and thresholds.",
            show_default="<pack>/config/<STACK>.json",
        ),
    ] = None,
    policy_pack: Annotated[
        Path | None,
        typer.Option(
            "--policy-pack", help="Policy pack directory to run instead of agent_guard.", show_default="agent_guard"
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file instead of standard output.")
    ] = None,
    new_stack: Annotated[
        bool,
        typer.Option(
            "--new-stack",
            help="Plan as the first `pulumi preview` of a new stack sees it: every resource is being created, so "
            "the outputs its provider computes (emails, names, ids, URLs) are unknown, and so is every input the "
            "program derives from them. Rules report what they cannot judge on unknown values as violations.",
        ),
    ] = False,
) -> None:
    """Check STACK against the agent_guard policy pack, offline.

    Runs the unmodified CrossGuard pack the way `pulumi preview --policy-pack` does, on the offline plan of the stack: no Pulumi CLI, provider plugin or cloud credential. The policy config (enforcement per policy and thresholds) is <pack>/config/<STACK>.json unless --policy-config is given: advisory in staging, mandatory in production.

    By default the plan is that of a stack whose resources exist: their computed outputs are filled in. With --new-stack it is that of a first preview, where those outputs are unknown; run both in CI so a stack passes on its first `pulumi up` too.

    Exit codes: 0 no mandatory violation; 1 a mandatory violation, or the pack crashed or misbehaved; 2 invalid stack config or policy config.
    """
    from rich.console import Console

    from agentstage.policy import PACK_DIR, PolicyError, default_policy_config, run_check, to_sarif

    if output is not None:
        _check_output(output)
    pack_dir = policy_pack or PACK_DIR
    if policy_config is None and default_policy_config(stack, pack_dir) is None:
        err_console.print(
            f"note: no policy config for stack {stack!r} ({Path(pack_dir) / 'config' / (stack + '.json')} "
            "does not exist): every policy runs at its default enforcement; pass --policy-config to choose one.",
            soft_wrap=True,
            markup=False,
        )
    # A one-shot command: no collector passes over the plan's large heap, now or at exit.
    gc.disable()
    try:
        with PlanProgress(stack) as progress:
            report = run_check(
                project,
                stack,
                config_file=config_file,
                policy_config=policy_config,
                pack_dir=pack_dir,
                new_stack=new_stack,
                on_resource=progress.on_resource,
                on_planned=lambda: progress.then(f"checking {stack} against the policy pack"),
            )
    except PolicyError as err:
        raise PolicyError(f"{err}\nthe policy check did not complete; nothing was checked") from None
    gc.freeze()
    note = large_config_note(project, stack, config_file)
    if note:
        err_console.print(f"warning: {note}", soft_wrap=True, markup=False)

    summary = f"{report.summary()}{NEW_STACK_SUFFIX if new_stack else ''}"
    if fmt is Format.text:
        if output:
            buffer = io.StringIO()
            _render_text(report, Console(file=buffer, highlight=False, width=200, force_terminal=False), new_stack)
            _write_output(output, buffer.getvalue())
            typer.echo(summary)
        else:
            _render_text(report, Console(highlight=False), new_stack)
    else:
        if fmt is Format.json:
            document = _mark_json(report.to_json(), new_stack)
        else:
            document = _mark_sarif(to_sarif(report, project), new_stack)
        text = json.dumps(document, indent=2) + "\n"
        if output:
            _write_output(output, text)
            typer.echo(summary)
        else:
            typer.echo(text, nl=False)
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def _check_output(output: Path) -> None:
    """Refuse an --output the report cannot be written to before spending the check on it."""
    if output.is_dir():
        raise BadInput(f"--output {output}: is a directory; give a file path, e.g. {output / 'check.sarif'}")
    if not output.parent.is_dir():
        raise BadInput(f"--output {output}: the folder {output.parent} does not exist")


def _write_output(output: Path, text: str) -> None:
    try:
        with output.open("w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        raise BadInput(f"--output {output}: cannot write the report: {err.strerror or err}") from None


#: How the text report and the summary line say that the plan was that of a new stack.
NEW_STACK_NOTE = (
    "new stack: planned as a first `pulumi preview` sees it, with the computed outputs of the resources "
    "being created unknown"
)
NEW_STACK_SUFFIX = " (new stack)"


def _render_text(report: Any, console: Any, new_stack: bool) -> None:
    from agentstage.policy import render_text

    if new_stack:
        console.print(f"[bold]{NEW_STACK_NOTE}[/]", soft_wrap=True)
    render_text(report, console)


def _mark_json(document: dict[str, Any], new_stack: bool) -> dict[str, Any]:
    """The JSON report with ``new_stack`` (an added key, after ``stack_config``)."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        out[key] = value
        if key == "stack_config":
            out["new_stack"] = new_stack
    return out


def _mark_sarif(document: dict[str, Any], new_stack: bool) -> dict[str, Any]:
    """The SARIF log with ``newStack`` in the run's property bag; a new-stack check is its own
    code scanning category (``agentstage-check/<stack>/new-stack/``), so uploading both checks
    of a stack keeps both sets of results."""
    run = document["runs"][0]
    run.setdefault("properties", {})["newStack"] = new_stack
    if new_stack:
        category = run["automationDetails"]["id"].rstrip("/")
        run["automationDetails"]["id"] = f"{category}/new-stack/"
    return document


def register(app: typer.Typer) -> None:
    app.command("check")(check)
