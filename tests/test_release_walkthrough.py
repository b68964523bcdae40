"""The release walkthrough of docs/release.md, run on a copy of examples/release: promote,
walk the canary to 100% on healthy metrics, promote a second agent and roll it back on a
failing metrics file. The commands here are the ones the docs show."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from agentstage.cli import app
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "release"
runner = CliRunner()

WALKTHROUGH = [
    ("status", 0),
    (
        "gate production --from staging --agent support-bot --eval evidence/eval-support-bot-1.5.0.json "
        "--load-test evidence/locust --memory evidence/memory.csv",
        0,
    ),
    (
        "promote staging production --agent support-bot --eval evidence/eval-support-bot-1.5.0.json "
        "--load-test evidence/locust",
        0,
    ),
    ("rollout production --metrics-file evidence/metrics-healthy.json --watch --skip-bake --assume-deployed", 0),
    ("status production", 0),
    (
        "promote staging production --agent research-agent "
        "--eval research-agent@2.2.0=evidence/vertex-research-agent-2.2.0.json --load-test evidence/locust "
        "--cost-per-request 0.011",
        0,
    ),
    ("rollout production --metrics-file evidence/metrics-failing.json --skip-bake --assume-deployed", 3),
    ("status production", 0),
]


def test_docs_show_the_walkthrough_commands():
    docs = (ROOT / "docs" / "release.md").read_text()
    for command, _ in WALKTHROUGH:
        assert f"agentstage {command}" in " ".join(docs.replace("\\\n", " ").split()), command


def test_walkthrough(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    shutil.copytree(EXAMPLE, demo)
    monkeypatch.chdir(demo)
    outputs = []
    for command, code in WALKTHROUGH:
        result = runner.invoke(app, command.split(), catch_exceptions=False, terminal_width=200)
        assert result.exit_code == code, f"{command}\n{result.output}"
        outputs.append(result.output)
    assert "all gates passed" in outputs[1]
    assert "promoted staging -> production: support-bot 1.5.0 at 5%" in outputs[2]
    assert "complete -> 100%" in outputs[3]
    assert "promoted staging -> production: research-agent 2.2.0 at 10%" in outputs[5]
    assert "research-agent 2.2.0 at 10% (stable 2.1.0): rollback" in outputs[6]
    status = json.loads(runner.invoke(app, ["status", "production", "--json"]).output)["stacks"][0]["agents"]
    by = {a["agent"]: a for a in status}
    assert (by["support-bot"]["state"], by["support-bot"]["release"], by["support-bot"]["stable"]) == (
        "stable",
        "1.5.0",
        None,
    )
    assert (by["research-agent"]["state"], by["research-agent"]["canary_percent"]) == ("rolled back", 0)
    assert [t["percent"] for t in by["research-agent"]["traffic"]] == [100]
    ledger = (demo / ".agentstage" / "production" / "decisions.jsonl").read_text().splitlines()
    actions = [(d["agent"], d["action"]) for d in map(json.loads, ledger)]
    assert actions == [
        ("support-bot", "gate"),
        ("support-bot", "promote"),
        ("support-bot", "advance"),
        ("support-bot", "advance"),
        ("support-bot", "advance"),
        ("support-bot", "complete"),
        ("research-agent", "promote"),
        ("research-agent", "rollback"),
    ]
