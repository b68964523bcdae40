"""``agentstage check``: reference stacks, risky production configs, report formats (SARIF
validated against the SARIF 2.1.0 schema), policy config handling and exit codes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from tests.conftest import ROOT, load_stack, write_stack

runner = CliRunner(env={"COLUMNS": "250"})
SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-2.1.0.json").read_text())
PRODUCTION_CONFIG = ROOT / "policies" / "agent_guard" / "config" / "production.json"


def invoke(*args: str):
    return runner.invoke(app, ["check", *args, "-C", str(ROOT)], catch_exceptions=False, terminal_width=250)


def risky(tmp_path: Path, change, stack: str = "production") -> Path:
    config = copy.deepcopy(load_stack(stack))
    change(config["agent-platform:agents"]["support-bot"])
    return write_stack(tmp_path / f"Pulumi.{stack}-risky.yaml", config)


# --- the reference stacks ---------------------------------------------------------------


def test_production_has_no_mandatory_violation() -> None:
    result = invoke("production", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert report["summary"]["mandatory"] == 0
    assert report["policy_pack"] == {
        "name": "agent_guard",
        "version": "0.1.0",
        "config": "policies/agent_guard/config/production.json",
    }
    assert {p["enforcement"] for p in report["policies"]} == {"mandatory"}


def test_staging_is_advisory() -> None:
    result = invoke("staging", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert {p["enforcement"] for p in report["policies"]} == {"advisory"}
    assert all(v["enforcement"] == "advisory" for v in report["violations"])


# --- risky production configs -----------------------------------------------------------

RISKY = {
    "public invoker": (lambda a: a.update(invokers=["allUsers"]), "no-public-invoker", "support-bot-invoker-allusers"),
    "owner role": (lambda a: a.update(roles=["roles/owner"]), "no-basic-roles", "support-bot-role-owner"),
    "plain-text token in env": (
        lambda a: a["env"].update(CRM_API_TOKEN="tok-123"),
        "secrets-in-secret-manager",
        "support-bot-service",
    ),
    "max instances above the cap": (
        lambda a: a["scaling"].update(max_instances=500),
        "max-instances-capped",
        "support-bot-service",
    ),
    "ingress from the internet": (
        # the load balancer and its rate limit need ingress internal-and-cloud-load-balancing: drop them too
        lambda a: (a.update(ingress="all"), a.pop("load_balancer"), a.pop("rate_limit")),
        "cloud-run-ingress-restricted",
        "support-bot-service",
    ),
    "canary starting at 25%": (
        lambda a: a["rollout"].update(steps=[25, 50, 100], canary_percent=25),
        "canary-first-step",
        "support-bot-service",
    ),
    "scaled to zero": (
        lambda a: a["scaling"].update(min_instances=0),
        "min-instances-production",
        "support-bot-service",
    ),
    "project-wide secret access": (
        lambda a: a.update(roles=["roles/secretmanager.secretAccessor"]),
        "secret-accessor-per-secret",
        "support-bot-role-secretmanager-secretAccessor",
    ),
}


@pytest.mark.parametrize("case", list(RISKY))
def test_risky_production_config_fails_with_the_policy_named(tmp_path, case) -> None:
    change, policy, resource = RISKY[case]
    result = invoke("production", "--config-file", str(risky(tmp_path, change)), "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert [(v["policy"], v["enforcement"], v["resource_name"]) for v in report["violations"]] == [
        (policy, "mandatory", resource)
    ]


def test_unpinned_image_is_rejected_before_the_policies_run(tmp_path) -> None:
    """The stack config schema already refuses a tag (exit 2); the image-pinned-by-digest rule
    itself is exercised with a mutated resource through the Analyzer protocol in
    test_policy_rules.py::test_image_not_pinned_by_digest."""
    path = risky(tmp_path, lambda a: a["release"].update(image="us-docker.pkg.dev/acme/agents/support-bot:1.4.0"))
    result = invoke("production", "--config-file", str(path))
    assert result.exit_code == 2
    assert (
        'agent-platform:agents.support-bot.release.image: "us-docker.pkg.dev/acme/agents/support-bot:1.4.0" '
        "is not pinned by digest; use <repo>/<image>@sha256:<64 hex>"
    ) in result.stderr


def test_text_report_groups_by_resource_and_ends_with_a_summary(tmp_path) -> None:
    path = risky(tmp_path, lambda a: (a.update(invokers=["allUsers"]), a["env"].update(CRM_API_TOKEN="x")))
    result = invoke("production", "--config-file", str(path))
    assert result.exit_code == 1
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    service = lines.index("support-bot-service (gcp:cloudrunv2/service:Service)")
    assert lines[service + 1].startswith("  mandatory critical secrets-in-secret-manager: CRM_API_TOKEN is a plain")
    invoker = lines.index("support-bot-invoker-allusers (gcp:cloudrunv2/serviceIamMember:ServiceIamMember)")
    assert lines[invoker + 1].startswith("  mandatory critical no-public-invoker: grants roles/run.invoker to allUsers")
    assert re.fullmatch(
        r"2 violations \(2 mandatory, 0 advisory\) in \d+ resources against \d+ policies: FAILED", lines[-1]
    )


def test_production_stack_with_the_staging_policy_config_passes(tmp_path) -> None:
    path = risky(tmp_path, lambda a: a.update(invokers=["allUsers"]))
    staging = ROOT / "policies" / "agent_guard" / "config" / "staging.json"
    result = invoke("production", "--config-file", str(path), "--policy-config", str(staging), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(v["policy"], v["enforcement"]) for v in report["violations"]] == [("no-public-invoker", "advisory")]


# --- SARIF ------------------------------------------------------------------------------


def test_sarif_is_valid_and_locates_violations_in_the_stack_config(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    path = risky(tmp_path, lambda a: a.update(roles=["roles/owner"]))
    out = tmp_path / "check.sarif"
    result = invoke("production", "--config-file", str(path), "--format", "sarif", "--output", str(out))
    assert result.exit_code == 1
    summary = re.fullmatch(
        r"1 violation \(1 mandatory, 0 advisory\) in \d+ resources against (\d+) policies: FAILED",
        result.stdout.strip(),
    )
    assert summary, result.stdout
    sarif = json.loads(out.read_text())
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert len(rules) == int(summary.group(1))
    rule = rules[run["results"][0]["ruleIndex"]]
    assert rule["id"] == "no-basic-roles"
    assert rule["properties"]["security-severity"] == "9.5"
    assert "How to fix:" in rule["help"]["text"] and "Checkov (CKV_GCP_115-117)" in rule["help"]["text"]
    (result_,) = run["results"]
    assert result_["level"] == "error"
    assert result_["ruleId"] == "no-basic-roles"
    location = result_["locations"][0]
    lines = path.read_text().splitlines()
    line = location["physicalLocation"]["region"]["startLine"]
    assert lines[line - 1].strip() == "support-bot:"  # the agent's entry in the stack config
    assert location["logicalLocations"][0]["fullyQualifiedName"].endswith("::support-bot-role-owner")


def test_sarif_of_staging_maps_advisory_to_warning(tmp_path) -> None:
    path = risky(tmp_path, lambda a: a.update(invokers=["allUsers"]), stack="staging")
    result = invoke("staging", "--config-file", str(path), "--format", "sarif")
    assert result.exit_code == 0
    sarif = json.loads(result.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    assert [(r["ruleId"], r["level"]) for r in sarif["runs"][0]["results"]] == [("no-public-invoker", "warning")]


# --- policy config ----------------------------------------------------------------------


def _config(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
        (
            {"all": "strict"},
            "parsing enforcement level for 'all': 'strict' is not a valid enforcement level; "
            "allowed: advisory, mandatory, remediate, disabled",
        ),
        ({"no-basic-roles": 3}, "parsing 'no-basic-roles': 3 is not a valid value; must be a string or object"),
    ],
)
def test_unreadable_policy_config(tmp_path, data, message) -> None:
    path = _config(tmp_path, data)
    result = invoke("production", "--policy-config", str(path))
    assert result.exit_code == 2
    assert f"error: policy config {path}: {message}" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "data, issue",
    [
        (
            {"no-public-invokers": "mandatory"},
            "no-public-invokers: unknown policy; policies: a2a-agent-card, agent-alert-policies,",
        ),
        (
            {"max-instances-capped": {"maxInstances": "many"}},
            "max-instances-capped: maxInstances: 'many' is not of type 'integer'",
        ),
        (
            {"max-instances-capped": {"maxInstances": 0}},
            "max-instances-capped: maxInstances: 0 is less than the minimum of 1",
        ),
        (
            {"max-instances-capped": {"maxInstance": 10}},
            "max-instances-capped: maxInstance: unknown property; properties of this policy: maxInstances",
        ),
    ],
)
def test_policy_config_that_does_not_fit_the_pack(tmp_path, data, issue) -> None:
    result = invoke("production", "--policy-config", str(_config(tmp_path, data)))
    assert result.exit_code == 2
    assert issue in result.stderr


def test_stack_without_a_policy_config_runs_the_defaults(project: Path) -> None:
    config = copy.deepcopy(load_stack("staging"))
    write_stack(project / "stacks" / "Pulumi.dev.yaml", config)
    result = runner.invoke(app, ["check", "dev", "-C", str(project), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "note: no policy config for stack 'dev'" in result.stderr
    report = json.loads(result.stdout)
    assert report["policy_pack"]["config"] is None
    assert {p["enforcement"] for p in report["policies"]} == {"advisory"}
    assert {p["name"]: p["config"] for p in report["policies"]}["max-instances-capped"] == {"maxInstances": 100}
