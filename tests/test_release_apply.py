"""--apply: `pulumi up --stack X` through the Automation API, against a fake `pulumi` executable
on PATH that records its arguments; and the clear message when there is no Pulumi CLI."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.release.apply import ApplyFailed, PulumiMissing, apply_stack

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
