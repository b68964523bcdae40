"""AgentBudget: amount, thresholds, scope and notifications, and the production rule that a
billing account is required (offline engine, Pulumi mock runtime)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan
from agentstage.fixtures import project_number
from tests.conftest import ROOT, load_stack, plan_of, write_stack

BUDGET = "gcp:billing/budget:Budget"
TOPIC = "gcp:pubsub/topic:Topic"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
MISSING = (
    "agent-platform:budget.billing_account: null is not set; production requires a billing budget: set it to the "
    "billing account id that pays for the project (e.g. 012345-6789AB-CDEF01), with budget.monthly_amount"
)


def config(stack: str = "production") -> dict[str, Any]:
    return copy.deepcopy(load_stack(stack))


def budget(plan: Plan) -> dict[str, Any]:
    [b] = plan.by_type(BUDGET)
    return b.inputs


def test_budget_amount_thresholds_and_project_scope(prod):
    b = budget(prod)
    assert b["billingAccount"] == "012345-6789AB-CDEF01"
    assert b["displayName"] == "agentstage production (acme-agents-prod)"
    assert b["amount"] == {"specifiedAmount": {"currencyCode": "USD", "units": "1500"}}
    assert b["thresholdRules"] == [
        {"thresholdPercent": 0.5, "spendBasis": "CURRENT_SPEND"},
        {"thresholdPercent": 0.9, "spendBasis": "CURRENT_SPEND"},
        {"thresholdPercent": 1, "spendBasis": "CURRENT_SPEND"},
        {"thresholdPercent": 1, "spendBasis": "FORECASTED_SPEND"},
    ]
    assert b["budgetFilter"] == {
        "projects": [f"projects/{project_number('acme-agents-prod')}"],
        "calendarPeriod": "MONTH",
        "creditTypesTreatment": "INCLUDE_ALL_CREDITS",
    }


def test_budget_notifies_the_email_channels_and_a_pubsub_topic(prod):
    rule = budget(prod)["allUpdatesRule"]
    assert rule["monitoringNotificationChannels"] == [r.outputs["name"] for r in prod.by_type(CHANNEL)]
    [topic] = prod.by_type(TOPIC)
    assert topic.inputs["name"] == "agentstage-budget-production"
    assert topic.inputs["labels"] == {
        "team": "support",
        "cost-center": "cc-042",
        "environment": "production",
        "managed-by": "agentstage",
    }
    assert rule["pubsubTopic"] == "projects/acme-agents-prod/topics/agentstage-budget-production"
    assert rule["schemaVersion"] == "1.0" and rule["disableDefaultIamRecipients"] is False
    assert topic.urn in prod.find(BUDGET, "budget-budget").dependencies


def test_fractional_amounts_forecasts_label_scope_and_no_topic(tmp_path):
    cfg = config()
    cfg["agent-platform:budget"].update(
        monthly_amount=1234.56,
        currency="EUR",
        thresholds=[0.25, 1.0],
        forecast_thresholds=[0.8, 1.2],
        label_filter={"cost-center": "cc-042"},
        pubsub=False,
    )
    plan = plan_of(tmp_path, cfg)
    b = budget(plan)
    assert b["amount"]["specifiedAmount"] == {"currencyCode": "EUR", "units": "1234", "nanos": 560000000}
    assert [(r["thresholdPercent"], r["spendBasis"]) for r in b["thresholdRules"]] == [
        (0.25, "CURRENT_SPEND"),
        (1, "CURRENT_SPEND"),
        (0.8, "FORECASTED_SPEND"),
        (1.2, "FORECASTED_SPEND"),
    ]
    assert b["budgetFilter"]["labels"] == {"cost-center": "cc-042"}
    assert "pubsubTopic" not in b["allUpdatesRule"] and plan.by_type(TOPIC) == []


def test_budget_takes_at_most_five_email_channels(tmp_path):
    cfg = config()
    emails = [f"oncall{i}@acme.com" for i in range(7)]
    cfg["agent-platform:alerts"]["notification_emails"] = emails
    plan = plan_of(tmp_path, cfg)
    names = {r.inputs["labels"]["email_address"]: r.outputs["name"] for r in plan.by_type(CHANNEL)}
    assert budget(plan)["allUpdatesRule"]["monitoringNotificationChannels"] == [names[e] for e in emails[:5]]


def test_staging_without_billing_account_has_no_budget(tmp_path):
    cfg = config("staging")
    del cfg["agent-platform:budget"]
    plan = plan_of(tmp_path, cfg, "staging")
    assert plan.by_type(BUDGET) == [] and plan.by_type(TOPIC) == []


@pytest.mark.parametrize("drop", ["section", "key"])
def test_production_without_billing_account_is_a_config_error(drop):
    cfg = config()
    if drop == "section":
        del cfg["agent-platform:budget"]
    else:
        del cfg["agent-platform:budget"]["billing_account"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [MISSING]


def test_preview_of_production_without_billing_account_exits_2_naming_the_key(tmp_path):
    from typer.testing import CliRunner

    from agentstage.cli import app

    cfg = config()
    del cfg["agent-platform:budget"]
    path = write_stack(tmp_path / "prod.yaml", cfg)
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["preview", "production", "-C", str(ROOT), "--config-file", str(path)]
    )
    assert result.exit_code == 2
    assert MISSING in " ".join(result.output.split())


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"billing_account": "12345"},
            'agent-platform:budget.billing_account: "12345" is not a billing account id; use the form 012345-6789AB-CDEF01 (uppercase hex)',
        ),
        (
            {"monthly_amount": None},
            "agent-platform:budget.monthly_amount: null is not set; a budget needs its monthly amount (in the billing account's currency)",
        ),
        ({"monthly_amount": -5}, "agent-platform:budget.monthly_amount: -5 is not a positive amount"),
        (
            {"thresholds": [0.9, 0.5]},
            "agent-platform:budget.thresholds: [0.9, 0.5] is not strictly ascending; give ascending shares of the amount, e.g. [0.5, 0.9, 1.0]",
        ),
        (
            {"forecast_thresholds": [0]},
            "agent-platform:budget.forecast_thresholds: [0] has a share outside 0..10; give ascending shares of the amount, e.g. [0.5, 0.9, 1.0]",
        ),
        (
            {"thresholds": [], "forecast_thresholds": []},
            "agent-platform:budget.thresholds: [] is empty and so is forecast_thresholds; a budget that never notifies is useless",
        ),
        (
            {"currency": "usd"},
            'agent-platform:budget.currency: "usd" is not a currency code; use three uppercase letters, e.g. USD or EUR',
        ),
        (
            {"label_filter": {"team": "support", "cost-center": "cc-042"}},
            'agent-platform:budget.label_filter: {"team": "support", "cost-center": "cc-042"} has more than one label; '
            "the Budget API filters on a single key: value pair",
        ),
    ],
)
def test_bad_budget_config_is_rejected_with_the_key(change, message):
    cfg = config()
    cfg["agent-platform:budget"].update(change)
    if change.get("monthly_amount", 0) is None:
        del cfg["agent-platform:budget"]["monthly_amount"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [message]


def test_billing_account_resource_name_form_is_accepted():
    cfg = config()
    cfg["agent-platform:budget"]["billing_account"] = "billingAccounts/012345-6789AB-CDEF01"
    assert platform_from_config(cfg).budget.billing_account == "012345-6789AB-CDEF01"
