"""Typed spec of an agent's hard spend cap (``agents.<name>.spend_cap``).

A budget only notifies; a spend cap acts. Each capped agent gets its own billing budget,
filtered to the agent's costs by its ``agent`` label, and when its actual spend passes
``threshold`` of ``monthly_amount`` the environment's enforcer takes ``action`` on that agent
only. Like :mod:`components.spec`, every validator raises :class:`SpecIssue` with a message that
completes ``<key>: <value> ...``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel

if TYPE_CHECKING:  # the platform and agent specs import this module: no cycle at run time
    from components.spec import AgentSpec, PlatformSpec

__all__ = ["SpendCapSpec", "SPEND_CAP_ACTIONS", "check_agent_spend_cap", "check_platform_spend_caps"]

#: What the enforcer may do to an agent past its cap, config value -> what it changes.
SPEND_CAP_ACTIONS: dict[str, str] = {
    "canary-to-zero": "the canary's traffic goes to 0% (all traffic to the stable revision)",
    "cap-instances": "the service's maximum instance count is lowered to max_instances",
    "flags-off": "the named feature flags are turned off (a new flags parameter version)",
}

_CURRENCY = re.compile(r"^[A-Z]{3}$")
#: Cloud Run: at most 1000 instances unless a quota increase is granted (the service-level
#: ``scaling.maxInstanceCount`` of the Admin API v2 takes the same range).
MAX_INSTANCES = 1000


class SpendCapSpec(StrictModel):
    """A hard monthly spend cap on one agent: its own budget plus an action the enforcer takes."""

    monthly_amount: float = Field(
        description="The agent's monthly spend cap in `currency`, > 0. Required.",
    )
    currency: str | None = Field(
        default=None,
        description="ISO 4217 code of the amount; must be the billing account's currency. Default: budget.currency.",
    )
    threshold: float = Field(
        default=1.0,
        description="Act when the agent's ACTUAL spend this month reaches this share of monthly_amount, "
        "0.01..10 (1.0 = 100%). Default: 1.0.",
    )
    action: Literal["canary-to-zero", "cap-instances", "flags-off"] = Field(
        description="What the enforcer does past the threshold: canary-to-zero (all traffic to the stable "
        "revision), cap-instances (lower the service's max instances to max_instances) or flags-off (turn the "
        "named feature flags off). Required. Billing is never disabled.",
    )
    max_instances: int | None = Field(
        default=None,
        description="For cap-instances: the service-wide maximum instance count once capped, 1..1000. "
        "Required with cap-instances, refused otherwise.",
    )
    flags: list[str] = Field(
        default_factory=list,
        description="For flags-off: the feature flags to turn off, each one the agent declares in features. "
        "Required with flags-off, refused otherwise. Default: [].",
    )

    @field_validator("monthly_amount")
    @classmethod
    def _amount(cls, v: float) -> float:
        if not 0 < v <= 1e12:
            raise SpecIssue("is not a positive amount")
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not _CURRENCY.match(v):
            raise SpecIssue("is not a currency code; use three uppercase letters, e.g. USD or EUR")
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: float) -> float:
        # the Budget API takes threshold_percent 0..10 (the same bound as budget.thresholds);
        # below 1% a cap would fire on the first cent
        if not 0.01 <= v <= 10:
            raise SpecIssue("is out of range; allowed: 0.01..10 (a share of monthly_amount: 1.0 means 100%)")
        return v

    @field_validator("max_instances")
    @classmethod
    def _max_instances(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= MAX_INSTANCES:
            raise SpecIssue(f"is out of range; allowed: 1..{MAX_INSTANCES}")
        return v

    @field_validator("flags")
    @classmethod
    def _flags(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if name in v[:i]:
                raise SpecIssue("is listed twice; list each flag once", path=(i,), value=name, has_value=True)
        return v

    @model_validator(mode="after")
    def _action_params(self) -> SpendCapSpec:
        if self.action == "cap-instances" and self.max_instances is None:
            raise SpecIssue(
                "is not set; action cap-instances needs the instance count to cap the service at",
                path=("max_instances",),
                value=None,
                has_value=True,
            )
        if self.action != "cap-instances" and self.max_instances is not None:
            raise SpecIssue(
                f"is set but action is {self.action}; max_instances is only for cap-instances: remove it",
                path=("max_instances",),
                value=self.max_instances,
                has_value=True,
            )
        if self.action == "flags-off" and not self.flags:
            raise SpecIssue(
                "is empty; action flags-off needs the feature flags to turn off (names from the agent's features)",
                path=("flags",),
                value=[],
                has_value=True,
            )
        if self.action != "flags-off" and self.flags:
            raise SpecIssue(
                f"is set but action is {self.action}; flags is only for flags-off: remove it",
                path=("flags",),
                value=self.flags,
                has_value=True,
            )
        return self


def check_agent_spend_cap(agent: AgentSpec) -> None:
    """The rules that tie a spend cap to its agent: the enforcer acts on Cloud Run services, and
    flags-off turns off flags the agent has (an unknown name would silently protect nothing)."""
    cap = agent.spend_cap
    if cap is None:
        return
    if agent.runtime != "cloud-run":
        raise SpecIssue(
            f"is set, but runtime is {agent.runtime}; the spend-cap enforcer acts on Cloud Run services only: "
            "remove spend_cap, or use budget.label_filter to watch this agent's spend",
            path=("spend_cap",),
            value=cap.model_dump(exclude_defaults=True),
            has_value=True,
        )
    for i, name in enumerate(cap.flags):
        if name not in agent.features:
            declared = ", ".join(sorted(agent.features)) or "none"
            raise SpecIssue(
                f"is not a feature flag of this agent (features: {declared}); declare it under features, "
                "or fix the name",
                path=("spend_cap", "flags", i),
                value=name,
                has_value=True,
            )


def check_platform_spend_caps(platform: PlatformSpec) -> None:
    """A spend cap is a billing budget: it needs the billing account of ``budget:``."""
    for name, agent in sorted(platform.agents.items()):
        if agent.spend_cap is not None and platform.budget.billing_account is None:
            raise SpecIssue(
                "is set, but budget.billing_account is not; a spend cap is a billing budget on the account "
                "that pays for the project: set budget.billing_account (and budget.monthly_amount)",
                path=("agents", name, "spend_cap"),
                value=agent.spend_cap.model_dump(exclude_defaults=True),
                has_value=True,
            )
