"""``check --new-stack``: the plan of a first ``pulumi preview`` of a new stack, where the
computed outputs of the resources being created are unknown.

1. The engine: with ``new_stack=True`` every resource echoes its inputs with no id, an input
   computed from an output is ``[unknown]`` in the plan and the unknown sentinel on the wire
   (a whole value, or one element of a list); invokes and reads of existing resources still
   answer.
2. The CLI contract of ``agentstage check --new-stack`` on a small project whose verdict
   depends on an unknown member: exit codes, the JSON, text and SARIF reports.
3. Equivalence: every test config gives the same mandatory verdicts with and without
   ``--new-stack``: no rule judges differently, or stops judging, when the computed outputs
   are unknown, as they are in the first ``pulumi preview`` of a new stack.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from pulumi.runtime import rpc
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.commands.check import NEW_STACK_NOTE
from agentstage.engine import Plan, run_plan
from agentstage.fixtures import project_number
from agentstage.policy import PACK_DIR, run_check
from tests.conftest import ROOT, load_stack, write_stack
from tests.test_policy_check_cli import RISKY

runner = CliRunner(env={"COLUMNS": "250"})
SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-2.1.0.json").read_text())
#: The unknown sentinel of the Pulumi wire protocol (a string in place of any value), the
#: SDK's own; tests/test_sdk_contract.py pins its value.
SENTINEL = rpc.UNKNOWN
ACCOUNT = "gcp:serviceaccount/account:Account"
MEMBER = "gcp:projects/iAMMember:IAMMember"
BINDING = "gcp:projects/iAMBinding:IAMBinding"

# --- a small project whose verdict depends on unknown members ----------------------------

PROGRAM = """
import pulumi
import pulumi_gcp as gcp

project = gcp.organizations.get_project()
account = gcp.serviceaccount.Account("agent", account_id="agent", display_name="agent")
gcp.projects.IAMMember("agent-logs", project="acme-dev", role="roles/logging.logWriter",
                       member=account.email.apply(lambda email: f"serviceAccount:{email}"))
gcp.projects.IAMBinding("readers", project="acme-dev", role="roles/logging.viewer",
                        members=["group:ops@acme.com", account.member])
gcp.projects.IAMMember("agent-traces", project="acme-dev", role="roles/cloudtrace.agent",
                       member=account.urn.apply(lambda _: "serviceAccount:agent@acme-dev.iam.gserviceaccount.com"))
gcp.projects.IAMMember("notifier", project="acme-dev", role="roles/pubsub.publisher",
                       member=f"serviceAccount:service-{project.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com")
existing = gcp.serviceaccount.Account.get("existing", "projects/acme-dev/serviceAccounts/ops@acme-dev.iam.gserviceaccount.com",
                                          account_id="ops")
pulumi.export("existing", existing.email)
pulumi.export("email", account.email)
pulumi.export("project_number", project.number)
"""
POLICY_CONFIG = {
    "all": "mandatory",
    "allowed-member-domains": {"domains": ["acme.com"]},
    "model-armor-guardrails": "disabled",  # stack-wide rules the small project does not aim at
    "billing-budget": "disabled",
}
NUMBER = project_number("acme-dev")
EMAIL = "agent@acme-dev.iam.gserviceaccount.com"
_NOT_JUDGED = (
    "unknown during this preview (computed from an output of a resource this update creates or changes); "
    "compute the member from inputs so that it is known at plan time (a service account's email is "
    "<account_id>@<project>.iam.gserviceaccount.com)."
)
NEW_STACK_VIOLATIONS = [  # in report order: resources by URN
    (
        "allowed-member-domains",
        "mandatory",
        "readers",
        "cannot judge whether the member granted roles/logging.viewer on the project is from an allowed domain: "
        f"members[1] is {_NOT_JUDGED}",
    ),
    (
        "allowed-member-domains",
        "mandatory",
        "agent-logs",
        "cannot judge whether the member granted roles/logging.logWriter on the project is from an allowed domain: "
        f"member is {_NOT_JUDGED}",
    ),
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small project: ``Pulumi.yaml``, the program, stack ``dev`` and a policy config."""
    root = tmp_path_factory.mktemp("small")
    (root / "Pulumi.yaml").write_text("name: small\nruntime: python\n")
    (root / "__main__.py").write_text(PROGRAM)
    write_stack(root / "Pulumi.dev.yaml", {"gcp:project": "acme-dev", "gcp:region": "europe-west4"})
    (root / "policy.json").write_text(json.dumps(POLICY_CONFIG))
    return root


