"""One recoverable transaction: a release operation killed at any instant is finished by the
next command on that stack, never half-applied and never recorded twice."""

from __future__ import annotations

import json

import pytest

from agentstage.release import flow
from agentstage.release.journal import JOURNAL_FILE, JournalError, Transaction, load_states, recover
from agentstage.release.ledger import Ledger


def _txn(project, stack, path, before, after):
    txn = Transaction(project, stack)
    txn.write_file(path, before, after)
    txn.set_states(stack, {"support-bot": {"phase": "rolled back"}})
    txn.decide(stack, {"agent": "support-bot", "action": "rollback", "reason": "test"})
    return txn


@pytest.mark.parametrize("crash_after", ["journal", "files", "states"])
def test_a_killed_transaction_is_finished_exactly_once_by_the_next_command(tmp_path, crash_after):
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text("before\n")
    txn = _txn(tmp_path, "production", path, "before\n", "after\n")
    txn.commit(crash_after=crash_after)
    assert (tmp_path / ".agentstage" / "production" / JOURNAL_FILE).is_file()
    notes = recover(tmp_path, ["production"])
    assert notes == [f"production: finished the interrupted release operation {txn.id} (1 decision(s))"]
    assert path.read_text() == "after\n"
    assert load_states(tmp_path, "production") == {"support-bot": {"phase": "rolled back"}}
    decisions = Ledger(tmp_path, "production").decisions()
    assert [(d["action"], d["txn"]) for d in decisions] == [("rollback", txn.id)]
    assert recover(tmp_path, ["production"]) == []  # nothing left to do
    assert len(Ledger(tmp_path, "production").decisions()) == 1


def test_decisions_already_appended_before_the_kill_are_not_appended_twice(tmp_path):
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text("before\n")
    txn = _txn(tmp_path, "production", path, "before\n", "after\n")
    txn.commit(crash_after="journal")
    Ledger(tmp_path, "production").append(txn.decisions["production"][0])  # the kill came after this append
    recover(tmp_path, ["production"])
    assert len(Ledger(tmp_path, "production").decisions()) == 1


def test_a_stack_file_edited_since_the_journal_is_never_overwritten(tmp_path):
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text("before\n")
    txn = _txn(tmp_path, "production", path, "before\n", "after\n")
    txn.commit(crash_after="journal")
    path.write_text("edited by hand\n")
    with pytest.raises(JournalError) as err:
        recover(tmp_path, ["production"])
    assert str(err.value) == (
        f"an interrupted release operation (transaction {txn.id}) was to rewrite {path}, but the file changed since; "
        f"nothing was overwritten. Check the file, then delete {tmp_path / '.agentstage' / 'production' / JOURNAL_FILE} "
        "to abandon that operation"
    )
    assert path.read_text() == "edited by hand\n"


def test_rollback_killed_after_its_journal_is_finished_by_the_next_command(project, monkeypatch):
    original = Transaction.commit
    monkeypatch.setattr(Transaction, "commit", lambda self: original(self, crash_after="journal"))
    stack_file = project / "stacks" / "Pulumi.production.yaml"
    before = stack_file.read_text()
    flow.rollback(project, "production")
    assert stack_file.read_text() == before  # killed: nothing applied yet
    monkeypatch.setattr(Transaction, "commit", original)
    change = flow.rollback(project, "production")  # the next command finishes the first one
    assert change.notes and change.notes[0].startswith("production: finished the interrupted release operation")
    assert change.message == "nothing to roll back: no canary in flight"
    assert "canary_percent: 0" in stack_file.read_text()
    actions = [d["action"] for d in Ledger(project, "production").decisions()]
    assert actions.count("rollback") == 1  # recorded once, by the command that finished it
    states = load_states(project, "production")
    assert states and all(s["phase"] == "rolled back" and s["percent"] == 0 for s in states.values())


def test_promote_writes_both_ledgers_and_the_canary_state_in_one_transaction(project, monkeypatch):
    # the journal lives with the destination stack and covers the source stack's ledger too
    seen = {}
    original = Transaction.commit

    def spy(self, **kw):
        seen["journal"] = self.to_json()
        return original(self, **kw)

    monkeypatch.setattr(Transaction, "commit", spy)
    from tests.test_release_flow import evidence, prepare_promotion

    prepare_promotion(project)
    flow.promote(project, "staging", "production", evidence(), agents=["support-bot"])
    j = seen["journal"]
    assert j["stack"] == "production"
    assert {r["stack"] for r in j["releases"]} == {"staging", "production"}
    assert json.loads(json.dumps(j["states"]))["production"]["support-bot"]["phase"] == "awaiting deploy"
