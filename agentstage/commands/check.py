"""``agentstage check STACK``: the policy pack on the offline plan of a stack, for CI."""

from __future__ import annotations

import gc
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from agentstage.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    ConfigFileOpt,
    ProjectOpt,
    StackArg,
    err_console,
    exit_on_plan_error,
    fail,
)


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
        typer.Option("--policy-pack", help="Policy pack directory to run instead of agent_guard.", show_default="agent_guard"),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file instead of standard output.")
    ] = None,
) -> None:
    """Check STACK against the agent_guard policy pack, offline.

    Runs the unmodified CrossGuard pack the way `pulumi preview --policy-pack` does, on the offline plan of the stack: no Pulumi CLI, provider plugin or cloud credential. The policy config (enforcement per policy and thresholds) is <pack>/config/<STACK>.json unless --policy-config is given: advisory in staging, mandatory in production.

    Exit codes: 0 no mandatory violation; 1 a mandatory violation, or the pack crashed or misbehaved; 2 invalid stack config or policy config.
    """
    from rich.console import Console

    from agentstage.engine import EngineError, ProgramError
    from agentstage.policy import (
        PACK_DIR,
        PolicyConfigError,
        PolicyError,
        default_policy_config,
        render_text,
        run_check,
        to_sarif,
    )

    pack_dir = policy_pack or PACK_DIR
    if policy_config is None and default_policy_config(stack, pack_dir) is None:
        err_console.print(
            f"[yellow]note:[/] no policy config for stack {stack!r} ({Path(pack_dir) / 'config' / (stack + '.json')} "
            "does not exist): every policy runs at its default enforcement; pass --policy-config to choose one.",
            soft_wrap=True,
        )
    # A one-shot command: no collector passes over the plan's large heap, now or at exit.
    gc.disable()
    try:
        report = run_check(project, stack, config_file=config_file, policy_config=policy_config, pack_dir=pack_dir)
    except (EngineError, ProgramError) as err:
        exit_on_plan_error(err, stack)
    except PolicyConfigError as err:
        fail(str(err), EXIT_BAD_INPUT)
    except PolicyError as err:
        fail(f"{err}\nthe policy check did not complete; nothing was checked", EXIT_FAILED)
    gc.freeze()

    if fmt is Format.text:
        if output:
            with output.open("w") as fh:
                render_text(report, Console(file=fh, highlight=False, width=200, force_terminal=False))
            typer.echo(report.summary())
        else:
            render_text(report, Console(highlight=False))
    else:
        document = report.to_json() if fmt is Format.json else to_sarif(report, project)
        text = json.dumps(document, indent=2) + "\n"
        if output:
            output.write_text(text)
            typer.echo(report.summary())
        else:
            typer.echo(text, nl=False)
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