def check(small: Path, *args: str):
    return runner.invoke(
        app,
        ["check", "dev", "-C", str(small), "--policy-config", str(small / "policy.json"), *args],
        catch_exceptions=False,
        terminal_width=250,
    )


# --- the engine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new(small: Path) -> Plan:
    return run_plan(small, "dev", new_stack=True)


def test_new_stack_resources_echo_their_inputs_with_no_id(new: Plan) -> None:
    assert new.new_stack is True and new.to_json()["new_stack"] is True
    account = new.find(ACCOUNT, "agent")
    assert account.id is None
    assert account.outputs == account.inputs == {"accountId": "agent", "displayName": "agent"}
    assert all(r.id is None and r.outputs == r.inputs for r in new.resources if r.custom)


def test_inputs_computed_from_outputs_are_unknown_in_the_plan_and_on_the_wire(new: Plan) -> None:
    logs = new.find(MEMBER, "agent-logs")
    assert logs.inputs["member"] == "[unknown]"
    assert logs.wire_inputs["member"] == SENTINEL
    assert logs.to_json()["inputs"]["member"] == "[unknown]"
    readers = new.find(BINDING, "readers")  # one unknown element: the list keeps its length
    assert readers.inputs["members"] == ["group:ops@acme.com", "[unknown]"]
    assert list(readers.wire_inputs["members"]) == ["group:ops@acme.com", SENTINEL]
    assert new.outputs == {
        "email": "[unknown]",
        "existing": "ops@acme-dev.iam.gserviceaccount.com",
        "project_number": NUMBER,
    }


def test_a_value_computed_from_inputs_stays_known_and_keeps_its_dependency(new: Plan) -> None:
    """As docs/policies.md advises: derived from the resource's URN (known during a preview)."""
    traces = new.find(MEMBER, "agent-traces")
    assert traces.inputs["member"] == f"serviceAccount:{EMAIL}"
    assert traces.property_dependencies["member"] == [new.find(ACCOUNT, "agent").urn]


def test_invokes_and_reads_still_answer_on_a_new_stack(new: Plan) -> None:
    """A preview runs invokes and reads existing resources (the exported email of ``existing``
    is checked above)."""
    notifier = new.find(MEMBER, "notifier").inputs["member"]
    assert notifier == f"serviceAccount:service-{NUMBER}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"


def test_the_default_plan_fills_the_same_values_in(small: Path) -> None:
    plan = run_plan(small, "dev")
    assert plan.new_stack is False and plan.to_json()["new_stack"] is False
    assert plan.find(ACCOUNT, "agent").outputs["email"] == EMAIL
    assert plan.find(MEMBER, "agent-logs").inputs["member"] == f"serviceAccount:{EMAIL}"
    assert plan.find(BINDING, "readers").inputs["members"] == ["group:ops@acme.com", f"serviceAccount:{EMAIL}"]
    assert plan.outputs == {
        "email": EMAIL,
        "existing": "ops@acme-dev.iam.gserviceaccount.com",
        "project_number": NUMBER,
    }


# --- the CLI contract -------------------------------------------------------------------


