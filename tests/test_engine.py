"""The offline engine on small programs of its own: config loading as the CLI does it,
invokes, recorded requests, plan order and plan diffs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentstage.diff import diff_plans
from agentstage.engine import EngineError, ProgramError, load_project, load_stack_config, run_plan


def make_project(root: Path, program: str, stack_yaml: str, manifest_extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: demo\nruntime: python\n" + manifest_extra)
    (root / "__main__.py").write_text(textwrap.dedent(program))
    (root / "Pulumi.dev.yaml").write_text(textwrap.dedent(stack_yaml))
    return root


PROGRAM = """
    import json
    import pulumi
    import pulumi_gcp as gcp

    cfg = pulumi.Config()
    info = gcp.organizations.get_project()
    topic = gcp.pubsub.Topic("events", name=cfg.require("topic"), labels=cfg.require_object("labels"))
    sub = gcp.pubsub.Subscription("events-sub", topic=topic.name, opts=pulumi.ResourceOptions(protect=True))
    pulumi.export("number", info.number)
    pulumi.export("token", cfg.get_secret("token"))
    pulumi.export("greeting", cfg.get("greeting"))
"""


def test_config_is_namespaced_and_encoded_as_the_cli_does(tmp_path):
    root = make_project(
        tmp_path / "p",
        PROGRAM,
        """
        config:
          topic: agent-events
          demo:labels: {team: core}
          token: {secure: AAABAHRva2Vu}
          gcp:project: acme-demo
        """,
        "config:\n  greeting:\n    default: hello\n",
    )
    cfg = load_stack_config(load_project(root), "dev")
    assert cfg.values == {
        "demo:greeting": "hello",
        "demo:topic": "agent-events",
        "demo:labels": '{"team": "core"}',
        "demo:token": "[secret]",
        "gcp:project": "acme-demo",
    }
    assert cfg.secret_keys == ["demo:token"]


def test_program_run_records_requests_and_answers_invokes(tmp_path):
    root = make_project(
        tmp_path / "p",
        PROGRAM,
        """
        config:
          topic: agent-events
          labels: {team: core}
          token: {secure: AAABAHRva2Vu}
          gcp:project: acme-demo
          agentstage:projectNumber: "123456789012"
        """,
    )
    plan = run_plan(root, "dev")
    assert [r.type for r in plan.resources] == [
        "pulumi:pulumi:Stack",
        "gcp:pubsub/subscription:Subscription",
        "gcp:pubsub/topic:Topic",
    ]
    topic = plan.find("gcp:pubsub/topic:Topic", "events")
    sub = plan.find("gcp:pubsub/subscription:Subscription", "events-sub")
    assert topic.inputs == {"name": "agent-events", "labels": {"team": "core"}}
    assert sub.options["protect"] is True and sub.options["version"]  # the provider version asked for
    assert sub.property_dependencies == {"topic": [topic.urn]}
    assert sub.parent == plan.resources[0].urn
    assert plan.outputs == {"number": "123456789012", "token": "[secret]", "greeting": None}


def test_unanswered_invoke_is_an_error_naming_it(tmp_path):
    root = make_project(
        tmp_path / "p",
        """
        import pulumi_gcp as gcp
        gcp.compute.get_network(name="default")
        """,
        "config:\n  gcp:project: acme-demo\n",
    )
    with pytest.raises(ProgramError) as err:
        run_plan(root, "dev")
    assert "the offline engine has no answer for invoke gcp:compute/getNetwork:getNetwork" in str(err.value)


def test_program_exception_is_reported_with_its_type(tmp_path):
    root = make_project(tmp_path / "p", "raise RuntimeError('boom')\n", "config: {}\n")
    with pytest.raises(ProgramError) as err:
        run_plan(root, "dev")
    assert str(err.value) == "the program failed: RuntimeError: boom"
    assert err.value.config_issues is None


def test_bad_yaml_is_an_engine_error(tmp_path):
    root = make_project(tmp_path / "p", "", "config: [unclosed\n")
    with pytest.raises(EngineError, match=r"Pulumi.dev.yaml: not valid YAML"):
        load_stack_config(load_project(root), "dev")


def test_plan_diff_reports_creates_updates_and_deletes(tmp_path):
    program = """
        import pulumi, pulumi_gcp as gcp
        cfg = pulumi.Config()
        for name in cfg.require_object("topics"):
            gcp.pubsub.Topic(name, name=name, labels={"size": cfg.require("size")})
    """
    a = run_plan(make_project(tmp_path / "a", program, "config:\n  topics: [x, y]\n  size: s\n"), "dev")
    b = run_plan(make_project(tmp_path / "b", program, "config:\n  topics: [y, z]\n  size: m\n"), "dev")
    diff = diff_plans(a, b)
    assert diff.creates == ["urn:pulumi:dev::demo::gcp:pubsub/topic:Topic::z"]
    assert diff.deletes == ["urn:pulumi:dev::demo::gcp:pubsub/topic:Topic::x"]
    assert diff.updates == {"urn:pulumi:dev::demo::gcp:pubsub/topic:Topic::y": ["labels.size"]}
    assert diff.changed == 3
    assert diff_plans(a, a).empty


# --- isolation: every plan in one process runs with its own modules and config ---------------

#: A program whose values come from the project's own modules: ``helper`` (a module beside
#: ``__main__.py``), ``settings`` (reads ``pulumi.Config()`` when imported) and a package.
LOCAL_PROGRAM = """
    import pulumi
    import pulumi_gcp as gcp

    import helper
    import settings
    from naming.rules import prefix

    gcp.pubsub.Topic("events", name=prefix() + settings.TOPIC)
    pulumi.export("helper", helper.value())
    pulumi.export("topic", settings.TOPIC)
