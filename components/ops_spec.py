"""Typed specs of the operations components: alerts, SLOs, budget, guardrails, tracing.

These are the ``agent-platform:alerts``, ``agent-platform:budget``,
``agent-platform:guardrails`` and ``agent-platform:tracing`` sections of the stack config.
Like :mod:`components.spec`, every field states its default and every validator raises
:class:`~components.spec.SpecIssue` with a message that completes ``<key>: <value> ...``.

Some defaults depend on the environment ("production is stricter"): such fields default to
``None`` and the ``effective_*`` helpers resolve them, so the resolved value is documented
in one place and the spec stays environment-free data.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel, check_label_key, check_label_value

__all__ = [
    "AlertsSpec",
    "SloSpec",
    "BudgetSpec",
    "GuardrailsSpec",
    "TracingSpec",
    "CONFIDENCE_LEVELS",
    "ENFORCEMENT",
    "MODEL_ARMOR_LOCATIONS",
]

_EMAIL = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")
_TOPIC = re.compile(r"^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/topics/[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")
_WEBHOOK = re.compile(r"^https://[^\s/]+(/\S*)?$")
_BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")


def billing_account_id(v: Any) -> Any:
    """A billing account id as the Budget and Billing APIs name it (``012345-6789AB-CDEF01``);
    a ``billingAccounts/`` prefix is dropped. None stays None."""
    if isinstance(v, str) and v.startswith("billingAccounts/"):
        v = v[len("billingAccounts/") :]
    if v is not None and (not isinstance(v, str) or not _BILLING_ACCOUNT.match(v)):
        raise SpecIssue("is not a billing account id; use the form 012345-6789AB-CDEF01 (uppercase hex)")
    return v


_CURRENCY = re.compile(r"^[A-Z]{3}$")

#: Where Model Armor runs: its regions and the us / eu multi-regions (Model Armor docs,
#: "Model Armor locations").
MODEL_ARMOR_LOCATIONS = (
    "us",
    "eu",
    "asia-northeast1",
    "asia-northeast3",
    "asia-south1",
    "asia-southeast1",
    "australia-southeast2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west9",
    "northamerica-northeast2",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-west1",
)

#: Model Armor confidence levels, config value -> API enum (most to least sensitive).
CONFIDENCE_LEVELS: dict[str, str] = {
    "low-and-above": "LOW_AND_ABOVE",
    "medium-and-above": "MEDIUM_AND_ABOVE",
    "high": "HIGH",
}
#: Model Armor enforcement types, config value -> API enum.
ENFORCEMENT: dict[str, str] = {
    "inspect-and-block": "INSPECT_AND_BLOCK",
    "inspect-only": "INSPECT_ONLY",
}


def _ratio(v: float, *, open_low: bool = True, what: str = "a ratio") -> float:
    if not (0 < v <= 1 if open_low else 0 <= v <= 1):
        raise SpecIssue(f"is not {what}; allowed: greater than 0 and at most 1 (0.01 means 1%)")
    return v


class SloSpec(StrictModel):
    """Request-based service level objectives of every agent (``alerts.slo``)."""

    availability: float = Field(
        default=0.995,
        description="Availability goal: share of requests that are not 5xx, 0.9..0.9999. Default: 0.995.",
    )
    latency_ms: int | None = Field(
        default=None,
        description="Latency SLO threshold in ms: a request is good when faster. Default: alerts.latency_p99_ms.",
    )
    latency_goal: float = Field(
        default=0.99, description="Share of requests faster than latency_ms, 0.9..0.9999. Default: 0.99."
    )
    window_days: int = Field(default=28, description="Rolling compliance window in days, 1..30. Default: 28.")
    fast_burn_rate: float = Field(
        default=10.0,
        description="Alert when the error budget burns this many times too fast over 1 hour, > 1. Default: 10.",
    )
    slow_burn_rate: float = Field(
        default=2.0,
        description="Alert when the error budget burns this many times too fast over 6 hours, > 1. Default: 2.",
    )

    @field_validator("availability", "latency_goal")
    @classmethod
    def _goal(cls, v: float) -> float:
        if not 0.9 <= v <= 0.9999:
            raise SpecIssue("is not a usable SLO goal; allowed: 0.9..0.9999 (0.995 means 99.5%)")
        return v

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise SpecIssue("is not a positive number of milliseconds")
        return v

    @field_validator("window_days")
    @classmethod
    def _window(cls, v: int) -> int:
        if not 1 <= v <= 30:
            raise SpecIssue("is out of range; allowed: 1..30 days")
        return v

    @field_validator("fast_burn_rate", "slow_burn_rate")
    @classmethod
    def _burn(cls, v: float) -> float:
        if v <= 1:
            raise SpecIssue("is not a burn rate above 1; 1 means the budget lasts exactly the window")
        return v


class AlertsSpec(StrictModel):
    """Alert policies, notification channels, SLOs and log-based agent signals
    (``agent-platform:alerts``). The thresholds apply to every agent of the environment."""

    enabled: bool = Field(
        default=True,
        description="Create alert policies, SLOs, signal metrics and the dashboard. Default: true "
        "(the production policy set requires them).",
    )
    notification_emails: list[str] = Field(
        default_factory=list,
        description="Email addresses notified by every alert and by the budget. Default: [] "
        "(the production policy set requires at least one channel).",
    )
    pubsub_topics: list[str] = Field(
        default_factory=list,
        description="Existing Pub/Sub topics (projects/<project>/topics/<topic>) notified by every alert. Default: [].",
    )
    webhooks: list[str] = Field(
        default_factory=list, description="HTTPS URLs notified by every alert (token auth in the URL). Default: []."
    )
    latency_p99_ms: int = Field(
        default=2000, description="Alert when an agent's p99 request latency exceeds this, in ms. Default: 2000."
    )
    error_rate: float = Field(
        default=0.01, description="Alert when an agent's 5xx ratio exceeds this, 0..1. Default: 0.01."
    )
    memory_utilization: float = Field(
        default=0.8, description="Alert when p99 container memory utilization exceeds this, 0..1. Default: 0.8."
    )
    saturation: float = Field(
        default=0.8,
        description="Alert when the instance count exceeds this share of scaling.max_instances, 0..1. "
        "Default: 0.8. Not created for an agent whose min_instances equals max_instances.",
    )
    duration_minutes: int = Field(
        default=5,
        description="How long the error and latency conditions must hold before an incident opens, "
        "1..60 minutes; memory and saturation use twice this. Default: 5.",
    )
    tool_errors_per_5m: int = Field(
        default=10,
        description="Alert when an agent logs more tool-call errors than this in 5 minutes, >= 1. Default: 10.",
    )
    guardrail_blocks_per_5m: int = Field(
        default=20,
        description="Alert when Model Armor blocks more prompts or responses than this in 5 minutes, >= 1. Default: 20.",
    )
    runbook_url: str | None = Field(
        default=None, description="Runbook linked from every alert's documentation (https). Default: none."
    )
    log_metric_wait_minutes: int = Field(
        default=10,
        description="Minutes the tool-error and guardrail-block alert policies wait, on an agent's first "
        "deployment, for its new log-based metrics to become visible to Cloud Monitoring (which can take up "
        "to 10 minutes; an alert on a metric it cannot see yet is refused), 0..60. 0 creates them at once "
        "(only when the metrics already exist). Default: 10.",
    )
    slo: SloSpec = Field(default_factory=SloSpec, description="SLO settings. Default: see SloSpec.")

    @field_validator("notification_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for i, email in enumerate(v):
            if not _EMAIL.match(email):
                raise SpecIssue("is not an email address", path=(i,), value=email, has_value=True)
        for i, email in enumerate(v):
            if email in v[:i]:
                raise SpecIssue("is listed twice; list each address once", path=(i,), value=email, has_value=True)
        return v

    @field_validator("pubsub_topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        for i, topic in enumerate(v):
            if not _TOPIC.match(topic):
                raise SpecIssue(
                    "is not a Pub/Sub topic; use projects/<project>/topics/<topic>",
                    path=(i,),
                    value=topic,
                    has_value=True,
                )
        return v

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, v: list[str]) -> list[str]:
        for i, url in enumerate(v):
            if not _WEBHOOK.match(url):
                raise SpecIssue("is not an https URL", path=(i,), value=url, has_value=True)
        return v

    @field_validator("runbook_url")
    @classmethod
    def _runbook(cls, v: str | None) -> str | None:
        if v is not None and not _WEBHOOK.match(v):
            raise SpecIssue("is not an https URL")
        return v

    @field_validator("latency_p99_ms")
    @classmethod
    def _latency(cls, v: int) -> int:
        if v <= 0:
            raise SpecIssue("is not a positive number of milliseconds")
        return v

    @field_validator("error_rate", "memory_utilization", "saturation")
    @classmethod
    def _ratios(cls, v: float) -> float:
        return _ratio(v)

    @field_validator("duration_minutes")
    @classmethod
    def _duration(cls, v: int) -> int:
        if not 1 <= v <= 60:
            raise SpecIssue("is out of range; allowed: 1..60 minutes")
        return v

    @field_validator("log_metric_wait_minutes")
    @classmethod
    def _wait(cls, v: int) -> int:
        if not 0 <= v <= 60:
            raise SpecIssue("is out of range; allowed: 0..60 minutes")
        return v

    @field_validator("tool_errors_per_5m", "guardrail_blocks_per_5m")
    @classmethod
    def _counts(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is not a positive count")
        return v

    @property
    def has_channels(self) -> bool:
        return bool(self.notification_emails or self.pubsub_topics or self.webhooks)

    @property
    def slo_latency_ms(self) -> int:
        return self.slo.latency_ms if self.slo.latency_ms is not None else self.latency_p99_ms


class BudgetSpec(StrictModel):
    """The environment's billing budget (``agent-platform:budget``)."""

    billing_account: str | None = Field(
        default=None,
        description="Billing account id (012345-6789AB-CDEF01) that pays for the project. Default: none, "
        "which creates no budget; required in production.",
    )
    monthly_amount: float | None = Field(
        default=None, description="Monthly budget in `currency`, > 0. Required with billing_account."
    )
    currency: str = Field(
        default="USD",
        description="ISO 4217 code of the amount; must be the billing account's currency. Default: USD.",
    )
    thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.9, 1.0],
        description="Notify when ACTUAL spend reaches these shares of the amount, ascending, each 0..10 "
        "(1.0 = 100%). Default: [0.5, 0.9, 1.0].",
    )
    forecast_thresholds: list[float] = Field(
        default_factory=lambda: [1.0],
        description="Notify when FORECASTED spend reaches these shares, ascending, each 0..10. Default: [1.0].",
    )
    label_filter: dict[str, str] = Field(
        default_factory=dict,
        description="Count only spend carrying this label (one key: value pair, a Budget API limit). "
        "Default: {} (all spend of the project, including model calls, which carry no resource labels).",
    )
    pubsub: bool = Field(
        default=True,
        description="Publish budget notifications to a Pub/Sub topic automation can subscribe to. Default: true.",
    )

    @field_validator("billing_account", mode="before")
    @classmethod
    def _account(cls, v: Any) -> Any:
        return billing_account_id(v)

    @field_validator("monthly_amount")
    @classmethod
    def _amount(cls, v: float | None) -> float | None:
        if v is not None and not 0 < v <= 1e12:
            raise SpecIssue("is not a positive amount")
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        if not _CURRENCY.match(v):
            raise SpecIssue("is not a currency code; use three uppercase letters, e.g. USD or EUR")
        return v

    @field_validator("thresholds", "forecast_thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if any(not 0 < t <= 10 for t in v):
            raise SpecIssue("has a share outside 0..10; give ascending shares of the amount, e.g. [0.5, 0.9, 1.0]")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise SpecIssue("is not strictly ascending; give ascending shares of the amount, e.g. [0.5, 0.9, 1.0]")
        return v

    @field_validator("label_filter", mode="before")
    @classmethod
    def _label_filter(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        if len(v) > 1:
            raise SpecIssue("has more than one label; the Budget API filters on a single key: value pair")
        out = {}
        for key, value in v.items():
            value = str(value).lower() if isinstance(value, bool) else str(value)
            if not check_label_key(str(key)) or not check_label_value(value):
                raise SpecIssue(
                    "is not a label; use a lowercase label key and value", path=(key,), value=value, has_value=True
                )
            out[str(key)] = value
        return out

    @model_validator(mode="after")
    def _complete(self) -> BudgetSpec:
        if self.billing_account is not None and self.monthly_amount is None:
            raise SpecIssue(
                "is not set; a budget needs its monthly amount (in the billing account's currency)",
                path=("monthly_amount",),
                value=None,
                has_value=True,
            )
        if self.billing_account is not None and not (self.thresholds or self.forecast_thresholds):
            raise SpecIssue(
                "is empty and so is forecast_thresholds; a budget that never notifies is useless",
                path=("thresholds",),
                value=[],
                has_value=True,
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.billing_account is not None


Confidence = Literal["low-and-above", "medium-and-above", "high"]


class GuardrailsSpec(StrictModel):
    """Model Armor screening of prompts and responses (``agent-platform:guardrails``)."""

    model_armor: bool = Field(
        default=True,
        description="Create a Model Armor template and give it to every agent (MODEL_ARMOR_TEMPLATE). Default: true.",
    )
    location: str | None = Field(
        default=None,
        description="Model Armor location: one of its regions (e.g. us-central1, europe-west4) or the us / eu "
        "multi-regions. Default: gcp:region, which must then be a Model Armor region.",
    )
    jailbreak_confidence: Confidence | None = Field(
        default=None,
        description="Prompt-injection and jailbreak detection threshold: low-and-above | medium-and-above | high. "
        "Default: low-and-above in production (strictest), medium-and-above elsewhere.",
    )
    rai_confidence: Confidence | None = Field(
        default=None,
        description="Responsible-AI filters (sexually explicit, hate speech, harassment, dangerous) threshold. "
        "Default: medium-and-above in production, high elsewhere.",
    )
    malicious_urls: bool = Field(default=True, description="Detect malicious URLs. Default: true.")
    sensitive_data: bool = Field(
        default=True, description="Sensitive Data Protection (basic: credentials, card numbers, ids). Default: true."
    )
    enforcement: Literal["inspect-and-block", "inspect-only"] = Field(
        default="inspect-and-block",
        description="inspect-and-block | inspect-only (report findings, never block). Default: inspect-and-block.",
    )
    log_operations: bool = Field(
        default=True, description="Log every sanitize operation (audit trail of blocks). Default: true."
    )

    @field_validator("location")
    @classmethod
    def _location(cls, v: str | None) -> str | None:
        if v is not None and v not in MODEL_ARMOR_LOCATIONS:
            raise SpecIssue(f"is not a Model Armor location; allowed: {', '.join(MODEL_ARMOR_LOCATIONS)}")
        return v

    def effective_jailbreak(self, production: bool) -> str:
        level = self.jailbreak_confidence or ("low-and-above" if production else "medium-and-above")
        return CONFIDENCE_LEVELS[level]

    def effective_rai(self, production: bool) -> str:
        level = self.rai_confidence or ("medium-and-above" if production else "high")
        return CONFIDENCE_LEVELS[level]


class TracingSpec(StrictModel):
    """OpenTelemetry settings handed to every agent as env vars (``agent-platform:tracing``)."""

    enabled: bool = Field(default=True, description="Set the OTEL_* env vars on every agent. Default: true.")
    sample_rate: float | None = Field(
        default=None,
        description="Share of traces sampled (parent-based trace-id ratio), 0..1. "
        "Default: 0.1 in production, 1.0 elsewhere.",
    )
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP exporter endpoint (https URL). Default: none (the agent's exporter decides)."
    )

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 1:
            raise SpecIssue("is not a sampling ratio; allowed: 0..1 (0.1 means 10% of traces)")
        return v

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not _WEBHOOK.match(v):
            raise SpecIssue("is not an https URL")
        return v

    def effective_sample_rate(self, production: bool) -> float:
        if self.sample_rate is not None:
            return self.sample_rate
        return 0.1 if production else 1.0
