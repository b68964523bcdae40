"""Feature flags without a new revision: the AgentFlags component under the offline engine (the
parameter, its payload-derived version, the agent's read grant limited to its own parameter), the
no-new-revision property on every runtime that has flags, the conformance of the requests, and
`agentstage flags set|show` (comment-preserving edit, ledger, lock, exact errors, --apply)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.diff import diff_plans
from agentstage.engine import run_plan
from agentstage.flags import FLAGS_ENV, version_id
from agentstage.release.ledger import Ledger
from agentstage.release.lock import stack_lock
from components.contract import CLOUD_RUN_SERVICE
from components.flags import FLAGS_READER_ROLE, reader_condition
from tests.conftest import ROOT, plan_of, write_stack
from tests.test_release_apply import fake_pulumi  # noqa: F401 - the fixture: a `pulumi` that records its calls

runner = CliRunner()

PARAMETER = "gcp:parametermanager/parameter:Parameter"
VERSION = "gcp:parametermanager/parameterVersion:ParameterVersion"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
PROD_PARAMETER = "projects/acme-agents-prod/locations/global/parameters/support-bot-production-flags"
SA = "serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com"


# --- the component ----------------------------------------------------------------------


def test_each_agent_has_its_flags_parameter_and_one_version(prod):
    parameters = {r.name: r.inputs for r in prod.by_type(PARAMETER)}
    assert set(parameters) == {"support-bot-flags-parameter", "research-agent-flags-parameter"}
    p = parameters["support-bot-flags-parameter"]
    assert p["parameterId"] == "support-bot-production-flags"
    assert p["format"] == "JSON" and p["project"] == "acme-agents-prod"
    # the agent's labels without the release: a release never touches the parameter
    assert p["labels"] == {
        "team": "support",
        "cost-center": "cc-042",
        "environment": "production",
        "managed-by": "agentstage",
        "agent": "support-bot",
    }
    v = prod.find(VERSION, "support-bot-flags-version")
    assert v.inputs["parameter"] == PROD_PARAMETER
    assert v.inputs["parameterData"] == "[secret]"  # the provider marks the data sensitive
    assert v.inputs["parameterVersionId"] == version_id({"web_search_tool": False})
    assert v.parent.endswith("agentstage:flags:AgentFlags::support-bot-flags")


def test_the_version_holds_the_canonical_payload_and_the_outputs_are_known_in_a_preview():
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.sync_await import _sync_await

    from agentstage.fixtures import FixtureMocks
    from components.flags import AgentFlags

    settings.set_root_resource(None)
    pulumi.runtime.set_mocks(FixtureMocks({"gcp:project": "acme-agents-prod"}), project="p", stack="s", preview=True)
    flags = AgentFlags(
        "support-bot-flags",
        flags={"web_search_tool": False, "citations": True},
        service_name="support-bot",
        project="acme-agents-prod",
        environment="production",
        member=SA,
        labels={"agent": "support-bot"},
    )
    assert _sync_await(flags.version.parameter_data.future()) == '{"citations":true,"web_search_tool":false}'
    vid = version_id({"citations": True, "web_search_tool": False})
    assert _sync_await(flags.version.parameter_version_id.future()) == vid
    assert _sync_await(flags.parameter_name.is_known()) and _sync_await(flags.version_name.is_known())
    assert _sync_await(flags.parameter_name.future()) == PROD_PARAMETER
    assert _sync_await(flags.version_name.future()) == f"{PROD_PARAMETER}/versions/{vid}"
    # the parameter name still depends on the parameter: a consumer waits for it
    assert flags.parameter in _sync_await(flags.parameter_name.resources())


def test_the_agent_gets_the_parameter_name_not_the_flags(prod):
    svc = prod.find(CLOUD_RUN_SERVICE, "support-bot-service")
    envs = {e["name"]: e.get("value") for e in svc.inputs["template"]["containers"][0]["envs"]}
    assert envs[FLAGS_ENV] == PROD_PARAMETER
    assert not [n for n in envs if n.startswith("FEATURE_")]
    # the service waits for the version, so the agent's first read finds one
    version = prod.find(VERSION, "support-bot-flags-version")
    assert version.urn in svc.dependencies


def test_the_agent_may_read_its_own_parameter_only(prod):
    grants = [r for r in prod.by_type(PROJECT_MEMBER) if r.name == "support-bot-flags-reader"]
    assert len(grants) == 1
    g = grants[0].inputs
    assert (g["role"], g["member"], g["project"]) == (FLAGS_READER_ROLE, SA, "acme-agents-prod")
    assert g["condition"] == {
        "title": "flags-support-bot-production-flags",
        "description": "Read this agent's own feature flags parameter only",
        "expression": 'resource.name.endsWith("/locations/global/parameters/support-bot-production-flags") || '
        'resource.name.extract("/locations/global/parameters/{parameter}/versions/") == '
        '"support-bot-production-flags"',
    }
    assert g["condition"]["expression"] == reader_condition("support-bot-production-flags")
    # IAM: a condition title is at most 100 characters, its description at most 256
    # (https://cloud.google.com/iam/docs/conditions-overview#structure)
    assert len(g["condition"]["title"]) <= 100 and len(g["condition"]["description"]) <= 256
    # no other Parameter Manager role anywhere in the plan
    roles = {r.inputs["role"] for r in prod.by_type(PROJECT_MEMBER)}
    assert {r for r in roles if "parametermanager" in r} == {FLAGS_READER_ROLE}
    # and the service's url waits for the grant, like for the identity's other grants
    svc = prod.find(CLOUD_RUN_SERVICE, "support-bot-service")
    assert grants[0].urn in svc.dependencies


def test_an_agent_without_features_still_gets_its_parameter_with_an_empty_object(tmp_path, production):
    del production["agent-platform:agents"]["support-bot"]["features"]
    plan = plan_of(tmp_path, production)
    v = plan.find(VERSION, "support-bot-flags-version")
    assert v.inputs["parameterVersionId"] == version_id({}) == f"config-{hashlib.sha256(b'{}').hexdigest()[:16]}"


def test_a_runtime_component_refuses_features_without_the_parameter_name():
    from components.errors import ComponentError
    from components.flags import require_flags_env

    with pytest.raises(ComponentError) as err:
        require_flags_env("CloudRunAgent", "support-bot", {"web_search_tool": True, "citations": False}, {})
    assert str(err.value) == (
        "CloudRunAgent support-bot: the agent has features (citations, web_search_tool) but extra_env has no "
        "AGENTSTAGE_FLAGS_PARAMETER: flags are read at run time from Parameter Manager; create an AgentFlags for the "
        "agent and pass its parameter_name as extra_env['AGENTSTAGE_FLAGS_PARAMETER']"
    )
    require_flags_env("CloudRunAgent", "support-bot", {}, {})  # no features: nothing to read
    require_flags_env("CloudRunAgent", "support-bot", {"a": True}, {FLAGS_ENV: PROD_PARAMETER})


def test_a_user_env_var_cannot_take_the_flags_variable(tmp_path, production):
    from agentstage.engine import ProgramError

    production["agent-platform:agents"]["support-bot"]["env"][FLAGS_ENV] = "projects/x"
    with pytest.raises(ProgramError) as err:
        plan_of(tmp_path, production)
    assert err.value.config_issues == [
        'agent-platform:agents.support-bot.env.AGENTSTAGE_FLAGS_PARAMETER: "AGENTSTAGE_FLAGS_PARAMETER" is reserved by '
        "agentstage, which sets MODEL_ARMOR_TEMPLATE, the AGENT_*, FEATURE_*, AGENTSTAGE_* variables and the tracing "
        "variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, "
        "OTEL_EXPORTER_OTLP_ENDPOINT) itself; rename it (feature flags: agents.<name>.features; tracing: "
        "agent-platform:tracing)"
    ]


def test_features_no_longer_count_as_env_vars(tmp_path, production):
    bot = production["agent-platform:agents"]["support-bot"]
    bot["env"] = {f"V{i}": "1" for i in range(983)}  # + 1 secret = 984, the most allowed
    bot["features"] = {f"f{i}": True for i in range(50)}
    plan_of(tmp_path, production)  # plans: 50 flags are one parameter version, not 50 env vars


# --- no new revision ----------------------------------------------------------------------


def _flip(config: dict, agents: list[str], namespace: str = "agent-platform") -> dict:
    flipped = copy.deepcopy(config)
    for agent in agents:
        features = flipped[f"{namespace}:agents"][agent].setdefault("features", {})
        features.update({name: not on for name, on in features.items()})
        features["brand_new_flag"] = True
    return flipped


def _versions(diff) -> set[str]:
    return {urn.rsplit("::", 1)[-1] for urn in diff.updates}


def test_flipping_flags_changes_only_the_parameter_versions(tmp_path, production):
    before = plan_of(tmp_path, production)
    after = plan_of(tmp_path, _flip(production, ["support-bot", "research-agent"]))
    diff = diff_plans(before, after)
    assert diff.creates == [] and diff.deletes == []
    assert _versions(diff) == {"support-bot-flags-version", "research-agent-flags-version"}
    assert all(set(paths) <= {"parameterData", "parameterVersionId"} for paths in diff.updates.values())
    # the revision template, hence the revision name, is the same
    for agent in ("support-bot", "research-agent"):
        old = before.find(CLOUD_RUN_SERVICE, f"{agent}-service").inputs["template"]
        new = after.find(CLOUD_RUN_SERVICE, f"{agent}-service").inputs["template"]
        assert old == new and old["revision"] == new["revision"]
    v = after.find(VERSION, "support-bot-flags-version").inputs
    assert v["parameterVersionId"] == version_id({"web_search_tool": True, "brand_new_flag": True})


def test_on_agent_engine_and_gke_too_a_flip_is_one_parameter_version(tmp_path):
    from ruamel.yaml import YAML

    example = ROOT / "examples" / "runtimes"
    config = YAML(typ="safe", pure=True).load((example / "stacks" / "Pulumi.staging.yaml").read_text())["config"]
    namespace = "agent-platform"
    before = run_plan(example, "staging", config_file=write_stack(tmp_path / "a.yaml", config))
    flipped = _flip(config, ["support-bot", "research-agent", "summarizer"], namespace)
    after = run_plan(example, "staging", config_file=write_stack(tmp_path / "b.yaml", flipped))
    diff = diff_plans(before, after)
    assert diff.creates == [] and diff.deletes == []
    assert _versions(diff) == {
        "support-bot-flags-version",
        "research-agent-flags-version",
        "summarizer-flags-version",
    }
    # the vertex-endpoint agent has no flags parameter (its model's container reads none)
    assert not [r for r in after.by_type(PARAMETER) if r.name.startswith("triage-model")]


# --- conformance --------------------------------------------------------------------------


def test_the_parameter_and_version_requests_conform_to_the_parameter_manager_api(prod):
    from tests.conformance import discovery, translate

    version = prod.find(VERSION, "support-bot-flags-version")
    [request] = translate.to_requests(version)
    assert (request.api, request.schema) == ("parametermanager.v1", "ParameterVersion")
    assert request.body == {"payload": {"data": "[secret]"}}  # sensitive in the provider: a secret in the plan
    assert discovery.validate(request.api, request.schema, request.body) == []
    known = copy.deepcopy(version)
    known.inputs["parameterData"] = '{"web_search_tool":false}'
    [request] = translate.to_requests(known)
    assert request.body == {"payload": {"data": base64.b64encode(b'{"web_search_tool":false}').decode()}}
    assert discovery.validate(request.api, request.schema, request.body) == []
    [request] = translate.to_requests(prod.find(PARAMETER, "support-bot-flags-parameter"))
    assert request.body["format"] == "JSON"
    assert discovery.validate(request.api, request.schema, request.body) == []
    bad = {**request.body, "format": "TOML"}
    assert discovery.validate(request.api, request.schema, bad)  # the enum is checked


# --- the CLI ------------------------------------------------------------------------------


def _stack_file(project: Path, stack: str = "staging") -> Path:
    return project / "stacks" / f"Pulumi.{stack}.yaml"


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_set_edits_one_line_records_the_decision_and_says_no_new_revision(project):
    path = _stack_file(project)
    before = path.read_text()
    result = _invoke("flags", "set", "staging", "-C", str(project), "--agent", "support-bot", "web_search_tool=off")
    assert result.exit_code == 0, result.output
    after = path.read_text()
    # comments and every other line byte-identical: one line changed
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert changed == [("        web_search_tool: true", "        web_search_tool: false")]
    version = version_id({"web_search_tool": False})
    out = " ".join(result.output.split())
    assert (
        "support-bot: web_search_tool=off; one new parameter version (projects/acme-agents-staging/locations/global/"
        f"parameters/support-bot-staging-flags/versions/{version}), no new revision" in out
    )
    assert "plan diff: 0 to create, 1 to update, 0 to delete" in out
    assert "support-bot-flags-version: parameterVersionId" in out
    [decision] = Ledger(project, "staging").decisions("support-bot")
    assert {k: v for k, v in decision.items() if k not in ("time", "txn")} == {
        "stack": "staging",
        "agent": "support-bot",
        "action": "flags",
        "release": "1.4.0",
        "stable": None,
        "percent": 100,
        "to_percent": 100,
        "flags": {"web_search_tool": False},
        "previous": {"web_search_tool": True},
        "parameter_version": version,
        "reason": "web_search_tool=off (set by the operator)",
    }
    assert not (project / ".agentstage" / "staging" / "journal.json").exists()  # the transaction finished


def test_setting_a_flag_to_its_value_changes_nothing(project):
    path = _stack_file(project)
    before = path.read_text()
    result = _invoke("flags", "set", "staging", "-C", str(project), "-a", "support-bot", "web_search_tool=true")
    assert result.exit_code == 0
    assert result.output.strip() == "nothing to change: support-bot already has web_search_tool=on in stack 'staging'"
    assert path.read_text() == before and Ledger(project, "staging").decisions() == []


def test_create_adds_a_new_flag_and_the_features_key_when_missing(project):
    path = _stack_file(project)
    text = path.read_text()
    path.write_text(text.replace("      features:\n        web_search_tool: true\n", ""))
    result = _invoke(
        "flags", "set", "staging", "-C", str(project), "-a", "support-bot", "citations=on", "--create", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["wrote"] is True and data["decisions"][0]["flags"] == {"citations": True}
    assert [u.rsplit("::", 1)[-1] for u in data["diff"]["update"]] == ["support-bot-flags-version"]
    assert data["diff"]["create"] == [] and data["diff"]["delete"] == []
    assert '        LOG_SAMPLE_RATE: "1.0"\n      features:\n        citations: true\n' in path.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-a", "nobody", "x=off"],
            "stack 'staging' has no agent 'nobody'; agents: research-agent, support-bot",
        ),
        (
            ["-a", "support-bot", "web_serch_tool=off"],
            "support-bot has no flag 'web_serch_tool' (did you mean web_search_tool?); its flags: web_search_tool. "
            "To add a new flag, pass --create",
        ),
        (
            ["-a", "research-agent", "zzz=off"],
            "research-agent has no flag 'zzz'; its flags: citations. To add a new flag, pass --create",
        ),
        (
            ["-a", "support-bot", "web_search_tool=maybe"],
            "'web_search_tool=maybe': 'maybe' is not a flag value; use on, off, true or false",
        ),
        (["-a", "support-bot", "web_search_tool"], "'web_search_tool' is not NAME=on|off (e.g. web_search_tool=off)"),
        (
            ["-a", "support-bot", "Web-Search=on", "--create"],
            "'Web-Search' is not a feature flag name; use lowercase letters, digits and '_'",
        ),
        (
            ["-a", "support-bot", "a=on", "a=off"],
            "flag 'a' is given twice with different values",
        ),
    ],
    ids=["unknown-agent", "typo", "unknown-flag", "bad-value", "no-equals", "bad-name", "twice"],
)
def test_bad_input_is_refused_with_exit_2_and_nothing_written(project, args, message):
    before = _stack_file(project).read_text()
    result = _invoke("flags", "set", "staging", "-C", str(project), *args)
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == f"error: {message}"
    assert _stack_file(project).read_text() == before


def test_an_endpoint_agent_has_no_flags(tmp_path):
    example = tmp_path / "runtimes"
    shutil.copytree(ROOT / "examples" / "runtimes", example)
    result = _invoke("flags", "set", "staging", "-C", str(example), "-a", "triage-model", "x=on", "--create")
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        "error: triage-model runs on vertex-endpoint, which has no feature flags (the model's serving container reads "
        "no flags parameter)"
    )


def test_a_locked_stack_is_not_edited(project):
    before = _stack_file(project).read_text()
    with stack_lock(project, "staging", "rollout"):
        result = _invoke("flags", "set", "staging", "-C", str(project), "-a", "support-bot", "web_search_tool=off")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert out.startswith("error: stack 'staging' is locked by another agentstage run (") and "rollout" in out
    assert _stack_file(project).read_text() == before


def test_show_lists_each_agents_flags_and_version(project):
    result = _invoke("flags", "show", "production", "-C", str(project), "--json")
    assert result.exit_code == 0, result.output
    agents = {a["agent"]: a for a in json.loads(result.output)["agents"]}
    assert agents["support-bot"] == {
        "agent": "support-bot",
        "runtime": "cloud-run",
        "flags": {"web_search_tool": False},
        "parameter": PROD_PARAMETER,
        "version": f"{PROD_PARAMETER}/versions/{version_id({'web_search_tool': False})}",
        "payload": '{"web_search_tool":false}',
    }
    assert agents["research-agent"]["flags"] == {"citations": True}
    one = _invoke("flags", "show", "production", "-C", str(project), "-a", "support-bot")
    assert one.exit_code == 0 and "web_search_tool=off" in one.output and "research-agent" not in one.output


def test_set_with_apply_runs_pulumi_up_after_writing(project, fake_pulumi):  # noqa: F811 - the fixture
    result = _invoke(
        "flags", "set", "staging", "-C", str(project), "-a", "support-bot", "web_search_tool=off", "--apply"
    )
    assert result.exit_code == 0, result.output
    assert "web_search_tool: false" in _stack_file(project).read_text()
    ups = [[a for a in c["argv"] if a != "--non-interactive"] for c in fake_pulumi() if "up" in c["argv"]]
    assert len(ups) == 1 and ups[0][:3] == ["up", "--yes", "--skip-preview"]
    assert ups[0][ups[0].index("--stack") + 1] == "staging"
    assert "applied: pulumi up --stack staging: succeeded" in result.output
    # the deploy is recorded against the flag change it deployed
    flags, applied = Ledger(project, "staging").decisions("support-bot")
    assert (applied["action"], applied["deployed_txn"]) == ("applied", flags["txn"])
    assert (flags["action"], applied["deployed_action"]) == ("flags", "flags")


def test_set_with_apply_without_pulumi_says_so_and_keeps_the_edit(project, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = _invoke(
        "flags", "set", "staging", "-C", str(project), "-a", "support-bot", "web_search_tool=off", "--apply"
    )
    assert result.exit_code == 1
    assert "the Pulumi CLI is not installed (no `pulumi` on PATH), so nothing was deployed" in " ".join(
        result.output.split()
    )
    assert "web_search_tool: false" in _stack_file(project).read_text()


# --- the walkthrough in docs/flags.md runs as written ---------------------------------------


def _walkthrough_blocks() -> list[str]:
    import re

    text = (ROOT / "docs" / "flags.md").read_text()
    section = text.split("## Walkthrough (offline)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_docs_walkthrough_commands_run(project):
    import shlex

    commands = [
        line.split("   #")[0].strip()
        for block in _walkthrough_blocks()
        for line in block.splitlines()
        if line.startswith("agentstage ")
    ]
    assert len(commands) >= 6
    for line in commands:
        args = shlex.split(line)[1:]
        result = runner.invoke(app, [*args, "-C", str(project)], catch_exceptions=False)
        expected = 2 if "web_serch_tool" in line else 0
        assert result.exit_code == expected, f"{line}: {result.output}"
    assert "web_search_tool: false" in _stack_file(project).read_text()
    assert [d["flags"] for d in Ledger(project, "staging").decisions("support-bot")] == [
        {"web_search_tool": False},
        {"audit_log": True},
    ]


def test_the_docs_reader_snippet_runs_against_the_local_parameter_manager():
    import subprocess
    import sys

    [script] = [b.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0] for b in _walkthrough_blocks() if "<<'EOF'" in b]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    parameter = "projects/acme-agents-staging/locations/global/parameters/support-bot-staging-flags"
    assert lines == [
        f"{parameter}/versions/{version_id({'web_search_tool': True})} True",
        f"{parameter}/versions/{version_id({'web_search_tool': False})} False",
        "unreachable: False",
    ]
    assert "feature flags: cannot read" in out.stderr
