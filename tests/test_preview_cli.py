"""``agentstage preview``: text and JSON plans, --config-file, secrets, errors and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from tests.conftest import ROOT, write_stack

runner = CliRunner(env={"COLUMNS": "250"})


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_text_preview_of_reference_stacks(stack):
    result = invoke("preview", stack, "-C", str(ROOT))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Stack {stack}" in out
    assert "support-bot-1-4-0" in out and "research-agent-2-1-0" in out
    assert "roles/secretmanager.secretAccessor" in out
    assert "roles/run.invoker" in out
    assert "16 resources" in out or "resources (" in out


def test_text_preview_shows_the_canary_split(tmp_path):
    result = runner.invoke(app, ["preview", "production", "-C", str(ROOT)], terminal_width=200)
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    assert "support-bot support-bot-1-3-2 95% stable, must exist" in lines
    assert any(
        re.fullmatch(r"support-bot support-bot-1-4-0-[0-9a-f]{8} 5% canary this template", line) for line in lines
    )
    assert any(
        re.fullmatch(r"research-agent research-agent-2-1-0-[0-9a-f]{8} 100% this template", line) for line in lines
    )


def test_a_large_plan_shows_the_first_rows_of_each_table_and_counts_the_rest(monkeypatch):
    from agentstage.commands import preview
    from agentstage.engine import run_plan

    plan = run_plan(ROOT, "production")
    monkeypatch.setattr(preview, "MAX_ROWS", 5)
    result = invoke("preview", "production", "-C", str(ROOT))
    custom = sum(r.custom for r in plan.resources)
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    assert f"… and {custom - 5} more (agentstage preview --json lists all)" in lines
    alerts = len(plan.by_type("gcp:monitoring/alertPolicy:AlertPolicy"))
    assert f"… and {alerts - 5} more (agentstage preview --json lists all)" in lines
    resources = lines.index(f"Resources ({custom} to create)")
    shown = [line for line in lines[resources:] if line.startswith("gcp.")]
    assert len(shown) >= 5 and result.exit_code == 0


def test_text_preview_shows_alerts_budget_and_guardrails():
    result = runner.invoke(app, ["preview", "production", "-C", str(ROOT)])
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    assert "Alert policies (16)" in lines
    assert "support-bot-errors CRITICAL 3 1" in lines  # service-wide, stable and canary conditions
    assert "research-agent-errors CRITICAL 2 1" in lines
    assert "budget budget-budget 1500 USD a month; 50% actual, 90% actual, 100% actual, 100% forecast" in lines
    assert any(line.startswith("model armor agentstage-production prompt injection/jailbreak") for line in lines)


def test_json_preview_is_stable_and_complete():
    result = invoke("preview", "production", "-C", str(ROOT), "--json")
    assert result.exit_code == 0
    plan = json.loads(result.output)
    assert (plan["project"], plan["stack"]) == ("agent-platform", "production")
    assert set(plan) >= {"project", "stack", "config", "resources", "outputs"}
    for r in plan["resources"]:
        assert set(r) >= {"urn", "type", "name", "parent", "inputs"}
        assert r["urn"].startswith("urn:pulumi:production::agent-platform::")
    types = [r["type"] for r in plan["resources"]]
    assert types.count("gcp:cloudrunv2/service:Service") == 2
    assert types.count("gcp:serviceaccount/account:Account") == 2
    again = json.loads(invoke("preview", "production", "-C", str(ROOT), "--json").output)
    assert again == plan
    # one resource per line, each line of the list a whole resource
    lines = result.output.splitlines()
    start = lines.index('  "resources": [')
    listed = lines[start + 1 : start + 1 + len(plan["resources"])]
    assert [json.loads(line.strip().rstrip(",")) for line in listed] == plan["resources"]
    assert lines[start + 1 + len(plan["resources"])].startswith("  ]")
    assert plan["outputs"]["agents"]["support-bot"]["stable_revision"] == "support-bot-1-3-2"


def test_config_file_replaces_the_stack_file(project, production):
    production["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 25
    path = write_stack(project / "candidate.yaml", production)
    result = invoke("preview", "production", "-C", str(project), "--json", "--config-file", str(path))
    assert result.exit_code == 0
    plan = json.loads(result.output)
    svc = next(r for r in plan["resources"] if r["name"] == "support-bot-service")
    assert [t["percent"] for t in svc["inputs"]["traffics"]] == [75, 25]
    assert plan["config"] == str(path)


def test_secure_values_stay_secret(project, production):
    production["agent-platform:agents"]["support-bot"]["env"]["LOG_SAMPLE_RATE"] = {
        "secure": "AAABAKZ0cGxhY2Vob2xkZXI="
    }
    path = write_stack(project / "secure.yaml", production)
    result = invoke("preview", "production", "-C", str(project), "--json", "--config-file", str(path))
    assert result.exit_code == 0, result.output
    assert "AAABAKZ0" not in result.output
    svc = next(r for r in json.loads(result.output)["resources"] if r["name"] == "support-bot-service")
    envs = {e["name"]: e.get("value") for e in svc["inputs"]["template"]["containers"][0]["envs"]}
    assert envs["LOG_SAMPLE_RATE"] == "[secret]"
    assert envs["AGENT_RELEASE"] == "1.4.0"  # only the secret leaf is hidden


def test_bad_config_exits_2_with_the_message_and_no_traceback(project, production):
    production["agent-platform:agents"]["support-bot"]["release"]["image"] = "acme/bot:latest"
    production["agent-platform:agents"]["support-bot"]["scaling"]["concurrency"] = 0
    path = write_stack(project / "bad.yaml", production)
    result = runner.invoke(
        app, ["preview", "production", "-C", str(project), "--config-file", str(path)], terminal_width=400
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "invalid stack config for stack 'production':" in result.output
    assert (
        'agent-platform:agents.support-bot.release.image: "acme/bot:latest" is not pinned by digest; '
        "use <repo>/<image>@sha256:<64 hex>" in result.output
    )
    assert "agent-platform:agents.support-bot.scaling.concurrency: 0 is out of range; allowed: 1..1000" in result.output


def test_missing_project_dir(tmp_path):
    result = runner.invoke(app, ["preview", "production", "-C", str(tmp_path / "nope")], terminal_width=400)
    assert result.exit_code == 2
    assert f"error: project directory {tmp_path / 'nope'} does not exist" in result.output


def test_dir_without_pulumi_yaml(tmp_path):
    result = runner.invoke(app, ["preview", "production", "-C", str(tmp_path)], terminal_width=400)
    assert result.exit_code == 2
    assert f"error: {tmp_path} is not a Pulumi project: no Pulumi.yaml (use -C/--project DIR)" in result.output


def test_missing_stack_file_lists_the_stacks(project):
    result = runner.invoke(app, ["preview", "prod", "-C", str(project)], terminal_width=400)
    assert result.exit_code == 2
    assert (
        f"error: stack 'prod' has no config file {project / 'stacks' / 'Pulumi.prod.yaml'}; "
        "stacks here: production, staging" in result.output
    )


def test_missing_config_file(project):
    result = runner.invoke(
        app, ["preview", "production", "-C", str(project), "--config-file", "nope.yaml"], terminal_width=400
    )
    assert result.exit_code == 2
    assert "error: config file nope.yaml does not exist" in result.output


def test_console_script_from_a_cold_start(tmp_path):
    """The installed entry point, as a user runs it, from another directory."""
    exe = Path(sys.executable).with_name("agentstage")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [str(exe), "preview", "production", "-C", str(ROOT), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stack"] == "production"


def test_console_script_exit_codes_and_complete_output(tmp_path):
    """The entry point ends the process as soon as a command is done (no interpreter
    teardown): every byte of output is still written and every exit code kept."""
    exe = str(Path(sys.executable).with_name("agentstage"))
    out = tmp_path / "report.sarif"
    ok = subprocess.run(
        [exe, "check", "production", "-C", str(ROOT), "--format", "sarif", "--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["version"] == "2.1.0"  # the file is complete and closed
    assert ok.stdout.endswith("passed\n")
    missing = subprocess.run([exe, "preview", "nosuch", "-C", str(ROOT)], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: stack 'nosuch' has no config file")
    usage = subprocess.run([exe, "preview"], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("Usage: agentstage preview [OPTIONS]")
