"""Canary analysis: decide advance, hold or roll back for one agent's canary step.

The analysis window is the last ``bake_minutes`` (and never before the step started). Two
kinds of evidence, as Kayenta and Flagger use them:

- static thresholds on the canary: error ratio <= ``max_error_rate`` and p99 latency (the
  request-weighted mean of the per-minute p99 values) <= ``max_latency_p99_ms``;
- a baseline comparison with the stable revision over the same window: a one-sided
  Mann–Whitney U test on the per-minute latency samples and a one-sided two-proportion
  z-test on the error counts. A difference is a regression only when it is significant
  (p < ``alpha``) *and* larger than the tolerance, so a huge sample never fails a canary for
  a negligible difference.

Too little data (fewer than ``min_requests`` canary requests or ``min_points`` minutes with
data, or no stable data to compare with) is *inconclusive*: the step holds, and
``max_inconclusive`` inconclusive analyses in a row after the bake time roll it back.
Any failed check with enough data rolls back at once, even before the bake time is over.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from components.spec import AgentSpec
from agentstage.release.metrics import Series

__all__ = ["Check", "Analysis", "analyse", "next_step", "ADVANCE", "COMPLETE", "HOLD", "ROLLBACK"]

ADVANCE, COMPLETE, HOLD, ROLLBACK = "advance", "complete", "hold", "rollback"


@dataclass
class Check:
    """One metric compared with its threshold. ``ok`` is None when it could not be judged."""

    name: str
    value: float | None
    threshold: float | None
    ok: bool | None
    detail: str = ""


@dataclass
class Analysis:
    agent: str
    release: str
    stable: str
    percent: int
    verdict: str
    to_percent: int
    reason: str
    checks: list[Check] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    inconclusive: bool = False
    window: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [asdict(c) for c in self.checks]
        return out


def next_step(steps: list[int], percent: int) -> int:
    """The first step above ``percent`` (100 when none is)."""
    return next((s for s in steps if s > percent), 100)


@dataclass
class _Totals:
    requests: float
    errors: float
    points: int
    latency: list[float]
    weights: list[float]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def p99(self) -> float | None:
        if not self.latency:
            return None
        if sum(self.weights) > 0:
            return sum(v * w for v, w in zip(self.latency, self.weights)) / sum(self.weights)
        return sum(self.latency) / len(self.latency)


def _totals(series: Series | None) -> _Totals:
    t = _Totals(0.0, 0.0, 0, [], [])
    if series is None:
        return t
    for p in series.points:
        # a minute whose error count is missing is a minute without data, never one without errors
        if p.requests and p.errors is not None:
            t.requests += p.requests
            t.errors += p.errors
            t.points += 1
        if p.latency_p99_ms is not None:
            t.latency.append(p.latency_p99_ms)
            t.weights.append(p.requests or 0.0)
    return t


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _mann_whitney(canary: list[float], stable: list[float], alpha: float, tolerance: float) -> dict[str, Any]:
    from scipy.stats import mannwhitneyu

    res = mannwhitneyu(canary, stable, alternative="greater")
    cm, sm = _median(canary), _median(stable)
    significant = bool(res.pvalue < alpha)
    regression = significant and cm > sm * (1 + tolerance)
    return {"test": "mann-whitney-u", "u": float(res.statistic), "p_value": float(res.pvalue),
            "canary_median_ms": cm, "stable_median_ms": sm, "tolerance": tolerance,
            "significant": significant, "regression": regression}


def _two_proportion(ce: float, cn: float, se: float, sn: float, alpha: float, tolerance: float) -> dict[str, Any]:
    from scipy.stats import norm

    p1, p2 = ce / cn, se / sn
    pooled = (ce + se) / (cn + sn)
    var = pooled * (1 - pooled) * (1 / cn + 1 / sn)
    if var <= 0:
        z, p = 0.0, 1.0
    else:
        z = (p1 - p2) / math.sqrt(var)
        p = float(norm.sf(z))
    significant = p < alpha
    regression = significant and (p1 - p2) > tolerance
    return {"test": "two-proportion-z", "z": z, "p_value": p, "canary_error_rate": p1,
            "stable_error_rate": p2, "tolerance": tolerance, "significant": significant,
            "regression": regression}


def analyse(
    agent: str,
    spec: AgentSpec,
    *,
    canary: Series | None,
    stable: Series | None,
    now: dt.datetime,
    step_started: dt.datetime | None,
    inconclusive_streak: int = 0,
    skip_bake: bool = False,
) -> Analysis:
    """Judge the canary of ``agent`` at ``now`` from the series of both revisions."""
    assert spec.stable is not None, "analyse() needs a canary in flight"
    ro, cfg = spec.rollout, spec.rollout.analysis
    percent = spec.canary_percent
    target = next_step(ro.steps, percent)
    bake = dt.timedelta(minutes=ro.bake_minutes)
    start = now - bake
    if step_started and not skip_bake:
        start = max(start, step_started)
    canary = canary.window(start, now) if canary else None
    stable = stable.window(start, now) if stable else None
    c, s = _totals(canary), _totals(stable)

    if skip_bake:
        baked, bake_note = True, "bake time skipped by the operator"
    elif step_started is not None:
        elapsed = (now - step_started).total_seconds() / 60
        baked, bake_note = elapsed >= ro.bake_minutes, f"{elapsed:.0f} of {ro.bake_minutes} min baked"
    else:  # step start not in the ledger: the canary must have served the whole window
        baked = c.points >= ro.bake_minutes
        bake_note = f"step start unknown; canary served {c.points} of {ro.bake_minutes} min"

    result = Analysis(agent, spec.release.version, spec.stable.version, percent, HOLD, percent, "",
                      window={"start": start.isoformat(), "end": now.isoformat(), "baked": baked,
                              "bake": bake_note, "canary_requests": c.requests, "stable_requests": s.requests,
                              "canary_points": c.points, "stable_points": s.points})
    enough = c.requests >= cfg.min_requests and c.points >= cfg.min_points
    rate, p99 = c.error_rate, c.p99
    result.checks = [
        Check("error_rate", rate, ro.max_error_rate, None if not enough or rate is None else rate <= ro.max_error_rate,
              f"{c.errors:.0f} errors / {c.requests:.0f} requests"),
        Check("latency_p99_ms", p99, ro.max_latency_p99_ms,
              None if not enough or p99 is None else p99 <= ro.max_latency_p99_ms,
              f"{len(c.latency)} one-minute p99 points"),
    ]
    comparable = enough and s.requests > 0 and s.points >= cfg.min_points
    if comparable:
        if len(c.latency) >= cfg.min_points and len(s.latency) >= cfg.min_points:
            mw = _mann_whitney(c.latency, s.latency, cfg.alpha, cfg.latency_tolerance)
            result.statistics["latency"] = mw
            result.checks.append(Check("latency_vs_stable", mw["p_value"], cfg.alpha, not mw["regression"],
                                       f"median {mw['canary_median_ms']:.0f} ms vs {mw['stable_median_ms']:.0f} ms"))
        else:
            comparable = False
        tp = _two_proportion(c.errors, c.requests, s.errors, s.requests, cfg.alpha, cfg.error_tolerance)
        result.statistics["errors"] = tp
        result.checks.append(Check("errors_vs_stable", tp["p_value"], cfg.alpha, not tp["regression"],
                                   f"{tp['canary_error_rate']:.2%} vs {tp['stable_error_rate']:.2%}"))

    failed = [ch for ch in result.checks if ch.ok is False]
    if failed:
        result.verdict, result.to_percent = ROLLBACK, 0
        result.reason = "; ".join(_failure(ch) for ch in failed)
        return result
    if not baked:
        result.reason = f"baking: {bake_note}"
        return result
    if not enough or not comparable:
        why = (
            f"not enough canary data ({c.requests:.0f} requests in {c.points} min; need "
            f"{cfg.min_requests} in {cfg.min_points} min)"
            if not enough
            else f"no stable baseline to compare with ({s.requests:.0f} requests in {s.points} min)"
        )
        streak = inconclusive_streak + 1
        result.inconclusive = True
        if streak >= cfg.max_inconclusive:
            result.verdict, result.to_percent = ROLLBACK, 0
            result.reason = f"inconclusive {streak} times in a row (limit {cfg.max_inconclusive}): {why}"
        else:
            result.reason = f"inconclusive ({streak} of {cfg.max_inconclusive}): {why}"
        return result
    result.verdict = COMPLETE if target >= 100 else ADVANCE
    result.to_percent = target
    result.reason = f"all checks passed ({bake_note}); " + (
        "the release takes all traffic" if target >= 100 else f"advance {percent}% -> {target}%"
    )
    return result


def _failure(ch: Check) -> str:
    if ch.name == "error_rate":
        return f"error rate {ch.value:.2%} > {ch.threshold:.2%}"
    if ch.name == "latency_p99_ms":
        return f"p99 latency {ch.value:.0f} ms > {ch.threshold:.0f} ms"
    if ch.name == "latency_vs_stable":
        return f"latency regression vs stable ({ch.detail}, Mann-Whitney p={ch.value:.3g})"
    return f"error regression vs stable ({ch.detail}, two-proportion p={ch.value:.3g})"
