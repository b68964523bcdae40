"""The release tool on a project that is not the reference platform: examples/team-stack, whose
config namespace is its own project name (``triage-team``) and whose program composes the
components itself and names the agent ``triage``'s service ``triage-agent``. Status, a promotion
behind the gates, a rollout step and a rollback on a copy of it; the stack file and the ledger
asserted after each step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.diff import diff_plans
from agentstage.engine import run_plan
from agentstage.release import flow
from agentstage.release.ledger import Ledger
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "team-stack"
SERVICE = "gcp:cloudrunv2/service:Service"
runner = CliRunner()

#: The release block of the production stack (0.9.1) and the one of staging (1.0.0).
RELEASE_091 = """\
      release:
        version: 0.9.1
        image: europe-docker.pkg.dev/acme-triage/agents/triage@sha256:3f2b1f0f5c7b8e4c3a6f8f4e2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c
        model: gemini-2.5-flash
        prompts: sha256:f4d3bfb74dc944998dc7cc69c350d266735e547a8cc6a0dc22f4179f47d4c21c
        tools:
          ticket-search: 1.2.0
        memory_schema: "2"
        eval_dataset: triage_golden_v4
"""
RELEASE_100 = """\
      release:
        version: 1.0.0
        image: europe-docker.pkg.dev/acme-triage/agents/triage@sha256:8a595168b142abb87d9220b93fbd617a07c60e5fddcb086c77818ab92c01eaaa
        model: gemini-2.5-flash
        prompts: sha256:7cd26439073393736877e7e3d4c05434df89960a0712838d1f97d1bb6590b182
        tools:
          ticket-search: 1.3.0
        memory_schema: "2"
        eval_dataset: triage_golden_v5
"""


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A copy of examples/team-stack (program, stacks, evidence)."""
    dest = tmp_path / "team"
    shutil.copytree(EXAMPLE, dest)
    return dest


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def stack_text(project: Path, stack: str = "production") -> str:
    return (project / "stacks" / f"Pulumi.{stack}.yaml").read_text()


def service(plan):
    (svc,) = plan.by_type(SERVICE)
    return svc


def split(plan) -> list[tuple[str, int, str | None]]:
    return [(t["revision"], t["percent"], t.get("tag")) for t in service(plan).inputs["traffics"]]


def deployed(plan) -> str:
    return service(plan).inputs["template"]["revision"]


def status_of(project: Path, stack: str) -> dict:
    result = cli("status", stack, "-C", str(project), "--json")
    assert result.exit_code == 0, result.output
    (agent,) = json.loads(result.output)["stacks"][0]["agents"]
    return agent


def test_the_release_flow_finds_the_team_agent_by_its_labels(team):
    plan = run_plan(team, "production")
    assert service(plan).inputs["name"] == "triage-agent"  # not the platform's name for the agent
    state = flow.load_state(team, "production")
    assert state.file.namespace == "triage-team" and list(state.spec.agents) == ["triage"]
    assert flow.template_revisions(plan, state.spec) == {"triage": deployed(plan)}
    assert flow.service_names(plan, state.spec) == {"triage": "triage-agent"}


def test_status_shows_the_team_agent(team, monkeypatch):
    result = cli("status", "-C", str(team), "--json")
    assert result.exit_code == 0, result.output
    stacks = {s["stack"]: s["agents"] for s in json.loads(result.output)["stacks"]}
    assert sorted(stacks) == ["production", "staging"]
    prod = stacks["production"][0]
    revision = deployed(run_plan(team, "production"))
    assert revision.startswith("triage-agent-0-9-1-")
    assert (prod["agent"], prod["service"], prod["state"], prod["release"], prod["stable"]) == (
        "triage",
        "triage-agent",
        "stable",
        "0.9.1",
        None,
    )
    assert prod["traffic"] == [{"revision": revision, "percent": 100, "tag": None}]
    assert (stacks["staging"][0]["agent"], stacks["staging"][0]["release"]) == ("triage", "1.0.0")

    monkeypatch.setenv("COLUMNS", "240")
    text = cli("status", "production", "-C", str(team))
    assert text.exit_code == 0
    row = next(line for line in text.output.splitlines() if "triage" in line)
    assert [c.strip() for c in row.split("│") if c.strip()] == [
        "triage",
        "stable",
        "0.9.1",
        "100%",
        "unknown",
        "none recorded",
    ]


