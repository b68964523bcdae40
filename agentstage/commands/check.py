"""``agentstage check STACK``: the policy pack on the offline plan of a stack, for CI."""

from __future__ import annotations

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
    fail,
    plan_or_exit,
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

    from agentstage.policy import (
        PACK_DIR,
        PolicyConfigError,
        PolicyError,
        PolicyPackProcess,
        default_policy_config,
        display_path,
        load_policy_config,
        render_text,
        to_sarif,
    )

    pack_dir = policy_pack or PACK_DIR
    config_path = policy_config or default_policy_config(stack, pack_dir)
    try:
        settings = load_policy_config(config_path) if config_path else {}
    except PolicyConfigError as err:
        fail(str(err))
    if config_path is None:
        err_console.print(
            f"[yellow]note:[/] no policy config for stack {stack!r} ({Path(pack_dir) / 'config' / (stack + '.json')} "
            "does not exist): every policy runs at its default enforcement; pass --policy-config to choose one.",
            soft_wrap=True,
        )

    from agentstage.engine import EngineError, load_project, load_stack_config

    try:
        pulumi_project = load_project(project)
        stack_config = load_stack_config(pulumi_project, stack, config_file)
        runner = PolicyPackProcess(
            pack_dir,
            project=pulumi_project.name,
            stack=stack,
            config=stack_config.values,
            secret_keys=stack_config.secret_keys,
        )
    except EngineError as err:
        fail(str(err))
    except PolicyError as err:
        fail(str(err), EXIT_FAILED)
    try:
        runner.launch()  # the pack boots while the program runs, and analyses as it runs
        _, report = runner.plan_and_check(
            lambda on_resource: plan_or_exit(project, stack, config_file, on_resource, stack_config),
            settings,
            source=display_path(config_path) if config_path else None,
            stack_config_path=str(stack_config.path),
        )
    except PolicyConfigError as err:
        fail(str(err), EXIT_BAD_INPUT)
    except PolicyError as err:
        fail(f"{err}\nthe policy check did not complete; nothing was checked", EXIT_FAILED)
    finally:
        runner.close()

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
