"""Typed settings of the release flow: readiness gates and canary analysis.

They live in the stack config beside the agents (``agent-platform:gates`` and
``agent-platform:agents.<name>.rollout.analysis``) and are read by the ``agentstage`` release
commands, not by the resources: changing them never changes the plan.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from components.specbase import SpecIssue, StrictModel

__all__ = ["LoadTestGates", "GatesSpec", "AnalysisSpec"]


def _ratio(v: float) -> float:
    if not 0 <= v <= 1:
        raise SpecIssue("is not a ratio; allowed: 0..1 (0.01 means 1%)")
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

    @field_validator("p50_ms", "p95_ms", "p99_ms")
    @classmethod
    def _ms(cls, v: int | None) -> int | None:
        return _positive_ms(v)

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
        description="Agent -> expected production requests per month, for the cost gate "
        "(cost per request x volume <= budget). Default: {} (the cost gate then fails).",
    )

    @field_validator("max_memory_growth")
    @classmethod
    def _growth(cls, v: float) -> float:
        return _ratio(v)

    @field_validator("monthly_requests")
    @classmethod
    def _volume(cls, v: dict[str, int]) -> dict[str, int]:
        for agent, n in v.items():
            if n < 0:
                raise SpecIssue("is negative; give the expected requests per month", path=(agent,), value=n,
                                has_value=True)
        return v

    def eval_thresholds(self, agent: str) -> dict[str, float]:
        """The evaluation thresholds that apply to ``agent``."""
        return {**self.eval, **self.agents.get(agent, {})}


class AnalysisSpec(StrictModel):
    """How a canary step is judged against the stable release (Kayenta/Flagger style)."""

    min_requests: int = Field(
        default=50,
        description="Minimum canary requests in the analysis window; fewer is inconclusive. Default: 50.",
    )
    min_points: int = Field(
        default=3,
        description="Minimum one-minute points with data per revision; fewer is inconclusive. Default: 3.",
    )
    alpha: float = Field(
        default=0.05, description="Significance level of the canary-vs-stable tests, 0..1. Default: 0.05."
    )
    latency_tolerance: float = Field(
        default=0.10,
        description="The canary's median latency may exceed stable's by this ratio before a significant "
        "difference counts as a regression. Default: 0.10.",
    )
    error_tolerance: float = Field(
        default=0.005,
        description="The canary's error rate may exceed stable's by this much (absolute) before a "
        "significant difference counts as a regression. Default: 0.005.",
    )
    max_inconclusive: int = Field(
        default=3,
        description="Roll back on this many inconclusive analyses in a row at one step (after the bake "
        "time). Default: 3.",
    )

    @field_validator("min_requests", "min_points", "max_inconclusive")
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is not a positive count")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        if not 0 < v < 1:
            raise SpecIssue("is not a significance level; allowed: between 0 and 1, e.g. 0.05")
        return v

    @field_validator("latency_tolerance", "error_tolerance")
    @classmethod
    def _tolerance(cls, v: float) -> float:
        return _ratio(v)
