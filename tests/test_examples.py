"""Every example is a runnable Pulumi project: run it under the offline engine and check
what it would deploy (resource inventory and key values)."""

from __future__ import annotations

import re

import shutil
from collections import Counter

import pytest

from agentstage.engine import ProgramError, run_plan
from tests.conftest import ROOT, write_stack

EXAMPLE = ROOT / "examples" / "team-stack"


def test_team_stack_inventory_and_values():
    plan = run_plan(EXAMPLE, "dev")
    inventory = Counter(r.type for r in plan.resources if r.custom)
    assert inventory == {
        "gcp:serviceaccount/account:Account": 1,
        "gcp:projects/iAMMember:IAMMember": 4,
        "gcp:secretmanager/secretIamMember:SecretIamMember": 1,
        "gcp:cloudrunv2/service:Service": 1,
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": 1,
    }
    svc = plan.find("gcp:cloudrunv2/service:Service", "triage-service").inputs
    assert svc["location"] == "europe-west4"
    assert re.fullmatch(r"triage-agent-0-9-1-[0-9a-f]{8}", svc["template"]["revision"])
    assert svc["template"]["serviceAccount"] == "triage-dev@acme-triage-dev.iam.gserviceaccount.com"
    assert svc["labels"]["team"] == "triage" and svc["labels"]["environment"] == "dev"
    assert plan.outputs["revision"] == svc["template"]["revision"]
    assert plan.outputs["url"].startswith("https://triage-agent-")


def test_team_stack_config_errors_name_the_team_key(tmp_path):
    project = tmp_path / "team"
    shutil.copytree(EXAMPLE, project)
    config = {
        "gcp:project": "acme-triage-dev",
        "triage-team:agent": {
            "release": {"version": "0.9.1", "image": "triage:latest"},
            "scaling": {"max_instances": 0},
        },
    }
    with pytest.raises(ProgramError) as err:
        run_plan(project, "dev", config_file=write_stack(project / "bad.yaml", config))
    assert err.value.config_issues == [
        'triage-team:agent.release.image: "triage:latest" is not pinned by digest; use <repo>/<image>@sha256:<64 hex>',
        "triage-team:agent.scaling.max_instances: 0 is out of range; allowed: 1..1000",
    ]
