"""The docs are checked like code: the config reference is generated from the models, and
the README's stack snippet is a valid stack."""

from __future__ import annotations

import re

from ruamel.yaml import YAML

from agentstage.config import platform_from_config
from agentstage.reference import render
from tests.conftest import ROOT


def test_config_reference_is_in_step_with_the_models():
    assert (ROOT / "docs" / "config.md").read_text() == render(), (
        "docs/config.md is stale: run python -m agentstage.reference > docs/config.md"
    )


def test_readme_stack_snippet_is_valid():
    readme = (ROOT / "README.md").read_text()
    snippets = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    stacks = [YAML(typ="safe", pure=True).load(s) for s in snippets if s.startswith("config:")]
    assert stacks
    for stack in stacks:
        spec = platform_from_config(stack["config"])
        assert spec.agents


def test_readme_names_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "make preview" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_policy_rules_table_is_what_the_pack_declares():
    """docs/policies.md lists the rules as the pack itself declares them (GetAnalyzerInfo)."""
    from agentstage.policy.reference import pack_policies, render_rules

    table = render_rules(pack_policies())
    assert table in (ROOT / "docs" / "policies.md").read_text(), (
        "the rules table of docs/policies.md is stale: python -m agentstage.policy.reference"
    )
