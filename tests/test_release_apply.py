"""--apply: `pulumi up --stack X` through the Automation API, against a fake `pulumi` executable
on PATH that records its arguments; the clear message when there is no Pulumi CLI; and the measured
`pulumi up` of a rollback, recorded in the ledger for the release gate's rollback item."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.ops.changes import changes
from agentstage.release import apply as apply_module
from agentstage.release import gates as gates_module
from agentstage.release.apply import ApplyFailed, PulumiMissing, apply_stack
from agentstage.release.cli import apply_or_explain
from agentstage.release.flow import load_state
from agentstage.release.ledger import Ledger, parse_time
from agentstage.release.lock import stack_lock
from tests.conftest import ROOT

runner = CliRunner()

FAKE = r"""#!{python}
import json, os, sys
with open(os.environ["FAKE_PULUMI_LOG"], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\n")
args = [a for a in sys.argv[1:] if a != "--non-interactive"]
if args[:1] == ["version"]:
    print("v3.272.0")
elif args[:1] == ["up"]:
    if os.environ.get("FAKE_PULUMI_FAIL"):
        print("error: 409 revision already exists", file=sys.stderr)
        sys.exit(255)
    print("Updating (production)")
    print("  ~ support-bot-service update [diff: ~traffics]")
elif args[:2] == ["stack", "output"]:
    print("{{}}")
elif args[:2] == ["stack", "history"]:
    print(json.dumps([{{"kind": "update", "startTime": "2026-05-01T12:00:00.000Z", "endTime": "2026-05-01T12:00:09.000Z",
                       "message": "", "environment": {{}}, "config": {{}}, "result": "succeeded",
                       "version": 42, "resourceChanges": {{"update": 1, "same": 20}}}}]))
"""


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "pulumi.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.delenv("FAKE_PULUMI_FAIL", raising=False)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_apply_runs_pulumi_up_on_the_stack_in_the_project_dir(project, fake_pulumi):
    result = apply_stack(project, "production")
    calls = fake_pulumi()
    assert all(c["argv"][0] == "--non-interactive" for c in calls[1:])  # the Automation API never prompts
    argvs = [[a for a in c["argv"] if a != "--non-interactive"] for c in calls]
    assert argvs[0] == ["version"]
    assert ["stack", "select", "--stack", "production"] in argvs
    up = next(a for a in argvs if a[0] == "up")
    assert up[:3] == ["up", "--yes", "--skip-preview"]
    assert up[up.index("--stack") + 1] == "production"
    assert all(Path(c["cwd"]) == project.resolve() for c in calls if c["argv"][0] != "version")
    assert result.summary == "succeeded" and result.changes == {"update": 1, "same": 20}


def test_rollback_with_apply_writes_config_then_applies(project, fake_pulumi):
    result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "canary_percent: 0" in (project / "stacks" / "Pulumi.production.yaml").read_text()
    ups = [c["argv"] for c in fake_pulumi() if "up" in c["argv"]]
    assert len(ups) == 1 and "production" in ups[0]
    assert "applied: pulumi up --stack production: succeeded" in result.output


def test_a_failing_up_is_reported(project, fake_pulumi, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "1")
    with pytest.raises(
        ApplyFailed, match=r"(?s)^pulumi up --stack production failed: code: 255.*409 revision already exists"
    ):
        apply_stack(project, "production")


def test_without_the_pulumi_cli_the_config_change_stays_and_the_message_says_so(project, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(
        PulumiMissing, match=r"^the Pulumi CLI is not installed \(no `pulumi` on PATH\), so nothing was deployed"
    ):
        apply_stack(project, "production")
    result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert (
        "the Pulumi CLI is not installed (no `pulumi` on PATH), so nothing was deployed; the stack config change is written: run `pulumi up --stack production`"
        in out
    )
    assert "canary_percent: 0" in (project / "stacks" / "Pulumi.production.yaml").read_text()


# --- the measured `pulumi up` of a rollback, recorded for the release gate -------------------------


def _ledger(project: Path) -> list[dict]:
    return Ledger(project, "production").decisions()


def _readings(*values: float):
    """A clock that gives exactly these readings (a third reading is a failure, not a guess)."""
    return iter(values).__next__


def test_rollback_with_apply_records_the_measured_pulumi_up_tied_to_the_rollback(project, fake_pulumi):
    result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rollback, applied = _ledger(project)
    assert rollback["action"] == "rollback" and "applied_seconds" not in rollback  # the decision is not rewritten
    seconds = applied.pop("applied_seconds")
    assert isinstance(seconds, float) and math.isfinite(seconds) and seconds > 0
    assert applied.pop("txn") != rollback["txn"]
    assert applied.pop("time") >= rollback["time"]
    assert applied == {
        "stack": "production",
        "agent": "support-bot",
        "action": "applied",
        "deployed_action": "rollback",
        "deployed_txn": rollback["txn"],
        "deployed_time": rollback["time"],
        "release": "1.4.0",
        "stable": "1.3.2",
        "result": "succeeded",
        "changes": {"update": 1, "same": 20},
    }
    out = " ".join(result.output.split())
    assert f"recorded in the ledger: applied_seconds {seconds:.1f} for the rollback of support-bot" in out
    assert gates_module._applied_rollback(project, "production") == (
        seconds,
        f"the last rollback's `pulumi up`, {_ledger(project)[1]['time']}",
    )
    # `agentstage changes` shows the deploy, newest first, above the rollback it deployed
    found, _ = changes(
        project,
        "production",
        project / "stacks" / "Pulumi.production.yaml",
        dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
        with_git=False,
    )
    assert [c.kind for c in found[:2]] == ["applied", "rollback"]
    assert found[0].summary == f"applied the rollback of {rollback['time']}: pulumi up succeeded in {seconds:.1f} s"
    assert found[0].details["deployed_txn"] == rollback["txn"]


def test_the_gate_adds_the_last_recorded_rollback_apply_to_its_offline_time(project, fake_pulumi, monkeypatch):
    stack_file = project / "stacks" / "Pulumi.production.yaml"
    in_flight = stack_file.read_text()

    def rollback_applied_in(seconds: float) -> str:
        """Roll back with --apply, `pulumi up` timed as ``seconds``; put the canary back in flight
        (as the next promote would), and return the time of the applied record."""
        monkeypatch.setattr(apply_module, "TIMER", _readings(1000.0, 1000.0 + seconds))
        result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        stack_file.write_text(in_flight)
        return _ledger(project)[-1]["time"]

    def rollback_item():
        monkeypatch.setattr(gates_module, "TIMER", _readings(0.0, 2.0))
        spec = load_state(project, "production").spec
        (item,) = gates_module._rollback_items(project, "production", spec, ["support-bot"], None)
        return item

    when = rollback_applied_in(3.0)
    item = rollback_item()
    assert (item.name, item.ok, item.evidence) == (
        "rollback within 5 min",
        True,
        "to stable 1.3.2 (revision support-bot-1-3-2): 2.0 s offline (edit, plan, diff: traffic of 1 service) "
        f"+ 3 s (the last rollback's `pulumi up`, {when}) = 5.0 s",
    )
    assert item.data == {"offline_seconds": 2.0, "applied_seconds": 3.0, "total_seconds": 5.0}
    # the last rollback's deploy counts: 2 s offline + 299 s applied is over 300 s
    when = rollback_applied_in(299.0)
    item = rollback_item()
    assert (item.ok, item.evidence) == (
        False,
        "to stable 1.3.2 (revision support-bot-1-3-2): 2.0 s offline (edit, plan, diff: traffic of 1 service) "
        f"+ 299 s (the last rollback's `pulumi up`, {when}) = 301.0 s",
    )


def test_a_failed_apply_records_no_time_and_says_so(project, fake_pulumi, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "1")
    result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "error: pulumi up --stack production failed: code: 255" in out
    assert "409 revision already exists" in out
    assert out.endswith("; the deploy time was not recorded in the ledger")
    assert [d["action"] for d in _ledger(project)] == ["rollback"]
    assert gates_module._applied_rollback(project, "production") == (None, "")


def test_a_deploy_the_ledger_lock_keeps_from_recording_says_so(project, fake_pulumi, capsys):
    decision = {"time": "2026-05-01T12:00:00Z", "stack": "production", "agent": "support-bot", "action": "rollback"}
    with stack_lock(project, "production", "rollout"):
        apply_or_explain(project, "production", True, [decision])
    err = " ".join(capsys.readouterr().err.split())
    assert "applied: pulumi up --stack production: succeeded" in err
    assert (
        "s were not recorded in the ledger: stack 'production' is locked by another agentstage run (rollout by" in err
    )
    assert _ledger(project) == []


def test_the_gate_reads_only_rollback_deploys_and_refuses_a_malformed_one(project):
    ledger = Ledger(project, "production")
    ledger.append({"time": "2026-05-01T12:00:00Z", "agent": "support-bot", "action": "rollback", "txn": "a1"})
    applied = {"agent": "support-bot", "action": "applied", "deployed_time": "2026-05-01T12:00:00Z"}
    ledger.append({**applied, "time": "2026-05-01T12:00:20Z", "deployed_action": "rollback", "applied_seconds": 20})
    # a later deploy of a canary step is no rollback: the gate keeps the rollback's
    ledger.append({**applied, "time": "2026-05-01T13:00:00Z", "deployed_action": "advance", "applied_seconds": 900})
    assert gates_module._applied_rollback(project, "production") == (
        20.0,
        "the last rollback's `pulumi up`, 2026-05-01T12:00:20Z",
    )
    ledger.append({**applied, "time": "2026-05-01T14:00:00Z", "deployed_action": "rollback", "applied_seconds": "9"})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the ledger's `pulumi up` of 2026-05-01T14:00:00Z (of the rollback of 2026-05-01T12:00:00Z) has "
            'applied_seconds "9", not a duration in seconds'
        ),
    ):
        gates_module._applied_rollback(project, "production")


def test_apply_times_only_pulumi_up_with_the_given_clock(project, fake_pulumi):
    assert apply_stack(project, "production", clock=_readings(10.0, 14.5)).seconds == 4.5


def test_changes_shows_the_deploy_above_the_rollback_and_the_edit_it_made(project, fake_pulumi):
    git = ["git", "-C", str(project), "-c", "user.name=Ops", "-c", "user.email=ops@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "stacks"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    result = runner.invoke(app, ["rollback", "production", "-C", str(project), "--apply"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    stack_file = project / "stacks" / "Pulumi.production.yaml"
    rollback_time = parse_time(_ledger(project)[0]["time"]).timestamp()
    os.utime(stack_file, (rollback_time, rollback_time))  # the edit and the rollback share a second
    found, notes = changes(project, "production", stack_file, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    assert notes == []
    assert [(c.kind, c.source) for c in found[:3]] == [
        ("applied", "decisions.jsonl"),
        ("rollback", "decisions.jsonl"),
        ("config", "working tree"),
    ]


def test_a_rollout_that_rolls_back_with_apply_records_its_deploy_for_the_gate(project, fake_pulumi, monkeypatch):
    monkeypatch.setattr(apply_module, "TIMER", _readings(50.0, 62.0))
    metrics = ROOT / "tests" / "data" / "release" / "metrics-errors.json"
    args = ["rollout", "production", "-C", str(project), "--metrics-file", str(metrics)]
    result = runner.invoke(app, [*args, "--skip-bake", "--assume-deployed", "--apply"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    rollback, applied = _ledger(project)
    assert rollback["action"] == "rollback"
    assert (applied["action"], applied["deployed_action"], applied["deployed_txn"], applied["applied_seconds"]) == (
        "applied",
        "rollback",
        rollback["txn"],
        12.0,
    )
    assert gates_module._applied_rollback(project, "production") == (
        12.0,
        f"the last rollback's `pulumi up`, {applied['time']}",
    )
