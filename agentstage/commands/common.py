"""Options shared by every command. Errors are raised as
:class:`agentstage.errors.AgentstageError` and reported by the boundary
(:mod:`agentstage.boundary`)."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from agentstage.boundary import err_console
from agentstage.errors import EXIT_BAD_INPUT, EXIT_FAILED, AgentstageError, BadInput

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "ProjectOpt",
    "StackArg",
    "ConfigFileOpt",
    "err_console",
    "fail",
    "plan_or_exit",
    "PlanProgress",
    "check_stack_name",
]

#: Pulumi's rule for a stack name: "may only contain alphanumeric, hyphens, underscores, or
#: periods" (``pulumi stack init``), at most 100 characters.
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_stack_name(stack: str) -> str:
    """``stack`` when it is a stack name (no path separators, no markup): it names files."""
    if not _STACK_NAME.fullmatch(stack) or stack in (".", ".."):
        raise BadInput(
            f"stack name {stack!r} is not a Pulumi stack name; use letters, digits, '-', '_' or '.' "
            "(at most 100 characters)"
        )
    return stack


ProjectOpt = Annotated[
    Path,
    typer.Option("-C", "--project", help="Pulumi project directory.", show_default="current directory"),
]
StackArg = Annotated[str, typer.Argument(help="Stack name, e.g. staging or production.", show_default=False)]
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option("--config-file", help="Use this stack config file instead of stacks/Pulumi.<STACK>.yaml."),
]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Stop the command with ``message`` and exit ``code`` (reported by the boundary)."""
    raise AgentstageError(message, exit_code=code)


class PlanProgress:
    """A status line on stderr while a command plans (and checks) a stack: the resources the
    program has registered so far, then the step that follows. Only on a terminal: CI logs,
    pipes and ``--json`` output never see it, and it is gone when the command prints.

    ``on_resource`` is the engine's per-resource callback (it only counts: the line is
    redrawn by the display's own thread a few times a second)."""

    def __init__(self, stack: str, console: Any = None) -> None:
        self.stack = stack
        self.console = console if console is not None else err_console
        self.count = 0
        self.step = ""
        self._status: Any = None

    def __rich__(self) -> Any:
        from rich.text import Text

        if self.step:
            return Text(f"{self.step} ({self.count:,} resources)")
        if not self.count:
            return Text(f"planning {self.stack}: reading the stack config, running the program")
        return Text(f"planning {self.stack}: {self.count:,} resources registered")

    def on_resource(self, _record: Any) -> None:
        self.count += 1

    def then(self, step: str) -> None:
        """The program has finished: say what the command does now."""
        self.step = step

    def __enter__(self) -> PlanProgress:
        if self.console.is_terminal:
            self._status = self.console.status(self, spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def plan_or_exit(project: Path, stack: str, config_file: Path | None):  # -> Plan
    """Run the offline engine (its errors are reported by the boundary: exit 2 for a missing
    project, stack file or invalid config, 1 when the program itself failed)."""
    from agentstage.engine import run_plan

    with PlanProgress(stack) as progress:
        plan = run_plan(project, stack, config_file, on_resource=progress.on_resource)
    # A one-shot command keeps the plan to the end: move what survived the run out of the
    # cycle collector's sight, or its next full pass (during rendering) rescans it all.
    gc.freeze()
    return plan


#: Linux's limit on one environment string (MAX_ARG_STRLEN, 32 pages of 4 KiB).
ENV_STRING_MAX = 128 * 1024


def large_config_note(project: Path, stack: str, config_file: Path | None) -> str | None:
    """A warning when the stack config is too large for the Pulumi CLI: it hands a Python
    program and a Python policy pack their config as one environment variable
    (``PULUMI_CONFIG``), which Linux refuses past 128 KiB ("argument list too long";
    pulumi/pulumi#20402). agentstage itself reads any size."""
    from agentstage.engine import load_project, load_stack_config

    loaded = load_project(project)
    path = Path(config_file) if config_file else loaded.stack_file(stack)
    try:
        if path.stat().st_size < ENV_STRING_MAX // 2:  # its JSON cannot reach the limit
            return None
    except OSError:
        return None
    size = len(json.dumps(load_stack_config(loaded, stack, config_file).values).encode())
    if size <= ENV_STRING_MAX:
        return None
    return (
        f"the stack config is {size / 1024:,.0f} KiB as the JSON the Pulumi CLI passes to a Python program and "
        f"policy pack in one environment variable (PULUMI_CONFIG); Linux refuses one larger than "
        f"{ENV_STRING_MAX // 1024} KiB, so `pulumi up` and `pulumi preview --policy-pack` of this stack would fail "
        'with "argument list too long" (pulumi/pulumi#20402): split the agents over several stacks'
    )