def test_promote_then_rollout_then_rollback(team):
    evidence = team / "evidence"
    original = stack_text(team)
    before = run_plan(team, "production")
    stable_rev = deployed(before)

    # promote staging's 1.0.0 behind the gates: a canary at the first step beside 0.9.1
    result = cli(
        "promote",
        "staging",
        "production",
        "-C",
        str(team),
        "--eval",
        str(evidence / "eval-triage-1.0.0.json"),
        "--load-test",
        str(evidence / "locust"),
    )
    assert result.exit_code == 0, result.output
    assert "all gates passed" in result.output
    assert "promoted staging -> production: triage 1.0.0 at 5%" in result.output
    promoted = original.replace(
        RELEASE_091,
        RELEASE_100 + "      stable:\n" + RELEASE_091.split("\n", 1)[1] + f"      stable_revision: {stable_rev}\n",
    ).replace("      rollout:\n", "      rollout:\n        canary_percent: 5\n")
    assert promoted != original and stack_text(team) == promoted
    assert stack_text(team, "staging") == (EXAMPLE / "stacks" / "Pulumi.staging.yaml").read_text()
    after = run_plan(team, "production")
    canary_rev = deployed(after)
    assert canary_rev.startswith("triage-agent-1-0-0-")
    assert split(after) == [(stable_rev, 95, None), (canary_rev, 5, "canary")]
    ledger = Ledger(team, "production")
    (promo,) = ledger.decisions("triage")
    assert (
        promo["action"],
        promo["release"],
        promo["stable"],
        promo["percent"],
        promo["to_percent"],
        promo["from_stack"],
    ) == ("promote", "1.0.0", "0.9.1", 0, 5, "staging")
    assert promo["gates"] and all(g["ok"] is not False for g in promo["gates"])
    assert set(ledger.releases()["triage"]) == {"0.9.1", "1.0.0"}

    # healthy metrics: the canary advances one step, only the service's traffic changes
    result = cli(
        "rollout",
        "production",
        "-C",
        str(team),
        "--metrics-file",
        str(evidence / "metrics-healthy.json"),
        "--skip-bake",
        "--assume-deployed",
    )
    assert result.exit_code == 0, result.output
    assert stack_text(team) == promoted.replace("canary_percent: 5\n", "canary_percent: 25\n")
    advanced = run_plan(team, "production")
    assert split(advanced) == [(stable_rev, 75, None), (canary_rev, 25, "canary")]
    assert list(diff_plans(after, advanced).updates) == [service(advanced).urn]
    last = ledger.decisions("triage")[-1]
    assert (last["action"], last["release"], last["stable"], last["percent"], last["to_percent"]) == (
        "advance",
        "1.0.0",
        "0.9.1",
        5,
        25,
    )
    assert status_of(team, "production")["state"] == "canary 25%"

    # the operator rolls it back: all traffic on 0.9.1's revision, one update of the service's traffic
    result = cli("rollback", "production", "-C", str(team), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["diff"]["update"] == {service(advanced).urn: ["traffics"]}
    assert stack_text(team) == promoted.replace("canary_percent: 5\n", "canary_percent: 0\n")
    assert split(run_plan(team, "production")) == [(stable_rev, 100, None)]
    last = ledger.decisions("triage")[-1]
    assert (last["action"], last["percent"], last["to_percent"], last["reason"]) == (
        "rollback",
        25,
        0,
        "rolled back by the operator",
    )
    assert [d["action"] for d in ledger.decisions("triage")] == ["promote", "advance", "rollback"]
    s = status_of(team, "production")
    assert (s["state"], s["stable_revision"], s["traffic"]) == (
        "rolled back",
        stable_rev,
        [{"revision": stable_rev, "percent": 100, "tag": None}],
    )


OLD_SHAPE = """\
config:
  gcp:project: acme-triage-dev
  gcp:region: europe-west4
  triage-team:agent:
    release:
      version: 0.9.1
      image: europe-docker.pkg.dev/acme-triage/agents/triage@sha256:3f2b1f0f5c7b8e4c3a6f8f4e2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c
"""


def test_a_stack_without_agents_says_which_keys_it_looked_for(team):
    path = team / "stacks" / "Pulumi.dev.yaml"
    path.write_text(OLD_SHAPE)
    message = (
        f"stack 'dev' has no agents in {path}: looked for triage-team:agents and agents (triage-team is the "
        "project's name in Pulumi.yaml, its config namespace); keys found: gcp:project, gcp:region, "
        "triage-team:agent; define each agent as triage-team:agents.<name>"
    )
    with pytest.raises(flow.ReleaseError) as err:
        flow.load_state(team, "dev")
    assert (str(err.value), err.value.code) == (message, 2)
    result = cli("status", "dev", "-C", str(team))
    assert result.exit_code == 2
    assert " ".join(message.split()) in " ".join(result.output.split())


def test_the_namespace_is_the_project_name_in_pulumi_yaml(team):
    """Renaming the project moves its config namespace: the triage-team: keys are no longer its own."""
    manifest = team / "Pulumi.yaml"
    manifest.write_text(manifest.read_text().replace("name: triage-team", "name: triage"))
    with pytest.raises(flow.ReleaseError) as err:
        flow.load_state(team, "staging")
    assert str(err.value).startswith(
        f"stack 'staging' has no agents in {team / 'stacks' / 'Pulumi.staging.yaml'}: looked for triage:agents and "
        "agents (triage is the project's name in Pulumi.yaml, its config namespace); keys found: gcp:project, "
        "gcp:region, triage-team:environment, triage-team:labels, triage-team:agents, "
    )
