"""AgentBudget: the environment's monthly billing budget and its notification topic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.billing import (
    BudgetAllUpdatesRuleArgs,
    BudgetAmountArgs,
    BudgetAmountSpecifiedAmountArgs,
    BudgetBudgetFilterArgs,
    BudgetThresholdRuleArgs,
)

from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.known import known_after
from components.ops_spec import BudgetSpec

__all__ = ["AgentBudget", "threshold_rules", "amount_args", "budget_topic_name", "MAX_BUDGET_CHANNELS"]

#: A budget notifies at most five Monitoring channels (Budget API limit).
MAX_BUDGET_CHANNELS = 5
CURRENT = "CURRENT_SPEND"
FORECASTED = "FORECASTED_SPEND"


def threshold_rules(spec: BudgetSpec) -> list[BudgetThresholdRuleArgs]:
    """Actual-spend rules then forecasted-spend rules, in ascending order."""
    return [BudgetThresholdRuleArgs(threshold_percent=t, spend_basis=CURRENT) for t in spec.thresholds] + [
        BudgetThresholdRuleArgs(threshold_percent=t, spend_basis=FORECASTED) for t in spec.forecast_thresholds
    ]


def amount_args(spec: BudgetSpec) -> BudgetAmountArgs:
    """The amount as the API wants it: whole ``units`` (a string) and ``nanos``."""
    if spec.monthly_amount is None:
        raise ComponentError("AgentBudget", "budget", "a budget needs its monthly amount (budget.monthly_amount)")
    cents = round(spec.monthly_amount * 100)
    units, rest = divmod(cents, 100)
    return BudgetAmountArgs(
        specified_amount=BudgetAmountSpecifiedAmountArgs(
            currency_code=spec.currency, units=str(units), nanos=rest * 10_000_000 or None
        )
    )


def budget_topic_name(environment: str, prefix: str = "") -> str:
    return "-".join(p for p in (prefix, "agentstage-budget", environment) if p)


class AgentBudget(pulumi.ComponentResource):
    """A ``billing.Budget`` on the environment's project for ``monthly_amount`` per calendar
    month, with the configured actual and forecasted thresholds. Notifications go to the
    environment's email channels (at most five) and, with ``pubsub`` (default), to a Pub/Sub
    topic ``[<prefix>-]agentstage-budget-<environment>`` that automation can subscribe to
    (e.g. to scale agents down when the budget is spent).

    Outputs: ``budget_name`` (``billingAccounts/<id>/budgets/<id>``) and ``topic_id``
    (``projects/<project>/topics/<name>``, None without ``pubsub``).
    """

    budget_name: pulumi.Output[str]
    topic_id: pulumi.Output[str | None]

    def __init__(
        self,
        name: str,
        *,
        spec: BudgetSpec,
        project: str,
        environment: str,
        prefix: str = "",
        email_channels: Sequence[pulumi.Input[str]] = (),
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentBudget"], name, None, opts)
        if not spec.enabled:
            raise ComponentError("AgentBudget", name, "spec.billing_account is not set (budget.billing_account)")
        child = pulumi.ResourceOptions(parent=self)
        self.topic: gcp.pubsub.Topic | None = None
        topic_id: pulumi.Output[str] | None = None
        if spec.pubsub:
            topic = budget_topic_name(environment, prefix)
            self.topic = gcp.pubsub.Topic(
                f"{name}-topic",
                project=project,
                name=topic,
                labels=dict(labels),
                message_retention_duration="604800s",
                opts=child,
            )
            # the topic's id as Pub/Sub forms it: known in a first preview, still after the topic
            topic_id = known_after(self.topic, f"projects/{project}/topics/{topic}")
        number = gcp.organizations.get_project_output(project_id=project, opts=pulumi.InvokeOutputOptions(parent=self))
        # a list of the channel names (not one output of a list): its length is known in a
        # first preview even while the names Monitoring assigns are not
        channels = list(email_channels)[:MAX_BUDGET_CHANNELS]
        self.budget = gcp.billing.Budget(
            f"{name}-budget",
            billing_account=spec.billing_account,
            display_name=f"agentstage {environment} ({project})"[:60],
            amount=amount_args(spec),
            budget_filter=BudgetBudgetFilterArgs(
                projects=[number.number.apply(lambda n: f"projects/{n}")],
                calendar_period="MONTH",
                credit_types_treatment="INCLUDE_ALL_CREDITS",
                labels=dict(spec.label_filter) or None,
            ),
            threshold_rules=threshold_rules(spec),
            all_updates_rule=BudgetAllUpdatesRuleArgs(
                monitoring_notification_channels=channels,
                pubsub_topic=topic_id,
                schema_version="1.0" if self.topic else None,
                disable_default_iam_recipients=False,
            ),
            opts=child,
        )
        self.budget_name = self.budget.name
        self.topic_id = topic_id if topic_id is not None else pulumi.Output.from_input(None)
        self.register_outputs({"budget_name": self.budget_name, "topic_id": self.topic_id})
