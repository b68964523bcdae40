"""The one place where an error becomes what the user sees and the process's exit code.

Every command is wrapped by :func:`command`. An :class:`~agentstage.errors.AgentstageError`
is printed as ``error: <message>`` (plus its detail lines) on stderr and ends the command with
its exit code; with ``--json`` (or ``check --format json``) the same error is also printed as
a JSON object on stdout, so a script that parses stdout always gets a document. Anything else
is a bug: one line on stderr, the full trace written to a file whose path that line gives, exit
70. Text from the user's files (keys, values, paths) may hold rich markup or terminal control
sequences: it is printed without markup and with control characters removed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from agentstage.errors import EXIT_BUG, AgentstageError

__all__ = ["command", "clean", "report", "err_console"]

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, highlight=False)

#: C0 and C1 control characters except tab and newline, and the Unicode bidi overrides that
#: reorder what a terminal shows (CVE-2021-42574's "trojan source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """``text`` safe to print on a terminal: control characters shown as ``\\xNN`` escapes
    (so the user still sees that they are there)."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


def _wants_json(kwargs: dict[str, Any]) -> bool:
    fmt = kwargs.get("fmt")
    return bool(kwargs.get("as_json")) or getattr(fmt, "value", fmt) == "json"


def report(err: AgentstageError, *, as_json: bool = False, console: Console | None = None) -> None:
    """Print ``err`` for the user (stderr; and stdout as JSON with ``as_json``)."""
    console = console or err_console
    console.print(Text.assemble(("error: ", "bold red"), clean(err.message)), soft_wrap=True)
    for line in err.details:
        console.print(Text("  " + clean(line)), soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": err.to_json()}, indent=2) + "\n")


def _crash(err: BaseException, *, as_json: bool) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    trace = "".join(traceback.format_exception(err))
    where: str | None
    try:
        fd, where = tempfile.mkstemp(prefix=f"agentstage-crash-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"agentstage {' '.join(sys.argv[1:])}\n\n{trace}")
    except OSError:
        where = None
    summary = clean(f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__)
    told = f"the full trace is in {where}" if where else "the trace could not be written to a file"
    err_console.print(
        Text.assemble(
            ("error: ", "bold red"),
            f"internal error ({summary[:300]}); this is a bug in agentstage, please report it; {told}",
        ),
        soft_wrap=True,
    )
    if as_json:
        sys.stdout.write(
            json.dumps(
                {"error": {"kind": "bug", "message": summary, "exit_code": EXIT_BUG, "trace_file": where}}, indent=2
            )
            + "\n"
        )


#: The command parameters that hold a stack name.
STACK_PARAMETERS = ("stack", "from_stack", "to_stack")


def command(fn: F) -> F:
    """Wrap a command function in the error boundary (its signature, which typer reads, is
    kept)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        as_json = _wants_json(kwargs)
        try:
            # a stack name names files (stacks/Pulumi.<stack>.yaml, .agentstage/<stack>/...)
            from agentstage.commands.common import check_stack_name

            for key in STACK_PARAMETERS:
                if isinstance(kwargs.get(key), str):
                    check_stack_name(kwargs[key])
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except AgentstageError as err:
            report(err, as_json=as_json)
            raise typer.Exit(err.exit_code) from None
        except RecursionError as err:
            # deep input that slipped past the readers' limits: still the user's input
            report(AgentstageError(f"the input is nested too deeply to process ({err})", exit_code=2), as_json=as_json)
            raise typer.Exit(2) from None
        except Exception as err:  # noqa: BLE001 - the boundary: every other exception is a bug
            _crash(err, as_json=as_json)
            raise typer.Exit(EXIT_BUG) from None

    return run  # type: ignore[return-value]
