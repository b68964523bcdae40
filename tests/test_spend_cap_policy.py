"""The spend-cap-enforcer-least-privilege rule through the Analyzer protocol (the unmodified pack
process, as the Pulumi CLI starts it): the plan with spend caps passes, and each widened grant
to the enforcer produces exactly the expected violation."""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agentstage.engine import Plan, PlannedResource, load_project, load_stack_config
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config
from components.spend_cap import ENFORCER_ACCOUNT
from tests.conftest import ROOT, load_stack, plan_of

RULE = "spend-cap-enforcer-least-privilege"
STACK, PROJECT = "production", "agent-platform"
ENFORCER = "serviceAccount:agentstage-caps-production@acme-agents-prod.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Plan:
    cfg = copy.deepcopy(load_stack("production"))
    cfg["agent-platform:agents"]["support-bot"]["spend_cap"] = {"monthly_amount": 300, "action": "canary-to-zero"}
    cfg["agent-platform:agents"]["research-agent"]["spend_cap"] = {
        "monthly_amount": 200,
        "action": "flags-off",
        "flags": ["citations"],
    }
    return plan_of(tmp_path_factory.mktemp("caps-policy"), cfg)


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    config = load_stack_config(load_project(ROOT), STACK)
    with PolicyPackProcess(
        PACK_DIR, project=PROJECT, stack=STACK, config=config.values, secret_keys=config.secret_keys
    ) as p:
        p.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
        yield p


def violations(pack: PolicyPackProcess, plan: Plan) -> list[tuple[str, str | None, str]]:
    found, _, _ = pack.analyze(plan)
    return [(v.policy, v.resource_name, v.message) for v in found]


def with_grant(plan: Plan, type_: str, name: str, inputs: dict[str, Any]) -> Plan:
    new = copy.deepcopy(plan)
    new.resources.append(
        PlannedResource(
            urn=f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}",
            type=type_,
            name=name,
            parent=f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{STACK}",
            custom=True,
            inputs=inputs,
            outputs=copy.deepcopy(inputs),
            options={"version": "10.2.0"},
        )
    )
    return new


def test_the_caps_plan_gives_the_enforcer_nothing_the_rule_refuses(pack, plan):
    assert [v for v in violations(pack, plan) if v[0] == RULE] == []


def test_a_billing_role_on_the_billing_account_is_refused(pack, plan):
    mutated = with_grant(
        plan,
        "gcp:billing/accountIamMember:AccountIamMember",
        "enforcer-billing",
        {"billingAccountId": "012345-6789AB-CDEF01", "role": "roles/billing.user", "member": ENFORCER},
    )
    new = set(violations(pack, mutated)) - set(violations(pack, plan))
    assert new == {
        (
            RULE,
            "enforcer-billing",
            f"grants roles/billing.user to the spend-cap enforcer {ENFORCER} on billing; the enforcer caps agents "
            "(traffic, instances, flags) and must never be able to change or disable billing: remove the grant.",
        )
    }


def test_an_unconditioned_project_grant_is_refused(pack, plan):
    mutated = with_grant(
        plan,
        "gcp:projects/iAMMember:IAMMember",
        "enforcer-run-everywhere",
        {"project": "acme-agents-prod", "role": "roles/run.developer", "member": ENFORCER},
    )
    new = set(violations(pack, mutated)) - set(violations(pack, plan))
    assert new == {
        (
            RULE,
            "enforcer-run-everywhere",
            f"grants roles/run.developer to the spend-cap enforcer {ENFORCER} at project level without a "
            "condition; it needs roles on the capped services, their identities and flags parameters only: grant "
            "on those resources (or limit the grant with a condition on resource.name).",
        )
    }


def test_the_same_grant_to_an_agent_identity_is_not_this_rules_business(pack, plan):
    member = "serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
    mutated = with_grant(
        plan,
        "gcp:projects/iAMMember:IAMMember",
        "agent-run-everywhere",
        {"project": "acme-agents-prod", "role": "roles/run.developer", "member": member},
    )
    assert [v for v in violations(pack, mutated) if v[0] == RULE] == []


def test_the_pack_knows_the_enforcer_account_name():
    spec = importlib.util.spec_from_file_location("agent_guard_identity_names", PACK_DIR / "identity.py")
    assert spec and spec.loader
    sys.path.insert(0, str(PACK_DIR))  # the pack imports its own helpers module
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(PACK_DIR))
    assert module.ENFORCER_ACCOUNT == ENFORCER_ACCOUNT
    assert module._ENFORCER.match(ENFORCER) and module._ENFORCER.match(
        ENFORCER.replace(":agentstage", ":team-agentstage")
    )
    assert not module._ENFORCER.match("serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com")