def test_check_passes_when_the_outputs_are_known(small: Path) -> None:
    result = check(small, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["new_stack"] is False and report["passed"] is True and report["violations"] == []


def test_check_new_stack_reports_what_it_cannot_judge_and_exits_1(small: Path) -> None:
    result = check(small, "--new-stack", "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["new_stack"] is True and report["passed"] is False
    assert list(report)[:5] == ["version", "project", "stack", "stack_config", "new_stack"]
    assert [(v["policy"], v["enforcement"], v["resource_name"], v["message"]) for v in report["violations"]] == (
        NEW_STACK_VIOLATIONS
    )


def test_check_new_stack_text_report_says_so(small: Path) -> None:
    result = check(small, "--new-stack")
    assert result.exit_code == 1
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0] == NEW_STACK_NOTE
    logs = lines.index("agent-logs (gcp:projects/iAMMember:IAMMember)")
    assert lines[logs + 1] == f"  mandatory high     allowed-member-domains: {NEW_STACK_VIOLATIONS[1][3]}"
    assert lines[-1].startswith("2 violations (2 mandatory, 0 advisory) in ") and lines[-1].endswith(": FAILED")
    assert NEW_STACK_NOTE not in check(small).stdout


def test_check_new_stack_summary_with_output_file(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = check(small, "--new-stack", "--format", "json", "--output", str(out))
    assert result.exit_code == 1
    assert result.stdout.strip().endswith(": FAILED (new stack)")
    assert json.loads(out.read_text())["new_stack"] is True


def test_check_new_stack_sarif_is_its_own_category(small: Path) -> None:
    result = check(small, "--new-stack", "--format", "sarif")
    assert result.exit_code == 1
    sarif = json.loads(result.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    run = sarif["runs"][0]
    assert run["properties"] == {"newStack": True}
    assert run["automationDetails"] == {"id": "agentstage-check/dev/new-stack/"}
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [("allowed-member-domains", "error")] * 2
    default = json.loads(check(small, "--format", "sarif").stdout)["runs"][0]
    assert default["properties"] == {"newStack": False}
    assert default["automationDetails"] == {"id": "agentstage-check/dev/"}


def test_check_help_explains_new_stack() -> None:
    result = runner.invoke(app, ["check", "--help"], terminal_width=250)
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--new-stack" in text
    assert "Plan as the first `pulumi preview` of a new stack sees it" in text


def test_run_check_new_stack(small: Path) -> None:
    report = run_check(small, "dev", policy_config=small / "policy.json", new_stack=True)
    assert [(v.policy, v.enforcement, v.resource_name, v.message) for v in report.violations] == NEW_STACK_VIOLATIONS


# --- equivalence: the same verdicts on a first preview ------------------------------------

EXAMPLES = ROOT / "examples"
PRODUCTION_POLICY = PACK_DIR / "config" / "production.json"


def _risky_config(case: str, directory: Path) -> Path:
    config = copy.deepcopy(load_stack("production"))
    RISKY[case][0](config["agent-platform:agents"]["support-bot"])
    return write_stack(directory / "Pulumi.production-risky.yaml", config)


CASES: dict[str, tuple[Path, str, str | None]] = {
    "production": (ROOT, "production", None),
    "staging": (ROOT, "staging", None),
    "examples/team-stack production": (EXAMPLES / "team-stack", "production", None),
    "examples/team-stack staging": (EXAMPLES / "team-stack", "staging", None),
    "examples/release production": (EXAMPLES / "release", "production", None),
    "examples/release staging": (EXAMPLES / "release", "staging", None),
    **{f"risky production: {case}": (ROOT, "production", case) for case in RISKY},
}


def _mandatory(project: Path, stack: str, config_file: Path | None, new_stack: bool) -> set[tuple[str, str | None]]:
    report = run_check(project, stack, config_file=config_file, policy_config=PRODUCTION_POLICY, new_stack=new_stack)
    assert {p.enforcement for p in report.policies} == {"mandatory"}
    return {(v.policy, v.urn) for v in report.violations if v.mandatory}


@pytest.mark.parametrize("case", list(CASES))
def test_new_stack_gives_the_verdicts_of_the_default_check(case: str, tmp_path: Path) -> None:
    """Each config is checked with every policy mandatory (the production policy config), so
    every policy's verdict counts: on a new stack, every (policy, resource) violation is
    the same as when the computed outputs are known, no more (a rule that cannot judge an
    unknown value) and no fewer (a rule that stopped judging)."""
    project, stack, risky = CASES[case]
    config_file = _risky_config(risky, tmp_path) if risky else None
    default = _mandatory(project, stack, config_file, new_stack=False)
    new_stack = _mandatory(project, stack, config_file, new_stack=True)
    assert new_stack == default, {
        "only on a new stack": sorted(new_stack - default, key=str),
        "only when outputs are known": sorted(default - new_stack, key=str),
    }
