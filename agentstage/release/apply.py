"""``--apply``: run ``pulumi up --stack X`` on the project through the Automation API.

The stack config has already been written; applying only deploys it. Without the Pulumi
CLI, :class:`PulumiMissing` says so and the config change stays in place for CI to apply.

A successful ``pulumi up`` is timed and, through :func:`record_applied`, recorded in the ledger
as one ``applied`` record per decision whose config it deployed: the release gate's rollback
item adds the last rollback's measured seconds to the offline part it times itself.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstage.errors import Failed
from agentstage.release.ledger import iso, now_utc

__all__ = ["PulumiMissing", "ApplyFailed", "ApplyResult", "apply_stack", "record_applied", "APPLIED", "TIMER"]

#: The ledger action of a record that a decision's stack config was deployed with ``pulumi up``.
APPLIED = "applied"

#: The clock that times ``pulumi up`` (tests replace it): monotonic, so a wall-clock step during a
#: deploy cannot make the measured duration negative or wrong.
TIMER: Callable[[], float] = time.monotonic


class PulumiMissing(Failed):
    """The Pulumi CLI is not installed (not on PATH)."""


class ApplyFailed(Failed):
    """``pulumi up`` failed."""


@dataclass
class ApplyResult:
    stack: str
    summary: str
    changes: dict[str, int]
    #: wall time of ``pulumi up`` alone, in ms-rounded seconds (selecting the stack is not part of a deploy)
    seconds: float


def apply_stack(
    project_dir: Path,
    stack: str,
    *,
    on_output: Callable[[str], None] | None = None,
    message: str | None = None,
    clock: Callable[[], float] | None = None,
) -> ApplyResult:
    """``pulumi up --yes --skip-preview --stack <stack>`` in ``project_dir``, timed by ``clock``
    (default :data:`TIMER`)."""
    timer = clock or TIMER
    if shutil.which("pulumi") is None:
        raise PulumiMissing(
            "the Pulumi CLI is not installed (no `pulumi` on PATH), so nothing was deployed; the stack "
            f"config change is written: run `pulumi up --stack {stack}` where the CLI is installed "
            "(e.g. in CI), or install it from https://www.pulumi.com/docs/install/"
        )
    from pulumi import automation as auto

    try:
        st = auto.select_stack(stack_name=stack, work_dir=str(Path(project_dir).resolve()))
        start = timer()
        result = st.up(on_output=on_output, message=message)
        seconds = round(timer() - start, 3)
    except FileNotFoundError as err:
        raise PulumiMissing(
            f"the Pulumi CLI could not be started ({err}); the stack config change is written"
        ) from None
    except auto.errors.CommandError as err:
        raise ApplyFailed(f"pulumi up --stack {stack} failed: {str(err).strip()}") from None
    summary = result.summary
    changes = dict(summary.resource_changes or {}) if summary else {}
    return ApplyResult(stack, summary.result if summary else "unknown", changes, seconds)


def record_applied(
    project_dir: Path,
    stack: str,
    deployed: list[dict[str, Any]],
    result: ApplyResult,
    *,
    clock: Callable[[], dt.datetime] = now_utc,
) -> list[dict[str, Any]]:
    """Record in ``stack``'s ledger that ``result``'s ``pulumi up`` deployed the config of the
    ``deployed`` decisions: one ``applied`` record per decision, naming it by transaction and time.

    A new record rather than a rewritten decision, so the ledger stays an append-only audit trail;
    written like every other ledger write (one journaled transaction under the stack's lock), so it
    never interleaves with a release operation's. Raises :class:`LockBusy` when another run holds
    the lock."""
    from agentstage.release.journal import Transaction, recover
    from agentstage.release.lock import stack_lock

    mine = [d for d in deployed if d.get("stack", stack) == stack]
    if not mine:
        return []
    project_dir = Path(project_dir)
    with stack_lock(project_dir, stack, "apply"):
        recover(project_dir, [stack])
        txn = Transaction(project_dir, stack)
        when = iso(clock())
        recorded = [
            txn.decide(
                stack,
                {
                    "time": when,
                    "stack": stack,
                    "agent": d.get("agent"),
                    "action": APPLIED,
                    "deployed_action": d.get("action"),
                    "deployed_txn": d.get("txn"),
                    "deployed_time": d.get("time"),
                    "release": d.get("release"),
                    "stable": d.get("stable"),
                    "applied_seconds": result.seconds,
                    "result": result.summary,
                    "changes": result.changes,
                },
            )
            for d in mine
        ]
        txn.commit()
    return recorded
