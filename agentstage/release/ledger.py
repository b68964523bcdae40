"""The release ledger: what each stack has run and every decision taken, under version control.

Layout, in the project directory::

    .agentstage/<stack>/releases.json    agent -> version -> {digest, manifest, recorded}
    .agentstage/<stack>/decisions.jsonl  one decision per line, oldest first
    .agentstage/<stack>.lock             the stack's lock (git-ignored)

A version is recorded with the digest of its manifest the first time any release command
sees it. From then on a manifest with the same version and other contents is refused, in
every stack: versions are never reused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstage.errors import BadInput
from agentstage.inputs import load_json, read_text, reported_as
from agentstage.release.manifest import canonical, describe_difference, digest
from agentstage.release.stackfile import atomic_write

__all__ = ["Ledger", "LedgerError", "ReleaseConflict", "LEDGER_DIR", "now_utc", "iso"]


class LedgerError(BadInput):
    """A ledger file (``releases.json``, ``decisions.jsonl``) is unreadable or not the ledger's
    shape: it is under version control, so the fix is to restore it."""


LEDGER_DIR = ".agentstage"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ReleaseConflict:
    agent: str
    version: str
    stack: str
    recorded_digest: str
    digest: str
    fields: list[str]

    def message(self) -> str:
        return (
            f"{self.agent} {self.version} was recorded in stack {self.stack!r} with manifest "
            f"{self.recorded_digest[:19]}…, but this manifest is {self.digest[:19]}… "
            f"(differs in: {', '.join(self.fields) or 'content'}); a version is never reused with "
            "different contents: give the new manifest a new version"
        )


class Ledger:
    """The ledger of one stack."""

    def __init__(self, project_dir: Path, stack: str) -> None:
        self.root = Path(project_dir) / LEDGER_DIR
        self.stack = stack
        self.dir = self.root / stack
        self.releases_path = self.dir / "releases.json"
        self.decisions_path = self.dir / "decisions.jsonl"

    # --- releases --------------------------------------------------------------------------

    def releases(self) -> dict[str, dict[str, dict[str, Any]]]:
        return _read_releases(self.releases_path)

    def conflict(self, agent: str, manifest: Any) -> ReleaseConflict | None:
        """A recorded manifest of the same agent and version with other contents, in any stack."""
        data = canonical(manifest)
        version, mine = data["version"], digest(manifest)
        for path in sorted(self.root.glob("*/releases.json")):
            entry = _read_releases(path).get(agent, {}).get(version)
            if entry and entry.get("digest") != mine:
                fields = describe_difference(entry["manifest"], data) if entry.get("manifest") else []
                return ReleaseConflict(agent, version, path.parent.name, entry["digest"], mine, fields)
        return None

    def record(
        self, agent: str, manifest: Any, when: dt.datetime | None = None, *, recorded: str | None = None
    ) -> bool:
        """Record ``manifest`` for ``agent`` (no-op when already recorded). The caller has
        checked :meth:`conflict`. Returns whether the ledger changed."""
        data = canonical(manifest)
        releases = self.releases()
        versions = releases.setdefault(agent, {})
        if data["version"] in versions:
            return False
        versions[data["version"]] = {
            "digest": digest(manifest),
            "recorded": recorded or iso(when or now_utc()),
            "manifest": data,
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.releases_path, json.dumps(releases, indent=2, sort_keys=True) + "\n")
        return True

    # --- decisions -------------------------------------------------------------------------

    def append(self, decision: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(decision, sort_keys=True, separators=(",", ":"))
        with self.decisions_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def decisions(self, agent: str | None = None) -> list[dict[str, Any]]:
        if not self.decisions_path.is_file():
            return []
        with reported_as(LedgerError):
            lines = read_text(self.decisions_path, "decision log").splitlines()
        out = []
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                if number - 1 == last:
                    continue  # a torn last line from a crash is skipped, not fatal
                raise LedgerError(
                    f"decision log {self.decisions_path}: line {number} is not valid JSON ({err.msg}); {_RESTORE}",
                    file=str(self.decisions_path),
                ) from None
            if not isinstance(entry, dict):
                raise LedgerError(
                    f"decision log {self.decisions_path}: line {number} is not a JSON object; {_RESTORE}",
                    file=str(self.decisions_path),
                )
            if agent is None or entry.get("agent") == agent:
                out.append(entry)
        return out


_RESTORE = "restore the file from version control"


def _read_releases(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``releases.json``: agent -> version -> record, each level checked."""
    if not path.is_file():
        return {}
    with reported_as(LedgerError):
        data = load_json(path, "release ledger")
    if not isinstance(data, dict):
        raise LedgerError(
            f"release ledger {path}: expected an object of agent -> version -> record; {_RESTORE}", file=str(path)
        )
    for agent, versions in data.items():
        if not isinstance(versions, dict):
            raise LedgerError(
                f"release ledger {path}: {agent}: expected an object of version -> record; {_RESTORE}",
                file=str(path),
                key=agent,
            )
        for version, record in versions.items():
            if not isinstance(record, dict) or not isinstance(record.get("digest"), str):
                raise LedgerError(
                    f"release ledger {path}: {agent}.{version}: expected a record with a digest; {_RESTORE}",
                    file=str(path),
                    key=f"{agent}.{version}",
                )
    return data
