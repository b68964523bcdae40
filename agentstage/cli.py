"""The ``agentstage`` command line. Each command lives in ``agentstage/commands/<name>.py``
and registers itself on :data:`app`; heavy imports stay inside the commands."""

from __future__ import annotations

import importlib

import typer

from agentstage.commands import COMMANDS

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
