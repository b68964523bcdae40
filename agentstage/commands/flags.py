"""Placeholder: the `flags` command(s) are being built (issue 12); registers nothing yet."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register yet."""
