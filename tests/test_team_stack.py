"""examples/team-stack as a team uses it: its own resource (the tickets topic the agent reads
through its own subscription, granted to the agent alone), its feature flags, and the offline
preview and policy check of both stacks, also as a first preview sees them (``--new-stack``).

The Pub/Sub rules checked here are quoted from the Pub/Sub v1 discovery document shipped in
google-api-python-client (``pubsub.v1.json``: Topic.name, Subscription.name,
ackDeadlineSeconds, messageRetentionDuration, expirationPolicy, ExpirationPolicy.ttl)."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.diff import diff_plans
from agentstage.engine import run_plan
from agentstage.flags import FLAGS_ENV, version_id
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "team-stack"
SERVICE = "gcp:cloudrunv2/service:Service"
TOPIC = "gcp:pubsub/topic:Topic"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
SUB_MEMBER = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
PROJECTS = {"staging": "acme-triage-staging", "production": "acme-triage-prod"}
#: Topic.name / Subscription.name: "must start with a letter, and contain only letters, numbers,
#: dashes, underscores, periods, tildes, plus or percent signs ... between 3 and 255 characters
#: ... must not start with "goog"".
PUBSUB_NAME = re.compile(r"(?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
runner = CliRunner()

STACKS = ["staging", "production"]


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def _seconds(duration: str) -> float:
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?s", duration), duration
    return float(duration[:-1])


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_agent_is_granted_on_the_tickets_topic(stack):
    plan = run_plan(EXAMPLE, stack)
    project = PROJECTS[stack]
    sa = plan.find(SERVICE, "triage-service").inputs["template"]["serviceAccount"]
    assert sa == f"triage-{stack}@{project}.iam.gserviceaccount.com"
    topic = plan.find(TOPIC, "tickets").inputs
    (sub,) = plan.by_type(SUBSCRIPTION)
    assert sub.inputs["topic"] == f"projects/{project}/topics/{topic['name']}"
    # every IAM grant that concerns Pub/Sub, whatever its scope
    pubsub_grants = [
        r
        for r in plan.resources
        if r.custom
        and "IAM" in r.type
        and ("pubsub" in r.type or str(r.inputs.get("role", "")).startswith("roles/pubsub"))
    ]
    (grant,) = pubsub_grants
    assert (grant.type, grant.inputs) == (
        SUB_MEMBER,
        {
            "project": project,
            "subscription": sub.inputs["name"],
            "role": "roles/pubsub.subscriber",
            "member": f"serviceAccount:{sa}",
        },
    )
    assert not plan.by_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert not plan.by_type("gcp:pubsub/topicIAMBinding:TopicIAMBinding")
    assert not plan.by_type("gcp:pubsub/topicIAMPolicy:TopicIAMPolicy")
    # the service waits for the grant: it never starts unable to read its inbox
    assert grant.urn in plan.find(SERVICE, "triage-service").dependencies


@pytest.mark.parametrize("stack", STACKS)
def test_the_tickets_subscription_follows_the_pubsub_rules(stack):
    plan = run_plan(EXAMPLE, stack)
    project = PROJECTS[stack]
    topic = plan.find(TOPIC, "tickets").inputs
    sub = plan.find(SUBSCRIPTION, "tickets-inbox").inputs
    assert (topic["name"], sub["name"]) == ("triage-agent-tickets", "triage-agent-tickets-inbox")
    assert PUBSUB_NAME.fullmatch(topic["name"]) and PUBSUB_NAME.fullmatch(sub["name"])
    # "The minimum custom deadline you can specify is 10 seconds. The maximum ... is 600 seconds"
    assert 10 <= sub["ackDeadlineSeconds"] <= 600
    # "Cannot be more than 31 days or less than 10 minutes."
    assert 600 <= _seconds(sub["messageRetentionDuration"]) <= 31 * 86400
    # "If expiration_policy is set, but expiration_policy.ttl is not set, the subscription never
    # expires" (unset, the default policy deletes it after 31 days idle)
    assert sub["expirationPolicy"] == {"ttl": ""}
    labels = {"managed-by": "agentstage", "environment": stack, "team": "triage"}
    assert topic["labels"] == sub["labels"] == labels  # not the release label: releases leave them alone
    envs = {
        e["name"]: e.get("value")
        for e in plan.find(SERVICE, "triage-service").inputs["template"]["containers"][0]["envs"]
    }
    assert envs["TICKETS_SUBSCRIPTION"] == f"projects/{project}/subscriptions/{sub['name']}"
    assert plan.outputs["tickets_topic"] == f"projects/{project}/topics/triage-agent-tickets"
    assert plan.outputs["tickets_subscription"] == "triage-agent-tickets-inbox"


@pytest.mark.parametrize("stack", STACKS)
def test_the_agent_reads_its_flags_from_its_own_parameter(stack):
    plan = run_plan(EXAMPLE, stack)
    project = PROJECTS[stack]
    parameter = plan.find("gcp:parametermanager/parameter:Parameter", "triage-flags-parameter").inputs
    version = plan.find("gcp:parametermanager/parameterVersion:ParameterVersion", "triage-flags-version").inputs
    assert parameter["parameterId"] == f"triage-{stack}-flags" and parameter["format"] == "JSON"
    # the payload is marked sensitive by the provider; its id is derived from it
    assert version["parameterVersionId"] == version_id({"auto_close": False})
    envs = {
        e["name"]: e.get("value")
        for e in plan.find(SERVICE, "triage-service").inputs["template"]["containers"][0]["envs"]
    }
    assert envs[FLAGS_ENV] == f"projects/{project}/locations/global/parameters/triage-{stack}-flags"
    reader = plan.find("gcp:projects/iAMMember:IAMMember", "triage-flags-reader").inputs
    assert reader["member"] == f"serviceAccount:triage-{stack}@{project}.iam.gserviceaccount.com"
    assert f"/parameters/triage-{stack}-flags" in reader["condition"]["expression"]


def test_a_flag_flip_is_one_new_parameter_version_and_no_new_revision(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(EXAMPLE, project)
    before = run_plan(project, "staging")
    result = cli("flags", "set", "staging", "--agent", "triage", "auto_close=on", "-C", str(project))
    assert result.exit_code == 0, result.output
    assert "triage: auto_close=on; one new parameter version" in " ".join(result.output.split())
    assert "      features:\n        auto_close: true\n" in (project / "stacks" / "Pulumi.staging.yaml").read_text()
    after = run_plan(project, "staging")
    diff = diff_plans(before, after)
    version = after.find("gcp:parametermanager/parameterVersion:ParameterVersion", "triage-flags-version")
    assert (diff.creates, diff.deletes, list(diff.updates)) == ([], [], [version.urn])
    svc = "triage-service"
    assert before.find(SERVICE, svc).inputs["template"] == after.find(SERVICE, svc).inputs["template"]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("new_stack", [False, True], ids=["known", "new-stack"])
def test_check_passes_on_both_stacks(stack, new_stack):
    args = ["check", stack, "-C", str(EXAMPLE), "--format", "json"] + (["--new-stack"] if new_stack else [])
    result = cli(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert (report["project"], report["stack"], report["new_stack"], report["passed"]) == (
        "triage-team",
        stack,
        new_stack,
        True,
    )
    assert report["violations"] == []
    assert report["summary"]["resources"] == 32


@pytest.mark.parametrize("stack", STACKS)
def test_preview_lists_the_team_resources(stack):
    result = cli("preview", stack, "-C", str(EXAMPLE), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    names = {(r["type"], r["name"]) for r in plan["resources"] if r["custom"]}
    assert {
        (TOPIC, "tickets"),
        (SUBSCRIPTION, "tickets-inbox"),
        (SUB_MEMBER, "tickets-inbox-subscriber"),
        ("gcp:parametermanager/parameter:Parameter", "triage-flags-parameter"),
        (SERVICE, "triage-service"),
        ("gcp:billing/budget:Budget", "budget-budget"),
        ("gcp:modelarmor/template:Template", "guardrails-template"),
    } <= names
    assert len(names) == 23


def walkthrough() -> list[str]:
    """The commands of docs/team-stack.md's walkthrough (its first bash block)."""
    text = (ROOT / "docs" / "team-stack.md").read_text()
    return re.search(r"## Walkthrough.*?```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()


def test_the_doc_walkthrough_runs_and_never_touches_the_team_topic(tmp_path, monkeypatch):
    lines = walkthrough()
    assert lines[0] == "cp -r examples /tmp/team-demo && cd /tmp/team-demo/team-stack"
    demo = tmp_path / "team-demo"
    shutil.copytree(ROOT / "examples", demo, ignore=shutil.ignore_patterns(".agentstage", "__pycache__"))
    project = demo / "team-stack"
    monkeypatch.chdir(project)
    monkeypatch.setenv("COLUMNS", "240")
    before = {s: run_plan(project, s) for s in STACKS}
    outputs = []
    for line in lines[1:]:
        assert line.startswith("agentstage ")
        result = cli(*shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)
        outputs.append(" ".join(result.output.split()))
    assert len(outputs) == 9
    preview, check, check_new, flags, gate, promote, rollout, rollback, status = outputs
    assert "23 resources" in preview and "roles/pubsub.subscriber" in preview
    assert "0 violations (0 mandatory, 0 advisory)" in check and "0 violations (0 mandatory, 0 advisory)" in check_new
    assert "triage: auto_close=on; one new parameter version" in flags
    assert "all gates passed" in gate and "all gates passed" in promote
    assert "promoted staging -> production: triage 1.0.0 at 5%" in promote
    assert "triage 1.0.0 at 5% (stable 0.9.1): advance" in rollout and "25%" in rollout
    assert "canary_percent: 0\n" in (project / "stacks" / "Pulumi.production.yaml").read_text()
    assert "rolled back" in status
    team_own = {
        r.urn for plan in before.values() for r in plan.resources if r.type in (TOPIC, SUBSCRIPTION, SUB_MEMBER)
    }
    for stack in STACKS:
        diff = diff_plans(before[stack], run_plan(project, stack))
        changed = set(diff.creates) | set(diff.deletes) | set(diff.updates)
        assert changed and not changed & team_own
