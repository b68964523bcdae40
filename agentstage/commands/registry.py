"""Placeholder: the `registry` command is being built (issue 13); registers nothing yet."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register yet."""
