"""Every example is a runnable Pulumi project: run it under the offline engine and check
what it would deploy (resource inventory and key values)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections import Counter

import pytest

from agentstage.engine import ProgramError, run_plan
from tests.conftest import ROOT, write_stack

EXAMPLE = ROOT / "examples" / "team-stack"
SERVICE = "gcp:cloudrunv2/service:Service"


def team_config(stack: str) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load((EXAMPLE / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


@pytest.mark.parametrize(
    "stack, project, version, min_instances",
    [
        ("staging", "acme-triage-staging", "1-0-0", 0),
        ("production", "acme-triage-prod", "0-9-1", 1),
    ],
)
def test_team_stack_inventory_and_values(stack, project, version, min_instances):
    plan = run_plan(EXAMPLE, stack)
    inventory = Counter(r.type for r in plan.resources if r.custom)
    assert inventory == {
        "gcp:serviceaccount/account:Account": 1,
        "gcp:projects/iAMMember:IAMMember": 6,  # the four base roles, modelarmor.user, its flags' reader
        "gcp:secretmanager/secretIamMember:SecretIamMember": 1,
        "gcp:cloudrunv2/service:Service": 1,
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": 1,
        "gcp:modelarmor/template:Template": 1,
        "gcp:monitoring/notificationChannel:NotificationChannel": 1,
        "gcp:monitoring/alertPolicy:AlertPolicy": 4,
        "gcp:billing/budget:Budget": 1,
        "gcp:pubsub/topic:Topic": 2,  # the budget's and the team's own tickets topic
        "gcp:pubsub/subscription:Subscription": 1,
        "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": 1,
        "gcp:parametermanager/parameter:Parameter": 1,
        "gcp:parametermanager/parameterVersion:ParameterVersion": 1,
    }
    svc = plan.find(SERVICE, "triage-service").inputs
    assert svc["name"] == "triage-agent" and svc["location"] == "europe-west4"
    assert re.fullmatch(rf"triage-agent-{version}-[0-9a-f]{{8}}", svc["template"]["revision"])
    assert svc["template"]["serviceAccount"] == f"triage-{stack}@{project}.iam.gserviceaccount.com"
    assert svc["labels"] == {
        "team": "triage",
        "environment": stack,
        "agent": "triage",
        "release": version,
        "managed-by": "agentstage",
    }
    assert svc["scaling"]["minInstanceCount"] == min_instances
    assert svc["deletionProtection"] is (stack == "production")
    envs = {e["name"]: e.get("value") for e in svc["template"]["containers"][0]["envs"]}
    assert envs["OTEL_SERVICE_NAME"] == "triage-agent" and envs["MODEL_ARMOR_TEMPLATE"].startswith(
        f"projects/{project}/locations/europe-west4/templates/"
    )
    assert all(
        "triage-agent" in json.dumps(a.inputs["conditions"])
        for a in plan.by_type("gcp:monitoring/alertPolicy:AlertPolicy")
    )
    assert plan.outputs["revision"] == svc["template"]["revision"] and plan.outputs["stable_revision"] is None
    assert plan.outputs["url"].startswith("https://triage-agent-")
    # the observed-state fallback reads the live split from this output after `pulumi up`
    assert "triage-agent" in plan.outputs["traffic"]


@pytest.mark.parametrize("percent", [5, 0])
def test_team_stack_splits_traffic_like_the_platform(tmp_path, percent):
    """stable, stable_revision and rollout.canary_percent reach CloudRunAgent: a canary beside the
    recorded stable revision, or all traffic on it once rolled back."""
    config = team_config("production")
    agent = config["triage-team:agents"]["triage"]
    agent["stable"] = agent["release"]
    agent["stable_revision"] = "triage-agent-0-9-1-5c0ffee1"
    agent["release"] = team_config("staging")["triage-team:agents"]["triage"]["release"]
    agent["rollout"]["canary_percent"] = percent
    plan = run_plan(EXAMPLE, "production", config_file=write_stack(tmp_path / "canary.yaml", config))
    svc = plan.find(SERVICE, "triage-service").inputs
    release = svc["template"]["revision"]
    assert release.startswith("triage-agent-1-0-0-")
    traffic = [(t["revision"], t["percent"], t.get("tag")) for t in svc["traffics"]]
    if percent:
        assert traffic == [("triage-agent-0-9-1-5c0ffee1", 95, None), (release, 5, "canary")]
    else:
        assert traffic == [("triage-agent-0-9-1-5c0ffee1", 100, None)]
    assert plan.outputs["stable_revision"] == "triage-agent-0-9-1-5c0ffee1"


def test_team_stack_config_errors_name_the_team_key(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(EXAMPLE, project)
    config = {
        "gcp:project": "acme-triage-dev",
        "triage-team:environment": "dev",
        "triage-team:agents": {
            "triage": {
                "release": {"version": "0.9.1", "image": "triage:latest"},
                "scaling": {"max_instances": 0},
            },
        },
    }
    with pytest.raises(ProgramError) as err:
        run_plan(project, "dev", config_file=write_stack(project / "bad.yaml", config))
    assert err.value.config_issues == [
        'triage-team:agents.triage.release.image: "triage:latest" is not pinned by digest; use <repo>/<image>@sha256:<64 hex>',
        "triage-team:agents.triage.scaling.max_instances: 0 is out of range; allowed: 1..1000",
    ]


def test_team_stack_runs_its_one_agent(tmp_path):
    config = team_config("staging")
    config["triage-team:agents"]["intake"] = copy.deepcopy(config["triage-team:agents"]["triage"])
    with pytest.raises(ProgramError) as err:
        run_plan(EXAMPLE, "staging", config_file=write_stack(tmp_path / "two.yaml", config))
    assert err.value.config_issues == [
        "triage-team:agents: this program deploys the agent 'triage' alone; found intake, triage"
    ]
