"""Options and error handling shared by every command."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

#: Exit codes of the CLI contract.
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

ProjectOpt = Annotated[
    Path,
    typer.Option("-C", "--project", help="Pulumi project directory.", show_default="current directory"),
]
StackArg = Annotated[str, typer.Argument(help="Stack name, e.g. staging or production.", show_default=False)]
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option("--config-file", help="Use this stack config file instead of stacks/Pulumi.<STACK>.yaml."),
]

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def plan_or_exit(project: Path, stack: str, config_file: Path | None):  # -> Plan
    """Run the offline engine; on bad config print every issue and exit 2."""
    from agentstage.engine import EngineError, ProgramError, run_plan

    try:
        plan = run_plan(project, stack, config_file)
    except (EngineError, ProgramError) as err:
        exit_on_plan_error(err, stack)
    # A one-shot command keeps the plan to the end: move what survived the run out of the
    # cycle collector's sight, or its next full pass (during rendering) rescans it all.
    gc.freeze()
    return plan


def exit_on_plan_error(err: Exception, stack: str) -> NoReturn:
    """Report why the offline plan could not be made: exit 2 for a missing project, stack
    file or invalid config (every issue printed), 1 when the program itself failed."""
    from agentstage.engine import ProgramError

    if isinstance(err, ProgramError):
        if err.config_issues:
            err_console.print(f"[bold red]error:[/] invalid stack config for stack {stack!r}:", soft_wrap=True)
            for issue in err.config_issues:
                err_console.print(f"  {issue}", soft_wrap=True, markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        fail(str(err), EXIT_FAILED)
    fail(str(err))
