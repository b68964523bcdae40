"""One recoverable transaction for every release operation (write-ahead, then apply).

promote, rollout and rollback each change up to three things: the stack config file(s), the
typed canary state (``.agentstage/<stack>/state.json``) and the ledger (decisions, recorded
releases). A :class:`Transaction` first writes everything it will do to a journal
(``.agentstage/<stack>/journal.json``, fsynced), then applies it, then deletes the journal.
Applying is idempotent: a file already holding its new text is left alone, a decision
already in the ledger (by its transaction id) is not appended twice. So after a kill at any
instant the next release command on that stack (under the same locks) finds the journal and
finishes the transaction; a stack file that changed since the journal was written (someone
edited it by hand) stops that with a message instead of overwriting the edit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstage.errors import BadInput, Failed
from agentstage.inputs import load_json
from agentstage.release.ledger import LEDGER_DIR, Ledger
from agentstage.release.stackfile import atomic_write

__all__ = ["Transaction", "JournalError", "recover", "load_states", "STATE_FILE", "JOURNAL_FILE"]

STATE_FILE = "state.json"
JOURNAL_FILE = "journal.json"


class JournalError(Failed):
    """An interrupted transaction cannot be finished safely."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_states(project_dir: Path, stack: str) -> dict[str, dict[str, Any]]:
    """The persisted canary states of a stack (agent -> CanaryState JSON)."""
    path = Path(project_dir) / LEDGER_DIR / stack / STATE_FILE
    if not path.is_file():
        return {}
    advice = "restore it from version control or delete it (the next rollout starts each canary's step again)"
    try:
        data = load_json(path, "canary state")
    except BadInput as err:
        raise JournalError(f"{err.message}; {advice}", file=str(path)) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise JournalError(f"canary state {path}: expected an object of agent -> state; {advice}", file=str(path))
    return data


@dataclass
class Transaction:
    """Everything one release operation will write, applied as one unit."""

    project_dir: Path
    #: the stack whose directory holds the journal
    stack: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(default_factory=list)

    def write_file(self, path: Path, before: str, after: str) -> None:
        self.files[str(path)] = {"before": _sha(before), "after": _sha(after), "text": after}

    def set_states(self, stack: str, states: dict[str, Any]) -> None:
        self.states[stack] = states

    def decide(self, stack: str, decision: dict[str, Any]) -> dict[str, Any]:
        decision = {**decision, "txn": self.id}
        self.decisions.setdefault(stack, []).append(decision)
        return decision

    def record_release(self, stack: str, agent: str, manifest: Any, when: str) -> None:
        from agentstage.release.manifest import canonical

        self.releases.append({"stack": stack, "agent": agent, "manifest": canonical(manifest), "when": when})

    @property
    def path(self) -> Path:
        return Path(self.project_dir) / LEDGER_DIR / self.stack / JOURNAL_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stack": self.stack,
            "files": self.files,
            "states": self.states,
            "decisions": self.decisions,
            "releases": self.releases,
        }

    def commit(self, *, crash_after: str | None = None) -> None:
        """Journal, then apply, then forget. ``crash_after`` (tests only) stops after a phase
        ("journal", "files", "states") as a kill would."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        if crash_after == "journal":
            return
        _apply(Path(self.project_dir), self.to_json(), crash_after=crash_after)
        if crash_after:
            return
        self.path.unlink()


def _journal_shape(journal: Any) -> bool:
    return (
        isinstance(journal, dict)
        and isinstance(journal.get("id"), str)
        and isinstance(journal.get("stack"), str)
        and all(isinstance(journal.get(k), dict) for k in ("files", "states", "decisions"))
        and isinstance(journal.get("releases"), list)
        and all(isinstance(f, dict) and {"before", "after", "text"} <= set(f) for f in journal["files"].values())
    )


def _apply(project_dir: Path, journal: dict[str, Any], *, crash_after: str | None = None) -> None:
    for name, f in journal["files"].items():
        path = Path(name)
        current = _sha(path.read_text(encoding="utf-8")) if path.is_file() else None
        if current == f["after"]:
            continue
        if current != f["before"]:
            raise JournalError(
                f"an interrupted release operation (transaction {journal['id']}) was to rewrite {path}, but the file "
                "changed since; nothing was overwritten. Check the file, then delete "
                f"{project_dir / LEDGER_DIR / journal['stack'] / JOURNAL_FILE} to abandon that operation"
            )
        atomic_write(path, f["text"])
    if crash_after == "files":
        return
    for stack, states in journal["states"].items():
        path = project_dir / LEDGER_DIR / stack / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(states, indent=1, sort_keys=True) + "\n")
    if crash_after == "states":
        return
    for release in journal["releases"]:
        Ledger(project_dir, release["stack"]).record(
            release["agent"], release["manifest"], None, recorded=release["when"]
        )
    for stack, decisions in journal["decisions"].items():
        ledger = Ledger(project_dir, stack)
        seen = {(d.get("txn"), d.get("agent"), d.get("action")) for d in ledger.decisions()}
        for d in decisions:
            if (d.get("txn"), d.get("agent"), d.get("action")) not in seen:
                ledger.append(d)


def recover(project_dir: Path, stacks: list[str]) -> list[str]:
    """Finish the interrupted transactions journaled in ``stacks`` (the caller holds their
    locks). Returns a note per transaction finished."""
    notes = []
    for stack in stacks:
        path = Path(project_dir) / LEDGER_DIR / stack / JOURNAL_FILE
        if not path.is_file():
            continue
        try:
            journal = load_json(path, "journal")
        except BadInput:
            # a torn journal was never applied (it is written atomically): nothing happened
            path.unlink()
            notes.append(f"{stack}: discarded an unreadable journal of an operation that had not started")
            continue
        if not _journal_shape(journal):
            raise JournalError(
                f"journal {path} is not a journal agentstage wrote (expected an object with id, stack, "
                "files, states, decisions and releases); nothing was applied: delete it to abandon "
                "the interrupted operation",
                file=str(path),
            )
        _apply(Path(project_dir), journal)
        path.unlink()
        notes.append(
            f"{stack}: finished the interrupted release operation {journal['id']} "
            f"({sum(len(v) for v in journal['decisions'].values())} decision(s))"
        )
    return notes
