"""One release operation per stack at a time.

The lock is an advisory ``flock`` on ``.agentstage/<stack>.lock`` (git-ignored). The kernel
drops it when the holder exits, however it exits, so a killed run never leaves a stale lock.
The file records who holds it, for the message the second run prints.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentstage.errors import Failed

__all__ = ["LockBusy", "stack_lock", "lock_path"]


class LockBusy(Failed):
    """Another agentstage run holds the stack's lock."""


def lock_path(project_dir: Path, stack: str) -> Path:
    return Path(project_dir) / ".agentstage" / f"{stack}.lock"


@contextmanager
def stack_lock(project_dir: Path, stack: str, operation: str) -> Iterator[None]:
    """Hold the lock of ``stack`` for ``operation``; raise :class:`LockBusy` at once if taken."""
    path = lock_path(project_dir, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise LockBusy(
                f"stack {stack!r} is locked by another agentstage run ({holder}); "
                "wait for it to finish, then run this again"
            ) from None
        info = {
            "pid": os.getpid(),
            "operation": operation,
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"{info.get('operation', '?')} by pid {info.get('pid', '?')} since {info.get('since', '?')}"
