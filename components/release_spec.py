"""Typed settings of the release flow: readiness gates and canary analysis.

They live in the stack config beside the agents (``agent-platform:gates`` and
``agent-platform:agents.<name>.rollout.analysis``) and are read by the ``agentstage`` release
commands, not by the resources: changing them never changes the plan.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel

__all__ = ["LoadTestGates", "GatesSpec", "AnalysisSpec", "SECONDS_PER_MONTH"]

#: The month of ``gates.monthly_requests``: 30 days, in seconds.
SECONDS_PER_MONTH = 30 * 86400


def _ratio(v: float) -> float:
    if not 0 <= v <= 1:
        raise SpecIssue("is not a ratio; allowed: 0..1 (0.01 means 1%)")
    return v


def _positive_seconds(v: int) -> int:
    if v < 1:
        raise SpecIssue("is not a positive number of seconds")
    return v


def _positive_ms(v: int | None) -> int | None:
    if v is not None and v <= 0:
        raise SpecIssue("is not a positive number of milliseconds")
    return v


class LoadTestGates(StrictModel):
    """Limits a load test (Locust ``--csv`` output) must stay within."""

    p50_ms: int | None = Field(default=None, description="Maximum median latency in ms. Default: not checked.")
    p95_ms: int | None = Field(default=None, description="Maximum p95 latency in ms. Default: not checked.")
    p99_ms: int = Field(default=2000, description="Maximum p99 latency in ms. Default: 2000.")
    max_error_rate: float = Field(
        default=0.01, description="The failure ratio must stay below this, 0..1. Default: 0.01 (1%)."
    )
    peak_multiple: float = Field(
        default=10.0,
        description="The run must have sustained this multiple of the agent's expected peak requests per "
        "second (`gates.peak_requests_per_second`, else derived from `gates.monthly_requests`), read from "
        "its Locust `_stats_history.csv`, >= 1. Default: 10.",
    )
    sustain_seconds: int = Field(
        default=60,
        description="... for at least this many seconds (first to last history sample at or above it, "
        "failure ratio below `max_error_rate` meanwhile), >= 1. Default: 60.",
    )

    @field_validator("p50_ms", "p95_ms", "p99_ms")
    @classmethod
    def _ms(cls, v: int | None) -> int | None:
        return _positive_ms(v)

    @field_validator("peak_multiple")
    @classmethod
    def _multiple(cls, v: float) -> float:
        if not math.isfinite(v) or v < 1:
            raise SpecIssue("is not a multiple of the peak; allowed: a finite number >= 1, e.g. 10")
        return v

    @field_validator("sustain_seconds")
    @classmethod
    def _sustain(cls, v: int) -> int:
        return _positive_seconds(v)

    @field_validator("max_error_rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        return _ratio(v)


class GatesSpec(StrictModel):
    """Readiness gates a release must pass before it may take production traffic."""

    eval: dict[str, float] = Field(
        default_factory=dict,
        description="Evaluation metric -> minimum score, for every agent. Default: {} (the evaluation "
        "gate then fails: a release is never ready without thresholds).",
    )
    agents: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Agent -> evaluation metric -> minimum score; adds to and overrides `eval` for "
        "that agent. Default: {}.",
    )
    load_test: LoadTestGates = Field(
        default_factory=LoadTestGates, description="Load test limits. Default: p99 <= 2000 ms, errors < 1%."
    )
    max_memory_growth: float = Field(
        default=0.10,
        description="Maximum growth of memory over a load test run (fitted trend, relative to the "
        "run's mean), 0..1. Default: 0.10.",
    )
    monthly_requests: dict[str, int] = Field(
        default_factory=dict,
        description="Agent -> expected production requests per month (30 days), for the cost gate (the "
        "sum over the stack's agents of cost per request x volume <= budget) and the expected peak. "
        "Default: {} (the cost gate then fails).",
    )
    peak_requests_per_second: dict[str, float] = Field(
        default_factory=dict,
        description="Agent -> expected peak production requests per second, for the load test's peak "
        "check (> 0). Default: {} (derived: monthly_requests / 2,592,000 s x `peak_to_average`).",
    )
    peak_to_average: float = Field(
        default=4.0,
        description="Ratio of the peak to the average request rate, deriving an agent's expected peak from "
        "`monthly_requests` when `peak_requests_per_second` does not give it, >= 1. Default: 4 (traffic "
        "concentrated in working hours).",
    )
    max_eval_regression: float = Field(
        default=0.02,
        description="How far (absolute) an evaluation score may fall below the stable release's score on "
        "the same dataset version, when a report of the stable release is given "
        "(`--eval AGENT@STABLE_VERSION=FILE`), >= 0. Default: 0.02.",
    )
    max_rollback_seconds: int = Field(
        default=300,
        description="A rollback must complete within this many seconds: the offline edit and plan of the "
        "rollback, timed at gate time, plus the last measured `pulumi up` of a rollback in the ledger "
        "(`applied_seconds`), >= 1. Default: 300 (5 min).",
    )

    @field_validator("eval")
    @classmethod
    def _scores(cls, v: dict[str, float]) -> dict[str, float]:
        for metric, score in v.items():
            _score(score, (metric,))
        return v

    @field_validator("agents")
    @classmethod
    def _agent_scores(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for agent, scores in v.items():
            for metric, score in scores.items():
                _score(score, (agent, metric))
        return v

    @field_validator("peak_requests_per_second")
    @classmethod
    def _peak(cls, v: dict[str, float]) -> dict[str, float]:
        for agent, rps in v.items():
            if not math.isfinite(rps) or rps <= 0:
                raise SpecIssue(
                    "is not a request rate; give the expected peak requests per second, > 0",
                    path=(agent,),
                    value=rps,
                    has_value=True,
                )
        return v

    @field_validator("peak_to_average")
    @classmethod
    def _peak_ratio(cls, v: float) -> float:
        if not math.isfinite(v) or v < 1:
            raise SpecIssue("is not a peak-to-average ratio; allowed: a finite number >= 1, e.g. 4")
        return v

    @field_validator("max_eval_regression")
    @classmethod
    def _regression(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise SpecIssue("is not an allowed regression; allowed: a finite score difference >= 0, e.g. 0.02")
        return v

    @field_validator("max_rollback_seconds")
    @classmethod
    def _rollback(cls, v: int) -> int:
        return _positive_seconds(v)

    @field_validator("max_memory_growth")
    @classmethod
    def _growth(cls, v: float) -> float:
        return _ratio(v)

    @field_validator("monthly_requests")
    @classmethod
    def _volume(cls, v: dict[str, int]) -> dict[str, int]:
        for agent, n in v.items():
            if n < 0:
                raise SpecIssue(
                    "is negative; give the expected requests per month", path=(agent,), value=n, has_value=True
                )
        return v

    def eval_thresholds(self, agent: str) -> dict[str, float]:
        """The evaluation thresholds that apply to ``agent``."""
        return {**self.eval, **self.agents.get(agent, {})}

    def expected_peak(self, agent: str) -> tuple[float, str] | None:
        """``agent``'s expected peak requests per second and where it comes from, or None when
        neither ``peak_requests_per_second`` nor ``monthly_requests`` gives it."""
        if agent in self.peak_requests_per_second:
            return self.peak_requests_per_second[agent], f"gates.peak_requests_per_second.{agent}"
        volume = self.monthly_requests.get(agent)
        if volume is None:
            return None
        return (
            volume / SECONDS_PER_MONTH * self.peak_to_average,
            f"monthly_requests {volume:,} / 30 days x peak_to_average {self.peak_to_average:g}",
        )


def _score(v: float, path: tuple[str, ...]) -> None:
    if not math.isfinite(v) or v < 0:
        raise SpecIssue("is not a minimum score; give a finite score >= 0", path=path, value=v, has_value=True)


class AnalysisSpec(StrictModel):
    """How a canary is judged against the stable release (docs/release.md, "The canary judge").

    Every check is a sequential test over the whole rollout, so looking every minute costs
    nothing: ``alpha`` is the chance a healthy canary is rolled back by any check, shared
    equally between the checks that run."""

    alpha: float = Field(
        default=0.01,
        description="Chance of rolling back a canary as good as stable, over the whole rollout and all "
        "checks together, 0..1 (exclusive). Default: 0.01.",
    )
    relative_error_tolerance: float = Field(
        default=0.25,
        description="The canary's rate of 5xx + 429 responses may exceed stable's by this ratio, >= 0. "
        "Default: 0.25 (25% more).",
    )
    absolute_error_tolerance: float = Field(
        default=0.002,
        description="... and by this much in absolute terms, 0..1; a regression must exceed both. "
        "Default: 0.002 (0.2 percentage points).",
    )
    latency_tolerance: float = Field(
        default=0.10,
        description="The canary's latency distribution may be slower than stable's by this ratio, 0..1. Default: 0.10.",
    )
    signals: list[str] = Field(
        default_factory=list,
        description="The agent's log-based signals compared like errors (tool-errors, guardrail-blocks). "
        "Default: [] (not compared).",
    )
    min_requests: int = Field(
        default=50,
        description="Canary requests a step must have served before it may advance. Default: 50.",
    )
    min_points: int = Field(
        default=3,
        description="Minutes with canary data a step must have before it may advance. Default: 3.",
    )
    max_extension_minutes: int = Field(
        default=60,
        description="With too little traffic, a step bakes up to this many minutes longer; then the rollout "
        "pauses for a person (never a rollback for want of data). Default: 60.",
    )
    watch_minutes: int = Field(
        default=30,
        description="After 100%, the previous revision stays in the traffic block and the release is "
        "watched this long before it completes, >= 1. Default: 30.",
    )
    memory_limit: float = Field(
        default=0.95,
        description="Memory utilisation (of the container limit) a revision must not be heading for, "
        "0..1. Default: 0.95.",
    )
    memory_horizon_minutes: int = Field(
        default=360,
        description="Roll back when the canary's memory trend surely reaches memory_limit within this many "
        "minutes. Default: 360 (6 h).",
    )
    deploy_timeout_minutes: int = Field(
        default=20,
        description="How long a step may wait for the live traffic split to match before the rollout says "
        "so loudly (it keeps waiting; the bake time starts only then). Default: 20.",
    )
    max_metrics_failures: int = Field(
        default=5,
        description="Failed metric reads in a row before the rollout holds and says why. Default: 5.",
    )
    request_logs: bool = Field(
        default=True,
        description="Cloud Run: also read the failed requests (5xx, 429) from the service's request logs, "
        "seconds old, so a failing canary is rolled back before Cloud Monitoring (up to 3 min late) shows "
        "its minutes; a step still advances on Monitoring alone. Needs roles/logging.viewer. Default: true.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in (
                ("error_tolerance", "relative_error_tolerance and absolute_error_tolerance"),
                ("max_inconclusive", "max_extension_minutes (low traffic extends the step, then pauses for a person)"),
            ):
                if old in data:
                    raise SpecIssue(f"no longer exists; use {new}", path=(old,), value=data[old], has_value=True)
        return data

    @field_validator(
        "min_requests",
        "min_points",
        "watch_minutes",
        "max_metrics_failures",
        "deploy_timeout_minutes",
        "memory_horizon_minutes",
    )
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is not a positive count")
        return v

    @field_validator("max_extension_minutes")
    @classmethod
    def _extension(cls, v: int) -> int:
        if v < 0:
            raise SpecIssue("is negative")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        if not 0 < v < 1:
            raise SpecIssue("is not a probability; allowed: between 0 and 1, e.g. 0.01")
        return v

    @field_validator("relative_error_tolerance")
    @classmethod
    def _relative(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise SpecIssue("is not a ratio >= 0 (0.25 means 25% more)")
        return v

    @field_validator("latency_tolerance", "absolute_error_tolerance", "memory_limit")
    @classmethod
    def _tolerance(cls, v: float) -> float:
        return _ratio(v)

    @field_validator("signals")
    @classmethod
    def _signals(cls, v: list[str]) -> list[str]:
        known = ("tool-errors", "guardrail-blocks")
        for s in v:
            if s not in known:
                raise SpecIssue(f"has {s!r}; allowed: {', '.join(known)}")
        return v
