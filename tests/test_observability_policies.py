"""The agent_guard rules on alerts, budget and Model Armor, through the Analyzer protocol:
the unmodified pack runs in its own process (as under the Pulumi CLI) and sees the offline
plan. One baseline (the reference production plan passes) and one mutation per rule; then
the same rules fire when a production stack config turns the component off."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.engine import Plan, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, default_policy_config, load_policy_config
from tests.conftest import ROOT, load_stack, write_stack

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"
TEMPLATE = "gcp:modelarmor/template:Template"
OURS = (
    "agent-alert-policies",
    "alert-policy-actionable",
    "billing-budget",
    "budget-actual-threshold",
    "model-armor-guardrails",
)


@pytest.fixture(scope="module")
def pack():
    project = load_project(ROOT)
    config = load_stack_config(project, "production")
    with PolicyPackProcess(
        PACK_DIR, project=project.name, stack="production", config=config.values, secret_keys=config.secret_keys
    ) as process:
        yield process


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_plan(ROOT, "production")


def check(pack: PolicyPackProcess, plan: Plan, stack: str = "production") -> list[Any]:
    path = default_policy_config(stack)
    pack.configure(load_policy_config(path), source=str(path))
    return [v for v in pack.check(plan).violations if v.policy in OURS]


def mutate(plan: Plan, keep: Callable[[Any], bool] = lambda r: True, **edits: Callable[[dict[str, Any]], None]) -> Plan:
    """A copy of ``plan`` without the resources ``keep`` rejects, with ``edits[name]`` applied
    to the inputs and state of the resource of that logical name."""
    out = copy.deepcopy(plan)
    out.resources = [r for r in out.resources if keep(r)]
    for r in out.resources:
        edit = edits.get(r.name.replace("-", "_"))
        if edit:
            edit(r.inputs)
            edit(r.outputs)
    return out


def only(violations: list[Any]) -> tuple[str, str, str | None, str]:
    assert len(violations) == 1, [(v.policy, v.message) for v in violations]
    v = violations[0]
    return v.policy, v.enforcement, v.resource_name, v.message


def test_reference_production_plan_passes_every_operations_rule(pack, prod):
    assert check(pack, prod) == []
    enforced = {p.name: p.enforcement for p in pack.policies if p.name in OURS}
    assert enforced == dict.fromkeys(OURS, "mandatory")


def test_alert_policy_without_channel_is_a_mandatory_violation(pack, prod):
    plan = mutate(prod, support_bot_memory=lambda p: p.update(notificationChannels=[]))
    assert only(check(pack, plan)) == (
        "alert-policy-actionable",
        "mandatory",
        "support-bot-memory",
        "[production] support-bot: memory utilization above 80% has no notification channel, so its incidents "
        "open in the console and nobody is told; add one (agentstage: agent-platform:alerts.notification_emails, "
        "pubsub_topics or webhooks).",
    )


def test_alert_policy_without_documentation_is_a_mandatory_violation(pack, prod):
    plan = mutate(prod, research_agent_saturation=lambda p: p.pop("documentation"))
    assert only(check(pack, plan)) == (
        "alert-policy-actionable",
        "mandatory",
        "research-agent-saturation",
        "[production] research-agent: instances above 6.4 of max 8 has no documentation, so on-call gets an alert "
        "without what it means or what to do first; set documentation.content (what it means, first steps, how "
        "to roll back).",
    )


def test_agent_without_latency_alert_fails_agent_alert_policies(pack, prod):
    plan = mutate(
        prod,
        keep=lambda r: (
            not (
                r.type == POLICY
                and r.name in ("support-bot-latency", "support-bot-slo-fast-burn", "support-bot-slo-slow-burn")
            )
        ),
    )
    policy, enforcement, name, message = only(check(pack, plan))
    assert (policy, enforcement, name) == ("agent-alert-policies", "mandatory", "support-bot-service")
    assert message.startswith(
        "the agent service support-bot has no alert policy with a notification channel on latency"
    )


def test_budget_without_actual_threshold_up_to_100_percent_fails(pack, prod):
    def late(b: dict[str, Any]) -> None:
        b["thresholdRules"] = [
            {"thresholdPercent": 1.2, "spendBasis": "CURRENT_SPEND"},
            {"thresholdPercent": 0.9, "spendBasis": "FORECASTED_SPEND"},
        ]

    assert only(check(pack, mutate(prod, budget_budget=late))) == (
        "budget-actual-threshold",
        "mandatory",
        "budget-budget",
        "the billing budget never warns before the money is spent: its lowest actual-spend threshold is 120%; add a "
        "threshold rule on actual spend at or below 100% (agentstage: agent-platform:budget.thresholds, e.g. "
        "[0.5, 0.9, 1.0]).",
    )
    forecast_only = mutate(
        prod,
        budget_budget=lambda b: b.update(thresholdRules=[{"thresholdPercent": 1, "spendBasis": "FORECASTED_SPEND"}]),
    )
    assert "it has no actual-spend threshold" in only(check(pack, forecast_only))[3]
    # the API's default spend basis is actual spend
    default_basis = mutate(prod, budget_budget=lambda b: b.update(thresholdRules=[{"thresholdPercent": 1}]))
    assert check(pack, default_basis) == []


def test_stack_without_budget_fails_billing_budget(pack, prod):
    policy, enforcement, _, message = only(check(pack, mutate(prod, keep=lambda r: r.type != BUDGET)))
    assert (policy, enforcement) == ("billing-budget", "mandatory")
    assert message.startswith("the stack has no billing budget")


def test_stack_without_model_armor_fails_model_armor_guardrails(pack, prod):
    policy, enforcement, _, message = only(check(pack, mutate(prod, keep=lambda r: r.type != TEMPLATE)))
    assert (policy, enforcement) == ("model-armor-guardrails", "mandatory")
    assert message.startswith("the stack has no Model Armor template")
    off = mutate(
        prod,
        guardrails_template=lambda t: t["filterConfig"]["piAndJailbreakFilterSettings"].update(
            filterEnforcement="DISABLED"
        ),
    )
    assert only(check(pack, off))[0] == "model-armor-guardrails"


def test_the_same_rules_are_advisory_in_staging(pack, prod):
    plan = mutate(prod, keep=lambda r: r.type != BUDGET, support_bot_errors=lambda p: p.update(notificationChannels=[]))
    found = {(v.policy, v.enforcement) for v in check(pack, plan, "staging")}
    # the errors policy without a channel no longer counts: support-bot has no routed error alert either
    assert found == {
        ("billing-budget", "advisory"),
        ("alert-policy-actionable", "advisory"),
        ("agent-alert-policies", "advisory"),
    }


# --- from the stack config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,policies",
    [
        (lambda c: c["agent-platform:alerts"].update(enabled=False), {"agent-alert-policies"}),
        (
            lambda c: c["agent-platform:alerts"].update(notification_emails=[]),
            {"agent-alert-policies", "alert-policy-actionable"},
        ),
        (lambda c: c.update({"agent-platform:guardrails": {"model_armor": False}}), {"model-armor-guardrails"}),
        (lambda c: c["agent-platform:budget"].update(thresholds=[1.5]), {"budget-actual-threshold"}),
    ],
    ids=["alerts-off", "no-channels", "model-armor-off", "late-budget"],
)
def test_turning_a_component_off_in_production_fails_the_right_policy(pack, tmp_path, change, policies):
    config = copy.deepcopy(load_stack("production"))
    change(config)
    plan = run_plan(ROOT, "production", config_file=write_stack(tmp_path / "production.yaml", config))
    violations = check(pack, plan)
    assert {v.policy for v in violations} == policies
    assert all(v.enforcement == "mandatory" for v in violations)


def test_check_cli_exits_1_without_model_armor_and_2_without_billing_account(tmp_path):
    runner = CliRunner(env={"COLUMNS": "300"})
    config = copy.deepcopy(load_stack("production"))
    config["agent-platform:guardrails"] = {"model_armor": False}
    off = write_stack(tmp_path / "off.yaml", config)
    result = runner.invoke(app, ["check", "production", "-C", str(ROOT), "--config-file", str(off)])
    assert result.exit_code == 1, result.output
    assert "model-armor-guardrails" in result.output
    del config["agent-platform:budget"]
    result = runner.invoke(
        app, ["check", "production", "-C", str(ROOT), "--config-file", str(write_stack(tmp_path / "nb.yaml", config))]
    )
    assert result.exit_code == 2
    assert "agent-platform:budget.billing_account: null is not set; production requires a billing budget" in " ".join(
        result.output.split()
    )
