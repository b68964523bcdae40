"""The ``agentstage`` command line. Each command lives in ``agentstage/commands/<name>.py``
and registers itself on :data:`app`; heavy imports stay inside the commands."""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import typer

from agentstage.boundary import command
from agentstage.commands import COMMANDS

# Google's client libraries warn on every import, on any Python older than their next floor, that
# future releases will need a newer one: a note for whoever pins the dependencies, not for a
# person reading a command's output.
warnings.filterwarnings("ignore", message=r"You are using a Python version", category=FutureWarning)

app = typer.Typer(
    name="agentstage",
    help="Take AI agents from prototype to production on Google Cloud with Pulumi: "
    "preview and check stacks offline, promote releases, walk canaries, roll back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Take AI agents from prototype to production on Google Cloud with Pulumi.

    Every command takes -C/--project DIR (a Pulumi project; default: the current
    directory) and works offline."""


for _name in COMMANDS:
    importlib.import_module(f"agentstage.commands.{_name}").register(app)
# one error boundary around every command (agentstage/boundary.py)
for _info in app.registered_commands:
    _info.callback = command(_info.callback)


def main() -> None:
    """The console script. Once a command is done and its output flushed, the process ends
    at once: the interpreter's teardown of a plan-sized heap (the SDK's objects, the plan)
    costs a third of a second and does nothing a one-shot command needs (every file is
    written and closed, the pack process stopped, by then)."""
    try:
        app()
    except SystemExit as done:
        code = done.code
    else:  # pragma: no cover - click always exits
        code = 0
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):  # a reader that went away (`| head`): nothing left to tell it
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
