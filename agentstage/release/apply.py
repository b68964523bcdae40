"""``--apply``: run ``pulumi up --stack X`` on the project through the Automation API.

The stack config has already been written; applying only deploys it. Without the Pulumi
CLI, :class:`PulumiMissing` says so and the config change stays in place for CI to apply.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentstage.errors import Failed

__all__ = ["PulumiMissing", "ApplyFailed", "ApplyResult", "apply_stack"]


class PulumiMissing(Failed):
    """The Pulumi CLI is not installed (not on PATH)."""


class ApplyFailed(Failed):
    """``pulumi up`` failed."""


@dataclass
class ApplyResult:
    stack: str
    summary: str
    changes: dict[str, int]


def apply_stack(
    project_dir: Path, stack: str, *, on_output: Callable[[str], None] | None = None, message: str | None = None
) -> ApplyResult:
    """``pulumi up --yes --skip-preview --stack <stack>`` in ``project_dir``."""
    if shutil.which("pulumi") is None:
        raise PulumiMissing(
            "the Pulumi CLI is not installed (no `pulumi` on PATH), so nothing was deployed; the stack "
            f"config change is written: run `pulumi up --stack {stack}` where the CLI is installed "
            "(e.g. in CI), or install it from https://www.pulumi.com/docs/install/"
        )
    from pulumi import automation as auto

    try:
        st = auto.select_stack(stack_name=stack, work_dir=str(Path(project_dir).resolve()))
        result = st.up(on_output=on_output, message=message)
    except FileNotFoundError as err:
        raise PulumiMissing(
            f"the Pulumi CLI could not be started ({err}); the stack config change is written"
        ) from None
    except auto.errors.CommandError as err:
        raise ApplyFailed(f"pulumi up --stack {stack} failed: {str(err).strip()}") from None
    summary = result.summary
    changes = dict(summary.resource_changes or {}) if summary else {}
    return ApplyResult(stack, summary.result if summary else "unknown", changes)
