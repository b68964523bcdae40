"""What changed recently in a stack, newest first: the first question of an incident.

Sources, all in the project directory (nothing is read from the cloud):

- the release ledger (``.agentstage/<stack>/releases.json``): each release version recorded, with
  its manifest digest and image;
- the decision log (``.agentstage/<stack>/decisions.jsonl``): gates, promotions, canary steps,
  holds, rollbacks and flag changes, each with its time, agent and reason, and each ``--apply``
  deploy of one (``applied``: the decision it deployed and the measured ``pulumi up`` seconds) —
  any action another command records is shown too;
- an interrupted release operation (``.agentstage/<stack>/journal.json``), which the next release
  command finishes;
- the stack file's history in git: each commit that changed it since the window's start, with the
  lines it changed, and the uncommitted edits of the working tree (hand edits that no release
  command recorded). Without git, or outside a repository, this source is skipped with a note.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstage.release.apply import APPLIED
from agentstage.release.ledger import LEDGER_DIR, Ledger, iso, parse_time

__all__ = ["Change", "changes", "describe"]

#: Changed lines of the stack file shown per commit.
MAX_DIFF_LINES = 40
GIT_TIMEOUT_SECONDS = 30
#: Decision actions that move traffic, shown as kind "rollout".
ROLLOUT_ACTIONS = frozenset({"advance", "complete", "hold"})


@dataclass
class Change:
    time: dt.datetime
    kind: str
    summary: str
    agent: str | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    #: orders changes of the same second (the ledger's resolution): a later decision first, then
    #: the releases it recorded, then the stack file edits
    rank: float = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso(self.time),
            "kind": self.kind,
            "agent": self.agent,
            "summary": self.summary,
            "source": self.source,
            "details": self.details,
        }


def _word(value: Any) -> str:
    return {True: "on", False: "off", None: "unset"}.get(value, str(value))


def describe(d: dict[str, Any]) -> tuple[str, str]:
    """(kind, one-line summary) of a ledger decision."""
    action = str(d.get("action", "?"))
    release, stable = d.get("release"), d.get("stable")
    reason = d.get("reason") or ""
    tail = f": {reason}" if reason else ""
    if action == "promote":
        return "promote", (
            f"promoted {release} from {d.get('from_stack', '?')} at {d.get('to_percent')}%"
            + (f" (stable {stable})" if stable else "")
        )
    if action in ROLLOUT_ACTIONS:
        return "rollout", f"{action} {release}: {d.get('percent')}% -> {d.get('to_percent')}%{tail}"
    if action == "rollback":
        return "rollback", f"rollback {release} -> 0%, all traffic to {stable}{tail}"
    if action == "gate":
        return "gate", f"gate {release}{tail}"
    if action == APPLIED:
        seconds = d.get("applied_seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else ""
        return "applied", (
            f"applied the {d.get('deployed_action', '?')} of {d.get('deployed_time', '?')}: "
            f"pulumi up {d.get('result', '?')}{took}"
        )
    if action == "flags":
        before = d.get("previous") if isinstance(d.get("previous"), dict) else {}
        flags = d.get("flags") if isinstance(d.get("flags"), dict) else {}
        moved = ", ".join(f"{n} {_word(before.get(n))} -> {_word(v)}" for n, v in sorted(flags.items()))
        version = d.get("parameter_version")
        return "flags", f"flags {moved or '?'}" + (f" (parameter version {version})" if version else "")
    return action, f"{action}{' ' + str(release) if release else ''}{tail}"


def _git(project: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, "-C", str(project), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _changed_lines(diff: str) -> list[str]:
    out = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return out[:MAX_DIFF_LINES] + ([f"… {len(out) - MAX_DIFF_LINES} more lines"] if len(out) > MAX_DIFF_LINES else [])


def _config_changes(
    project: Path, stack_file: Path, since: dt.datetime, uncommitted_rank: float = 0
) -> tuple[list[Change], str | None]:
    """Commits to the stack file since ``since`` and its uncommitted edits; or a note why not.
    ``uncommitted_rank`` orders the edits among changes of the same second."""
    top = _git(project, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return [], f"config history skipped: {project.resolve()} is not in a git repository (or git is not installed)"
    rel = str(stack_file.resolve().relative_to(Path(top.stdout.strip()).resolve()))
    found: list[Change] = []
    log = _git(project, "log", f"--since={iso(since)}", "--format=%H%x1f%cI%x1f%an%x1f%s", "--", f":/{rel}")
    for line in (log.stdout if log and log.returncode == 0 else "").splitlines():
        commit, when, author, subject = line.split("\x1f", 3)
        shown = _git(project, "show", "--format=", "--unified=0", commit, "--", f":/{rel}")
        found.append(
            Change(
                parse_time(when),
                "config",
                f"{stack_file.name}: {subject} ({commit[:12]}, {author})",
                source="git",
                details={"commit": commit, "author": author, "lines": _changed_lines(shown.stdout if shown else "")},
            )
        )
    diff = _git(project, "diff", "--unified=0", "HEAD", "--", f":/{rel}")
    if diff is not None and diff.returncode == 0 and diff.stdout.strip():
        # the ledger's resolution, so an edit and the decision that made it share a second
        when = dt.datetime.fromtimestamp(int(stack_file.stat().st_mtime), dt.timezone.utc)
        if when >= since:
            found.append(
                Change(
                    when,
                    "config",
                    f"{stack_file.name}: uncommitted edits",
                    source="working tree",
                    rank=uncommitted_rank,
                    details={"lines": _changed_lines(diff.stdout)},
                )
            )
    return found, None


def changes(
    project_dir: Path,
    stack: str,
    stack_file: Path,
    since: dt.datetime,
    agent: str | None = None,
    *,
    with_git: bool = True,
) -> tuple[list[Change], list[str]]:
    """The changes of ``stack`` since ``since`` (of ``agent`` and the stack-wide ones when given),
    newest first; and notes on sources that were skipped."""
    ledger = Ledger(project_dir, stack)
    found: list[Change] = []
    for name, versions in ledger.releases().items():
        for version, record in versions.items():
            manifest = record.get("manifest") or {}
            found.append(
                Change(
                    parse_time(record["recorded"]),
                    "release",
                    f"release {version} recorded (manifest {record['digest'][:19]}…)",
                    agent=name,
                    source="releases.json",
                    rank=1,
                    details={
                        "version": version,
                        "digest": record["digest"],
                        **{k: manifest[k] for k in ("image", "model", "prompts") if k in manifest},
                    },
                )
            )
    for number, d in enumerate(ledger.decisions()):
        if "time" not in d:
            continue
        kind, summary = describe(d)
        details = {k: v for k, v in d.items() if k not in ("time", "agent", "stack", "checks", "gates", "window")}
        found.append(
            Change(
                parse_time(d["time"]),
                kind,
                summary,
                agent=d.get("agent"),
                source="decisions.jsonl",
                details=details,
                rank=2 + number,
            )
        )
    journal = Path(project_dir) / LEDGER_DIR / stack / "journal.json"
    if journal.is_file():
        found.append(
            Change(
                dt.datetime.fromtimestamp(journal.stat().st_mtime, dt.timezone.utc),
                "interrupted",
                "a release operation was interrupted; the next release command on this stack finishes it",
                source="journal.json",
            )
        )
    notes: list[str] = []
    if with_git:
        # Within one second (the ledger's resolution) the uncommitted edits come right after
        # the last decision, which is what made them, and before the decisions before it; an
        # `applied` record only deployed the edit, so it stays newer than both.
        last = max((c.rank for c in found if c.source == "decisions.jsonl" and c.kind != APPLIED), default=1)
        config, note = _config_changes(Path(project_dir), stack_file, since, uncommitted_rank=last - 0.5)
        found += config
        if note:
            notes.append(note)
    kept = [c for c in found if c.time >= since and (agent is None or c.agent in (None, agent))]
    kept.sort(key=lambda c: (c.time, c.rank), reverse=True)
    return kept, notes
