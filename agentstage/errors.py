"""The errors agentstage reports to its user, and nothing else.

Domain code raises one of these with what the user must know (the file or key, the bad value,
what is allowed) and never decides how the process ends; the CLI boundary
(:func:`agentstage.boundary.command`) maps the type to an exit code, prints the message safely
(no markup, no terminal control characters) and, with ``--json``, as a JSON object on stdout.

Exit codes (the CLI contract, ``docs/cli.md``): 2 bad input, 1 a failed check, gate or
operation, 3 a canary rolled back, 70 a bug in agentstage (an unexpected exception).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["AgentstageError", "BadInput", "Failed", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_ROLLED_BACK", "EXIT_BUG"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ROLLED_BACK = 3
#: EX_SOFTWARE of sysexits.h: an internal error, never a verdict.
EXIT_BUG = 70


class AgentstageError(Exception):
    """An error for the user: ``message`` says what and what to do; ``details`` are further
    lines (one per problem when there are several); ``file`` and ``key`` say where."""

    exit_code = EXIT_FAILED

    def __init__(
        self,
        message: str,
        *,
        details: Iterable[str] = (),
        file: str | None = None,
        key: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.file = file
        self.key = key
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def kind(self) -> str:
        """What went wrong, by exit code: ``bad_input``, ``failed`` or ``rolled_back``."""
        return {EXIT_BAD_INPUT: "bad_input", EXIT_ROLLED_BACK: "rolled_back"}.get(self.exit_code, "failed")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message, "exit_code": self.exit_code}
        if self.details:
            out["details"] = self.details
        if self.file:
            out["file"] = self.file
        if self.key:
            out["key"] = self.key
        return out


class BadInput(AgentstageError):
    """The user's input (a file, a config key, an option) is invalid: exit 2."""

    exit_code = EXIT_BAD_INPUT


class Failed(AgentstageError):
    """A check, gate or operation did not succeed: exit 1."""

    exit_code = EXIT_FAILED
