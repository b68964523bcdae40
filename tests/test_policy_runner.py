"""The offline policy runner: a pack that does not start, crashes, dies or misbehaves is an
error that says so, never a pass; the CLI's engine address and environment reach the pack."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.engine import run_plan
from agentstage.policy import PolicyError, run_check
from tests.conftest import ROOT

MANIFEST = "runtime: python\nversion: 9.9.9\n"


def make_pack(root: Path, main: str, manifest: str = MANIFEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "PulumiPolicy.yaml").write_text(manifest)
    (root / "__main__.py").write_text(textwrap.dedent(main))
    return root


#: A one-rule pack whose rule runs ``BODY`` for Cloud Run services.
RULE = """
    import os, sys
    from pulumi_policy import PolicyPack, ResourceValidationPolicy, StackValidationPolicy, EnforcementLevel

    def validate(args, report):
        if args.resource_type == "gcp:cloudrunv2/service:Service":
            BODY

    PolicyPack(name="probe", enforcement_level=EnforcementLevel.MANDATORY, policies=[
        ResourceValidationPolicy(name="probe-rule", description="Checks that the probe works.", validate=validate),
    ])
"""


def rule_pack(root: Path, body: str) -> Path:
    return make_pack(root, RULE.replace("BODY", body))


@pytest.fixture(scope="module")
def plan():
    return run_plan(ROOT, "production")


def test_pack_that_fails_to_start(tmp_path, plan) -> None:
    pack = make_pack(tmp_path / "broken", "import nonexistent_module_for_the_test\n")
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", plan=plan, pack_dir=pack)
    message = str(err.value)
    assert message.startswith(f"policy pack {pack} failed to start (exit code 1)")
    assert "ModuleNotFoundError: No module named 'nonexistent_module_for_the_test'" in message


def test_rule_that_raises(tmp_path, plan) -> None:
    pack = rule_pack(tmp_path / "raises", 'raise RuntimeError("rule blew up")')
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", plan=plan, pack_dir=pack)
    message = str(err.value)
    assert message.startswith("policy pack probe crashed while analysing urn:pulumi:production::agent-platform::")
    assert "gcp:cloudrunv2/service:Service::" in message.split(": ")[0]
    assert "Exception calling application: rule blew up" in message


def test_pack_that_dies_mid_analysis(tmp_path, plan) -> None:
    pack = rule_pack(tmp_path / "dies", "os._exit(7)")
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", plan=plan, pack_dir=pack)
    assert str(err.value).startswith("policy pack probe exited (exit code 7) while analysing urn:pulumi:production::")


def test_pack_that_prints_something_else_than_its_port(tmp_path, plan) -> None:
    pack = make_pack(tmp_path / "chatty", 'print("hello from the pack")\n')
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", plan=plan, pack_dir=pack)
    assert str(err.value) == f"policy pack {pack} printed 'hello from the pack' where the Analyzer port was expected"


@pytest.mark.parametrize(
    "manifest, message",
    [
        (None, "{pack} is not a policy pack: it has no PulumiPolicy.yaml"),
        (
            "runtime: nodejs\n",
            "{pack}/PulumiPolicy.yaml: runtime is 'nodejs'; agentstage check runs Python policy packs",
        ),
    ],
)
def test_not_a_python_policy_pack(tmp_path, plan, manifest, message) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    if manifest:
        (pack / "PulumiPolicy.yaml").write_text(manifest)
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", plan=plan, pack_dir=pack)
    assert str(err.value) == message.format(pack=pack)


def test_pack_sees_the_stack_like_under_the_cli(tmp_path, plan) -> None:
    """The rule reports what the CLI hands a pack: cwd (the pack dir), the engine address
    argument, PULUMI_PROJECT/STACK/DRY_RUN and the stack config (PULUMI_CONFIG)."""
    body = (
        'import pulumi.runtime; report(" | ".join([os.path.basename(os.getcwd()), sys.argv[1].split(":")[0], '
        'os.environ["PULUMI_PROJECT"], os.environ["PULUMI_STACK"], os.environ["PULUMI_DRY_RUN"], '
        'pulumi.runtime.get_config("gcp:project"), str(args.provider.resource_type), str(args.provider.props["project"]), '
        'str(args.opts.parent).rsplit("::", 1)[1]]))'
    )
    report = run_check(ROOT, "production", plan=plan, pack_dir=rule_pack(tmp_path / "env-pack", body))
    assert report.pack_name == "probe" and report.pack_version == "9.9.9"  # PulumiPolicy.yaml wins, as with the CLI
    assert sorted({v.message for v in report.violations}) == [
        "env-pack | 127.0.0.1 | agent-platform | production | true | acme-agents-prod | pulumi:providers:gcp | "
        "acme-agents-prod | research-agent",
        "env-pack | 127.0.0.1 | agent-platform | production | true | acme-agents-prod | pulumi:providers:gcp | "
        "acme-agents-prod | support-bot",
    ]
    assert {v.enforcement for v in report.violations} == {"mandatory"} and not report.passed


def test_analyze_stack_gets_parents_and_dependencies(tmp_path, plan) -> None:
    pack = make_pack(
        tmp_path / "stack-pack",
        """
        from pulumi_policy import PolicyPack, StackValidationPolicy

        def validate(args, report):
            for r in args.resources:
                if r.resource_type == "gcp:cloudrunv2/service:Service":
                    deps = sorted(d.name for d in r.dependencies)
                    report(f"{r.name} parent={r.parent.name} deps={','.join(deps)} "
                           f"template<-{','.join(d.name for d in r.property_dependencies.get('template', []))}", r.urn)

        PolicyPack(name="stack-probe", policies=[
            StackValidationPolicy(name="stack-probe", description="Checks the stack.", validate=validate)])
    """,
    )
    report = run_check(ROOT, "production", plan=plan, pack_dir=pack)
    messages = {v.resource_name: v.message for v in report.violations}
    support = messages["support-bot-service"]
    assert support.startswith("support-bot-service parent=support-bot deps=")
    deps, template = support.split("deps=")[1].split(" template<-")
    assert "support-bot-sa" in deps.split(",") and "support-bot-sa" in template.split(",")
    assert {v.enforcement for v in report.violations} == {"advisory"} and report.passed


def test_cli_reports_a_crashed_pack_as_an_error(tmp_path) -> None:
    pack = rule_pack(tmp_path / "raises", 'raise RuntimeError("rule blew up")')
    result = CliRunner().invoke(
        app, ["check", "production", "-C", str(ROOT), "--policy-pack", str(pack)], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "error: policy pack probe crashed while analysing" in result.stderr
    assert "the policy check did not complete; nothing was checked" in result.stderr
    assert result.stdout == ""


def test_report_json_is_stable(tmp_path, plan) -> None:
    report = run_check(ROOT, "production", plan=plan)
    data = report.to_json()
    assert list(data) == [
        "version",
        "project",
        "stack",
        "stack_config",
        "policy_pack",
        "passed",
        "summary",
        "violations",
        "policies",
    ]
    assert data["version"] == 1
    assert list(data["summary"]) == ["resources", "policies", "violations", "mandatory", "advisory"]
    assert list(data["policies"][0]) == [
        "name",
        "description",
        "enforcement",
        "severity",
        "type",
        "config",
        "anchor",
        "remediation",
    ]
    assert all(p["description"].startswith("Checks that") for p in data["policies"])
    json.dumps(data)


def test_streamed_check_reports_what_a_check_of_the_finished_plan_reports(tmp_path) -> None:
    """Without a plan, run_check analyses resources while the program still registers them;
    the report must be the one a check of the finished plan gives."""
    from tests.conftest import load_stack, write_stack

    config = load_stack("production")
    bot = config["agent-platform:agents"]["support-bot"]
    bot["invokers"].append("allUsers")
    bot["env"]["OPENAI_API_KEY"] = "sk-live-0123456789abcdef"
    path = write_stack(tmp_path / "risky.yaml", config)
    streamed = run_check(ROOT, "production", config_file=path)
    finished = run_check(ROOT, "production", config_file=path, plan=run_plan(ROOT, "production", path))
    assert streamed.mandatory and not streamed.passed
    assert [v.to_json() for v in streamed.violations] == [v.to_json() for v in finished.violations]
    assert streamed.resources == finished.resources


def test_streamed_check_stops_cleanly_when_the_program_fails(tmp_path) -> None:
    from agentstage.engine import ProgramError
    from agentstage.policy import PolicyPackProcess

    runner = PolicyPackProcess(project="agent-platform", stack="production")
    runner.launch()

    def failing_plan(on_resource):
        raise ProgramError("the program failed: RuntimeError: boom")

    try:
        with pytest.raises(ProgramError, match="boom"):
            runner.plan_and_check(failing_plan)
    finally:
        runner.close()
    assert not runner.process.running


def test_stack_analysis_on_a_second_pack_process_reports_the_same(tmp_path) -> None:
    """For large plans AnalyzeStack goes to a second process of the pack; here from the
    first resource on. The stack policies must report as they do on the main process."""
    from agentstage.engine import load_project, load_stack_config
    from agentstage.policy import PolicyPackProcess, load_policy_config
    from tests.conftest import load_stack, write_stack

    config = load_stack("production")
    del config["agent-platform:budget"]  # a stack-policy violation (billing-budget), reported by AnalyzeStack
    config["agent-platform:environment"] = "staging"  # production requires a budget in config
    path = write_stack(tmp_path / "nobudget.yaml", config)
    stack_config = load_stack_config(load_project(ROOT), "production", path)
    settings = load_policy_config(ROOT / "policies" / "agent_guard" / "config" / "production.json")
    runner = PolicyPackProcess(project="agent-platform", stack="production", config=stack_config.values)
    runner.launch()
    try:
        plan, helped = runner.plan_and_check(
            lambda on_resource: run_plan(ROOT, "production", path, on_resource=on_resource), settings, large_plan=1
        )
    finally:
        runner.close()
    alone = run_check(ROOT, "production", config_file=path, plan=plan)
    assert "billing-budget" in {v.policy for v in helped.violations}
    assert [v.to_json() for v in helped.violations] == [v.to_json() for v in alone.violations]


def _big_stack(tmp_path: Path) -> Path:
    """The production stack with a support-bot whose config is larger than one environment
    string may be on Linux (128 KiB): its system prompt inline, in env vars at Cloud Run's
    32 KiB limit."""
    from tests.conftest import load_stack, write_stack

    config = load_stack("production")
    prompt = (
        "You are the support agent of Acme. Answer from the knowledge base, cite it, and hand "
        "over to a human when unsure. "
    ) * 400
    for part in range(5):
        config["agent-platform:agents"]["support-bot"]["env"][f"SYSTEM_PROMPT_{part}"] = prompt[:32768]
    return write_stack(tmp_path / "big.yaml", config)


def test_a_stack_config_beyond_the_environment_limit_reaches_the_pack(tmp_path) -> None:
    """The CLI hands a pack the stack config in PULUMI_CONFIG, where Linux refuses more than
    128 KiB ("Argument list too long"); the runner gives it to the pack's runtime another
    way, and the unmodified pack reads all of it with the SDK's own config API."""
    from agentstage.engine import load_project, load_stack_config

    path = _big_stack(tmp_path)
    agents = load_stack_config(load_project(ROOT), "production", path).values["agent-platform:agents"]
    assert len(agents.encode()) > 128 * 1024
    body = (
        'import json, pulumi.runtime; raw = pulumi.runtime.get_config("agent-platform:agents"); '
        "report(f\"{len(raw)} {len(json.loads(raw)['support-bot']['env']['SYSTEM_PROMPT_4'])}\")"
    )
    report = run_check(ROOT, "production", config_file=path, pack_dir=rule_pack(tmp_path / "size-pack", body))
    assert {v.message for v in report.violations} == {f"{len(agents)} 32768"}
    assert len(report.violations) == 2  # both Cloud Run services


def test_agent_guard_checks_a_stack_config_beyond_the_environment_limit(tmp_path) -> None:
    report = run_check(
        ROOT,
        "production",
        config_file=_big_stack(tmp_path),
        policy_config=ROOT / "policies" / "agent_guard" / "config" / "production.json",
    )
    assert report.passed and not report.mandatory
    assert report.resources == run_check(ROOT, "production").resources