"""


def make_local_project(root: Path, label: str, topic: str) -> Path:
    make_project(root, LOCAL_PROGRAM, f"config:\n  topic: {topic}\n  gcp:project: acme-demo\n")
    (root / "helper.py").write_text(f"def value():\n    return {label!r}\n")
    (root / "settings.py").write_text("import pulumi\n\nTOPIC = pulumi.Config().require('topic')\n")
    (root / "naming").mkdir()
    (root / "naming" / "__init__.py").write_text("")
    (root / "naming" / "rules.py").write_text(f"def prefix():\n    return {label + '-'!r}\n")
    return root


def _seen(plan) -> tuple[str, str, str]:
    topic = plan.find("gcp:pubsub/topic:Topic", "events")
    return plan.outputs["helper"], plan.outputs["topic"], topic.inputs["name"]


def test_two_projects_in_one_process_each_plan_with_their_own_local_modules(tmp_path):
    import sys

    a = make_local_project(tmp_path / "a", "alpha", "orders")
    b = make_local_project(tmp_path / "b", "beta", "payments")
    path_before = list(sys.path)
    assert _seen(run_plan(a, "dev")) == ("alpha", "orders", "alpha-orders")
    gcp_module = sys.modules["pulumi_gcp"]
    assert _seen(run_plan(b, "dev")) == ("beta", "payments", "beta-payments")
    assert _seen(run_plan(a, "dev")) == ("alpha", "orders", "alpha-orders")
    # Nothing of either project outlives its plan; shared libraries stay cached.
    assert sys.path == path_before
    assert not {"helper", "settings", "naming", "naming.rules"} & set(sys.modules)
    assert sys.modules["pulumi_gcp"] is gcp_module


def test_the_same_project_planned_twice_reads_each_config_afresh(tmp_path):
    import pulumi.runtime

    root = make_local_project(tmp_path / "p", "alpha", "orders")
    other = tmp_path / "other.yaml"
    other.write_text("config:\n  demo:topic: refunds\n  gcp:project: acme-demo\n")
    assert _seen(run_plan(root, "dev"))[1:] == ("orders", "alpha-orders")
    assert _seen(run_plan(root, "dev", other))[1:] == ("refunds", "alpha-refunds")
    assert _seen(run_plan(root, "dev"))[1:] == ("orders", "alpha-orders")
    assert pulumi.runtime.get_config("demo:topic") is None  # the plan's config ends with it


def test_a_module_the_host_imported_under_a_local_name_is_set_aside_and_put_back(tmp_path, monkeypatch):
    import sys
    import types

    host_helper = types.ModuleType("helper")
    host_helper.value = lambda: "host"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "helper", host_helper)
    root = make_local_project(tmp_path / "p", "alpha", "orders")
    assert _seen(run_plan(root, "dev"))[0] == "alpha"
    assert sys.modules["helper"] is host_helper
