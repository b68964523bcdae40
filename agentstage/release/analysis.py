"""The canary judge: is the candidate revision worse than the stable one?

Every check is a *sequential* test over the whole rollout (from when the config asked for the
canary to now), recomputed from the series at every look: a check rolls back when its evidence
for a regression — a likelihood ratio, kept as a CUSUM (Page, 1954: the log-ratio summed minute
by minute, never below 0) — reaches ``k / alpha`` for ``k`` checks. The comparisons of counts
with stable run one CUSUM per alternative of a small grid (2x and 4x the tolerated ratio), each
with its share of the check's alpha (Bonferroni: each rolls back at ``grid size x k / alpha``),
so a large regression is caught about as fast as if its size were known. No minute carries
more than ``MINUTE_CAP`` of the bound, so at least three minutes must agree.

What ``alpha`` bounds, truthfully: by Ville's inequality, one excursion of one CUSUM reaches its
bound with probability at most ``1 / bound`` for a canary at the edge of H0 (exactly the
tolerated regression) whose failures follow the model. The CUSUM restarts whenever its evidence
falls back to 0, so over a rollout of ``N`` minutes the chance is at most ``N`` times that (a
union over the minutes an excursion can start), and per-revision bursts (an instance crash)
are not in the model: the minute cap is their only guard. So for a canary at the edge of H0
``alpha`` is the budget of each excursion, not of the whole rollout; ``bench/canary.py``
measures the whole-rollout rate at the edge (the ``failures x1.25`` scenario: up to 2.0%, above
``alpha``) and for a canary as good as stable (the healthy scenarios: at most 0.2% with prompt
deploys, within the budget: its ratio is 1, well inside H0's tolerance; up to 1.2% with 12-minute
deploys, about the budget: bursts while a step waits for its deploy).

Checks (``docs/release.md``, "The canary judge"):

- ``errors_vs_stable``: failed requests (5xx + 429) of the canary against stable's *in the same
  minutes*. Given how many requests failed in a minute, which revision each failure came from
  is binomial with the canary's share of the traffic (the exact conditional test for two
  Poisson rates, Przyborowski & Wilenski 1940), so the test is exact at small counts and
  outages both revisions share cancel out. H0: canary rate <= stable x (1 + relative
  tolerance) and <= stable + absolute tolerance; H1: 2x and 4x that (one CUSUM each). A burst
  of one revision (an instance crash) is not in this model: the minute cap keeps one from
  rolling back alone. In minutes without stable traffic (after 100%) the canary is compared
  with stable's rate over the rollout (its upper bound), each minute's ratio discounted by the
  over-dispersion of stable's own per-minute counts.
- ``latency_vs_stable``: from the request-latency *distributions*: the share of canary
  requests slower than (1 + latency tolerance) x L against the share of stable requests slower
  than L, where L is the bucket bound at stable's pooled p90 — the same conditional test
  (H0 ratio 1, H1 ratio 1.5).
- ``error_rate`` and ``latency_p99``: the absolute limits of the rollout, one-sample tests on
  the canary alone (H0: at the limit, H1: twice the excess); the pooled p99 is a true p99 of
  the merged distribution.
- ``memory_trend``: the canary's memory utilisation trend (least squares, standard error
  widened for autocorrelation) must not reach the memory limit within the horizon.
- ``signal:<name>``: the agent's own log-based counts (tool errors, guardrail blocks), like
  errors, when configured.

A check with no data says so (``ok`` is None); it never passes for want of data. Whether a
step may advance (enough traffic, bake time) is decided by :mod:`agentstage.release.state`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agentstage.release.metrics import Series, exceeding, quantile
from components.spec import AgentSpec

if TYPE_CHECKING:
    from agentstage.release.requestlogs import RequestLogFailures

__all__ = [
    "Check",
    "Analysis",
    "judge",
    "with_request_logs",
    "fresh_errors_vs_stable",
    "next_step",
    "ADVANCE",
    "COMPLETE",
    "HOLD",
    "ROLLBACK",
    "WARMUP_MINUTES",
]

ADVANCE, COMPLETE, HOLD, ROLLBACK = "advance", "complete", "hold", "rollback"

#: H1 of the comparisons of counts with stable: a grid of this many times the tolerated ratio.
#: Each alternative has its own CUSUM and its share of the check's alpha (the bound times the
#: grid's size, Bonferroni): 2x is the most powerful against a doubling, 4x against the large
#: regressions (x5 failures) that must be rolled back within minutes.
ALTERNATIVES = (2.0, 4.0)
#: H1 of the latency comparison (the tolerance is already in the threshold).
LATENCY_ALTERNATIVE = 1.5
#: The share of the rollback bound one minute can carry (so at least three minutes must agree).
MINUTE_CAP = 0.4
#: A step advances only while each check's evidence *now* is below the bound raised to this
#: power (the square root: 22x for a bound of 500x): a check halfway to a rollback, in logs, is
#: inconclusive, and the step keeps baking at its share (then pauses for a person, as for too
#: little data) instead of giving a suspect canary more traffic. Rolling back still needs the
#: whole bound, so this never rolls a canary back.
ADVANCE_SHARE = 0.5
#: Memory minutes left out of the trend after a revision starts serving (warm-up, caches).
WARMUP_MINUTES = 10
#: ... and after a step changes the load.
STEP_SETTLE_MINUTES = 3
#: Memory minutes a trend needs, and the blocks they are averaged in.
MIN_TREND_POINTS = 12
BLOCK_MINUTES = 2
#: The slow-request threshold L is the bucket bound at this quantile of stable's latency.
SLOW_QUANTILE = 0.90
#: Cloud Monitoring's newest minutes that size the traffic of a minute only the request logs show.
LOG_OVERLAP_MINUTES = 5
#: Request logs are trusted when, over the minutes both sources cover, they hold at least this
#: share of the failures Monitoring counted (once it counted at least LOG_CHECK_MIN_FAILURES).
LOG_CHECK_SHARE = 0.5
LOG_CHECK_MIN_FAILURES = 5


@dataclass
class Check:
    """One metric judged. ``ok`` is None when it could not be judged (no data)."""

    name: str
    ok: bool | None
    value: float | None
    threshold: float | None
    detail: str = ""
    test: str = ""
    #: evidence for a regression (likelihood ratio, max over the rollout) and the bound that rolls back
    evidence: float | None = None
    bound: float | None = None
    baseline: float | None = None
    #: the evidence the CUSUM holds now (``evidence`` is its highest over the rollout): what a
    #: step's end asks before it advances (:data:`ADVANCE_SHARE`)
    current: float | None = None


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
    window: dict[str, Any] = field(default_factory=dict)
    phase: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["checks"] = [asdict(c) for c in self.checks]
        return out


def next_step(steps: list[int], percent: int) -> int:
    """The first step above ``percent`` (100 when none is)."""
    return next((s for s in steps if s > percent), 100)


# --- statistics ------------------------------------------------------------------------------


def _evidence(llr: np.ndarray, bound: float) -> tuple[float, float]:
    """The highest likelihood ratio the CUSUM of per-minute log-ratios ``llr`` reached (the
    running sum, floored at 0), each minute capped at ``MINUTE_CAP`` of the bound's log: one
    burst (an instance crash, a retry storm) never rolls back alone, as Flagger's failure
    threshold intends; and the ratio it holds now."""
    return _cusum(llr, bound)


def _grid_evidence(llrs: list[np.ndarray], bound: float) -> tuple[float, float]:
    """The evidence of a grid of alternatives, one CUSUM each (per-minute log-ratios ``llrs``):
    each CUSUM rolls back at ``len(llrs) x bound`` (its share of the check's alpha), so the
    check's evidence is the highest of their likelihood ratios divided by the grid's size,
    compared with ``bound``."""
    m = len(llrs)
    runs = [_cusum(llr, m * bound) for llr in llrs]
    return max(top for top, _ in runs) / m, max(now for _, now in runs) / m


def _cusum(llr: np.ndarray, bound: float) -> tuple[float, float]:
    cap = MINUTE_CAP * math.log(bound)
    s = top = 0.0
    for x in np.minimum(llr, cap):
        s = max(0.0, s + x)
        top = max(top, s)
    return math.exp(min(top, 700)), math.exp(min(s, 700))


def _upper_rate(base: float, noise: float, minutes: int, events: float) -> float:
    """Stable's rate over the rollout, ``base``, is an estimate: its upper bound at 3 standard
    errors (minute-to-minute wander ``noise`` over ``minutes``, and the count ``events``)."""
    return base * (1 + 3 * math.sqrt(noise / minutes + 1 / max(events, 1)))


def _xlogy_ratio(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x * log(a / b), 0 where x is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * (np.log(a) - np.log(b))
    return np.where(x > 0, out, 0.0)


def _conditional_llr(
    xc: np.ndarray, nc: np.ndarray, xs: np.ndarray, ns: np.ndarray, r0: float, r1: float
) -> np.ndarray:
    """Per-minute log-likelihood ratio of "canary rate = r1 x stable's" against r0 x, from
    where each minute's events fell (binomial given the minute's total, canary share
    r * nc / (r * nc + ns))."""
    p0 = r0 * nc / (r0 * nc + ns)
    p1 = r1 * nc / (r1 * nc + ns)
    return _xlogy_ratio(xc, p1, p0) + _xlogy_ratio(xs, 1 - p1, 1 - p0)


def _one_sample_llr(x: np.ndarray, n: np.ndarray, p0: float, p1: float, noise: float = 0.0) -> np.ndarray:
    """Per-minute log-likelihood ratio of a rate p1 against p0, from x events in n requests;
    with ``noise`` (see :func:`rate_noise`) each minute's ratio is divided by its variance
    inflation 1 + n p0 noise, as a quasi-likelihood does."""
    p0, p1 = min(max(p0, 1e-12), 1 - 1e-9), min(max(p1, 1e-12), 1 - 1e-9)
    llr = x * math.log(p1 / p0) + (n - x) * math.log((1 - p1) / (1 - p0))
    return llr / (1 + n * p0 * noise)


def rate_noise(x: np.ndarray, n: np.ndarray) -> float:
    """Variance of the minute-to-minute multiplier of an event rate (a slow model API, a busy
    minute), by the method of moments on per-minute counts: what a binomial does not explain.
    One-sample tests widen each minute's variance by it (quasi-likelihood)."""
    keep = ~np.isnan(x) & ~np.isnan(n) & (n > 0)
    x, n = x[keep], n[keep]
    if len(n) < 5 or x.sum() <= 0:
        return 0.0
    p = x.sum() / n.sum()
    excess = ((x - n * p) ** 2 - n * p * (1 - p)).sum()
    return float(max(excess / ((n * p) ** 2).sum(), 0.0))


def ratio_text(evidence: float) -> str:
    """A likelihood ratio as a person reads it: 812x, 3.4x."""
    return f"{evidence:,.0f}x" if evidence >= 10 else f"{evidence:.1f}x"


@dataclass
class _Aligned:
    """Minutes where the canary has data, with stable's values in the same minutes (0 when
    stable has none)."""

    ends: list[dt.datetime]
    nc: np.ndarray
    xc: np.ndarray
    ns: np.ndarray
    xs: np.ndarray


def _align(canary: Series, stable: Series | None, column: str) -> _Aligned:
    def values(s: Series) -> np.ndarray:
        return s.bad if column == "bad" else s.signals.get(column, np.full(len(s), np.nan))

    cx = values(canary)
    keep = ~np.isnan(canary.requests) & ~np.isnan(cx) & (canary.requests > 0)
    ends = [t for t, k in zip(canary.ends, keep) if k]
    nc, xc = canary.requests[keep], cx[keep]
    ns, xs = np.zeros(len(ends)), np.zeros(len(ends))
    if stable is not None and len(stable):
        sx = values(stable)
        index = {t: i for i, t in enumerate(stable.ends)}
        for j, t in enumerate(ends):
            i = index.get(t)
            if i is not None and not math.isnan(stable.requests[i]) and not math.isnan(sx[i]):
                ns[j], xs[j] = stable.requests[i], sx[i]
    return _Aligned(ends, nc, xc, ns, xs)


# --- the checks ------------------------------------------------------------------------------


def _compare_counts(
    name: str,
    what: str,
    canary: Series,
    stable: Series | None,
    rel: float,
    abs_: float,
    bound: float,
    column: str = "bad",
) -> Check:
    a = _align(canary, stable, column)
    grid = "/".join(f"{a:g}x" for a in ALTERNATIVES)
    test = (
        f"conditional binomial CUSUMs: H0 canary <= stable x {1 + rel:g} and <= stable + {abs_:.2%}, "
        f"H1 {grid} that, one CUSUM each with 1/{len(ALTERNATIVES)} of the check's alpha"
    )
    if not len(a.nc):
        return Check(name, None, None, None, f"no canary {what} data", test, bound=bound)
    both = a.ns > 0
    rate_c = float(a.xc.sum() / a.nc.sum())
    if not both.any():
        return Check(name, None, rate_c, None, f"no stable traffic to compare {what} with", test, bound=bound)
    base = float(a.xs[both].sum() / a.ns[both].sum())
    # the tolerated ratio: relative and absolute tolerance both (a regression exceeds both)
    r0 = max(1 + rel, (base + abs_) / base if base > 0 else math.inf)
    if not math.isfinite(r0):
        # stable had no failures at all: only the absolute tolerance can be tested
        r0 = max(1 + rel, (abs_ + 0.5 / a.ns[both].sum()) / (0.5 / a.ns[both].sum()))
    alone = ~both
    noise = upper = p0 = 0.0
    if alone.any():
        # minutes without stable traffic (after 100%): against stable's rate over the rollout,
        # widened by how much that rate wandered from minute to minute
        noise = rate_noise(a.xs[both], a.ns[both])
        # stable's rate over the rollout is an estimate: compare with its upper bound
        upper = _upper_rate(base, noise, int(both.sum()), float(a.xs[both].sum()))
        p0 = min(max(r0 * upper, upper + abs_) if base > 0 else abs_, 0.5)
    llrs = []
    for alt in ALTERNATIVES:
        llr = np.zeros(len(a.nc))
        llr[both] = _conditional_llr(a.xc[both], a.nc[both], a.xs[both], a.ns[both], r0, alt * r0)
        if alone.any():
            llr[alone] = _one_sample_llr(a.xc[alone], a.nc[alone], p0, min(alt * p0, 0.99), noise)
        llrs.append(llr)
    evidence, current = _grid_evidence(llrs, bound)
    ok = evidence < bound
    detail = (
        f"canary {rate_c:.2%} of {a.nc.sum():,.0f} requests vs stable {base:.2%} of "
        f"{a.ns[both].sum():,.0f}; evidence of a regression {ratio_text(evidence)} (rolls back at "
        f"{ratio_text(bound)})"
    )
    return Check(name, ok, rate_c, r0 * base if base > 0 else abs_, detail, test, evidence, bound, base, current)


def _compare_latency(canary: Series, stable: Series | None, tolerance: float, bound: float) -> Check:
    name = "latency_vs_stable"
    test = (
        f"conditional binomial CUSUM on requests slower than {1 + tolerance:g} x L (canary) vs L (stable), "
        f"L = bucket bound at stable's p{SLOW_QUANTILE * 100:.0f}; H0 ratio 1, H1 {LATENCY_ALTERNATIVE:g}"
    )
    if canary.latency is None or stable is None or stable.latency is None or canary.bounds is None:
        return Check(name, None, None, None, "no latency distributions to compare", test, bound=bound)
    index = {t: i for i, t in enumerate(stable.ends)}
    rows_c, rows_s, alone = [], [], []
    for j, t in enumerate(canary.ends):
        if np.isnan(canary.latency[j]).any() or canary.latency[j].sum() <= 0:
            continue
        i = index.get(t)
        srow = stable.latency[i] if i is not None and not np.isnan(stable.latency[i]).any() else None
        rows_c.append(canary.latency[j])
        rows_s.append(srow if srow is not None else np.zeros_like(canary.latency[j]))
        alone.append(srow is None or srow.sum() <= 0)
    if not rows_c:
        return Check(name, None, None, None, "no canary latency data", test, bound=bound)
    c, s, alone_mask = np.array(rows_c), np.array(rows_s), np.array(alone)
    bounds = canary.bounds
    pooled_s = s.sum(axis=0)
    p_s = quantile(pooled_s, bounds, SLOW_QUANTILE)
    med_c, med_s = quantile(c.sum(axis=0), bounds, 0.5), quantile(pooled_s, bounds, 0.5)
    if p_s is None:
        return Check(name, None, med_c, None, "no stable latency data to compare with", test, bound=bound)
    level = float(bounds[min(int(np.searchsorted(bounds, p_s, side="left")), len(bounds) - 1)])
    xc, nc = exceeding(c, bounds, level * (1 + tolerance)), c.sum(axis=1)
    xs, ns = exceeding(s, bounds, level), s.sum(axis=1)
    both = ~alone_mask
    llr = np.zeros(len(nc))
    llr[both] = _conditional_llr(xc[both], nc[both], xs[both], ns[both], 1.0, LATENCY_ALTERNATIVE)
    base = float(xs[both].sum() / ns[both].sum()) if both.any() else None
    if (~both).any() and base:
        noise = rate_noise(xs[both], ns[both])
        upper = _upper_rate(base, noise, int(both.sum()), float(xs[both].sum()))
        llr[~both] = _one_sample_llr(xc[~both], nc[~both], upper, min(LATENCY_ALTERNATIVE * upper, 0.99), noise)
    evidence, current = _evidence(llr, bound)
    share_c = float(xc.sum() / nc.sum())
    detail = (
        f"median {med_c:.0f} ms vs stable {med_s:.0f} ms; {share_c:.1%} of canary requests slower than "
        f"{level * (1 + tolerance):.0f} ms vs {base or 0:.1%} of stable's slower than {level:.0f} ms; "
        f"evidence of a regression {ratio_text(evidence)} (rolls back at {ratio_text(bound)})"
    )
    return Check(name, evidence < bound, med_c, level, detail, test, evidence, bound, med_s, current)


def _absolute_errors(canary: Series, limit: float, bound: float, noise: float) -> Check:
    name = "error_rate"
    keep = ~np.isnan(canary.requests) & ~np.isnan(canary.bad) & (canary.requests > 0)
    n, x = canary.requests[keep], canary.bad[keep]
    test = f"one-sample binomial CUSUM: H0 rate = {limit:.2%}, H1 {min(2 * limit, 1):.2%}"
    if not keep.any():
        return Check(name, None, None, limit, "no canary request data", test, bound=bound)
    rate = float(x.sum() / n.sum())
    if limit <= 0:
        evidence = current = math.inf if x.sum() > 0 else 1.0
    else:
        evidence, current = _evidence(_one_sample_llr(x, n, limit, min(2 * limit, 0.999), noise), bound)
    detail = (
        f"{x.sum():,.0f} of {n.sum():,.0f} canary requests failed (5xx + 429) = {rate:.2%}; evidence it "
        f"exceeds {limit:.2%}: {ratio_text(evidence)} (rolls back at {ratio_text(bound)})"
    )
    return Check(name, evidence < bound, rate, limit, detail, test, evidence, bound, current=current)


def _absolute_latency(
    canary: Series, limit_ms: float, bound: float, step_start: dt.datetime | None, noise: float
) -> Check:
    name = "latency_p99_ms"
    test = "one-sample binomial CUSUM on requests slower than the limit: H0 1%, H1 2%"
    if canary.latency is None or canary.bounds is None:
        return Check(name, None, None, limit_ms, "no canary latency data", test, bound=bound)
    ok_rows = ~np.isnan(canary.latency).any(axis=1)
    rows = canary.latency[ok_rows]
    if not len(rows) or rows.sum() <= 0:
        return Check(name, None, None, limit_ms, "no canary latency data", test, bound=bound)
    n = rows.sum(axis=1)
    x = exceeding(rows, canary.bounds, limit_ms)
    evidence, current = _evidence(_one_sample_llr(x, n, 0.01, 0.02, noise), bound)
    p99 = quantile(rows.sum(axis=0), canary.bounds, 0.99)
    step_rows = rows
    if step_start is not None:
        ends = [t for t, k in zip(canary.ends, ok_rows) if k]
        step_rows = rows[np.array([t > step_start for t in ends], dtype=bool)]
    step_p99 = quantile(step_rows.sum(axis=0), canary.bounds, 0.99) if len(step_rows) else None
    detail = (
        f"pooled p99 {p99:.0f} ms over {n.sum():,.0f} requests"
        + (f" ({step_p99:.0f} ms in this step)" if step_p99 is not None else "")
        + f"; {x.sum() / n.sum():.2%} slower than {limit_ms:.0f} ms; evidence the p99 exceeds it "
        f"{ratio_text(evidence)} (rolls back at {ratio_text(bound)})"
    )
    return Check(name, evidence < bound, p99, limit_ms, detail, test, evidence, bound, current=current)


def _memory_trend(
    canary: Series,
    start: dt.datetime,
    step_start: dt.datetime | None,
    now: dt.datetime,
    limit: float,
    horizon_min: float,
    alpha: float,
) -> Check:
    from scipy.stats import t as student

    name = "memory_trend"
    test = (
        f"least-squares trend of {BLOCK_MINUTES}-minute means of memory utilisation within the step "
        "(block means tame the autocorrelation), one-sided t-test"
    )
    # within the current step only: memory follows the load, which steps up with the traffic;
    # the warm-up counts from the canary's first minute with traffic (``start`` may be earlier:
    # the rollout is judged from when the config asked for the canary)
    served = [t for t, n in zip(canary.ends, canary.requests) if n > 0]
    warm = (served[0] if served else start) + dt.timedelta(minutes=WARMUP_MINUTES)
    if step_start is not None:
        warm = max(warm, step_start + dt.timedelta(minutes=STEP_SETTLE_MINUTES))
    keep = np.array([t > warm for t in canary.ends], dtype=bool) & ~np.isnan(canary.memory)
    y_all = canary.memory[keep]
    x_all = np.array([(t - now).total_seconds() / 60 for t, k in zip(canary.ends, keep) if k])
    last = canary.memory[~np.isnan(canary.memory)]
    if len(y_all) < MIN_TREND_POINTS:
        return Check(
            name,
            None,
            float(last[-1]) if len(last) else None,
            limit,
            f"{len(y_all)} minutes of memory data in this step after warm-up; {MIN_TREND_POINTS} needed for a trend",
            test,
        )
    block = np.floor((x_all - x_all.min()) / BLOCK_MINUTES)
    x = np.array([x_all[block == b].mean() for b in np.unique(block)])
    y = np.array([y_all[block == b].mean() for b in np.unique(block)])
    if len(y) < 4:
        return Check(name, None, float(last[-1]), limit, f"{len(y)} blocks of memory data; 4 needed", test)
    xm, ym = x.mean(), y.mean()
    sxx = ((x - xm) ** 2).sum()
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    level = float(ym - slope * xm)  # the fitted utilisation now (x = 0)
    resid = y - (ym + slope * (x - xm))
    se = math.sqrt((resid**2).sum() / (len(y) - 2) / sxx)
    p = float(student.sf(slope / se, len(y) - 2)) if se > 0 else (0.0 if slope > 0 else 1.0)
    # the projection uses the slope's lower 95% bound: a trend must surely reach the limit in time
    low = slope - float(student.ppf(0.95, len(y) - 2)) * se
    reach = (limit - level) / low if low > 0 else math.inf
    heading = p < alpha and reach <= horizon_min
    detail = (
        f"utilisation {level:.0%} now, trend {slope * 60:+.1%} per hour (p={p:.2g}); "
        + (
            f"reaches {limit:.0%} within {reach / 60:.1f} h"
            if math.isfinite(reach) and reach > 0
            else "not surely rising"
        )
        + f" (rolls back when p < {alpha:.2g} and within {horizon_min / 60:g} h)"
    )
    return Check(name, not heading, level, limit, detail, test, evidence=p, bound=alpha)


def _check_names(spec: AgentSpec) -> list[str]:
    """The checks that run, in the order :func:`judge` reports them."""
    signals = spec.rollout.analysis.signals
    return [
        "errors_vs_stable",
        "latency_vs_stable",
        "error_rate",
        "latency_p99_ms",
        "memory_trend",
        *[f"signal:{s}" for s in signals],
    ]


def _bound(spec: AgentSpec) -> float:
    """The likelihood ratio that rolls back: ``k / alpha`` for the ``k`` checks that run."""
    return len(_check_names(spec)) / spec.rollout.analysis.alpha


def _errors_vs_stable(spec: AgentSpec, canary: Series, stable: Series | None) -> Check:
    """``errors_vs_stable`` on series already windowed to the rollout."""
    cfg = spec.rollout.analysis
    return _compare_counts(
        "errors_vs_stable",
        "error",
        canary,
        stable,
        cfg.relative_error_tolerance,
        cfg.absolute_error_tolerance,
        _bound(spec),
    )


def with_request_logs(
    canary: Series | None,
    stable: Series | None,
    logs: RequestLogFailures,
    *,
    canary_revision: str,
    stable_revision: str,
    share: float,
    since: dt.datetime,
) -> tuple[Series, Series, str] | str:
    """Both revisions' Cloud Monitoring minutes followed by the minutes only the request logs
    show yet (``agentstage.release.requestlogs``): whole minutes on Monitoring's grid (its
    newest minute + k minutes), within the logs' window, begun after ``since`` (when the live
    split last changed, so ``share``, the canary's live share, held all through them). Each such
    minute's failures are the logged ones; its requests are the traffic of Monitoring's newest
    minutes split by ``share`` (the conditional test reads only the shares). Returns the two
    series and a line saying what was added, or why nothing could be: no whole minute yet, no
    Monitoring minute to size the traffic, or logs that miss failures Monitoring counted in the
    minutes both cover (request logs excluded from the project's log buckets)."""
    minute = dt.timedelta(minutes=1)
    # Monitoring's newest minute: the newest with a request count (a source may list the minutes
    # it has not filled yet as missing); the series end there
    newest = [
        max(t for t, n in zip(s.ends, s.requests) if not math.isnan(n))
        for s in (canary, stable)
        if s is not None and len(s) and not np.isnan(s.requests).all()
    ]
    if not newest:
        return "no Cloud Monitoring minute yet to size the traffic with"
    last = max(newest)
    canary = canary.select(np.array([t <= last for t in canary.ends], dtype=bool)) if canary is not None else None
    stable = stable.select(np.array([t <= last for t in stable.ends], dtype=bool)) if stable is not None else None
    shown = [s for s in (canary, stable) if s is not None and len(s)]
    ends = []
    e = last + minute
    while e <= logs.end:
        if e - minute >= since and e - minute >= logs.start:
            ends.append(e)
        e += minute
    if not ends:
        return f"no whole minute in the request logs past Cloud Monitoring's newest ({iso_minute(last)})"
    # traffic: the newest Monitoring minutes (up to LOG_OVERLAP_MINUTES) of both revisions; the
    # comparison of the two sources: the minutes both cover
    overlap = max(logs.start, min(s.ends[0] for s in shown) - minute)
    totals: dict[dt.datetime, float] = {}
    counted = 0.0
    for s in shown:
        for t, n, bad in zip(s.ends, s.requests, s.bad):
            if t > last - LOG_OVERLAP_MINUTES * minute and not math.isnan(n):
                totals[t] = totals.get(t, 0.0) + n
            if t - minute >= overlap and not math.isnan(bad):
                counted += bad
    if not totals:
        return "no Cloud Monitoring requests in its newest minutes to size the traffic with"
    per_minute = sum(totals.values()) / len(totals)
    logged = sum(logs.count(r, overlap, last) for r in (canary_revision, stable_revision))
    if counted >= LOG_CHECK_MIN_FAILURES and logged < LOG_CHECK_SHARE * counted:
        return (
            f"the request logs hold {logged} failed requests where Cloud Monitoring counted {counted:.0f} "
            f"(since {iso_minute(overlap)}): are request logs excluded or sampled? judged on Monitoring alone"
        )
    c_bad = [logs.count(canary_revision, t - minute, t) for t in ends]
    s_bad = [logs.count(stable_revision, t - minute, t) for t in ends]
    c_new = (canary or Series(canary_revision)).extended(ends, [per_minute * share] * len(ends), c_bad)
    s_new = (stable or Series(stable_revision)).extended(ends, [per_minute * (1 - share)] * len(ends), s_bad)
    note = (
        f"+{len(ends)} min from {logs.source} through {iso_minute(ends[-1])} "
        f"(Cloud Monitoring through {iso_minute(last)}): {sum(c_bad)} canary and {sum(s_bad)} stable failures"
        + ("; more failures than one read lists: undercounted" if logs.truncated else "")
    )
    return c_new, s_new, note


def iso_minute(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%H:%M:%SZ" if t.second else "%H:%MZ")


def fresh_errors_vs_stable(
    spec: AgentSpec, canary: Series, stable: Series, *, rollout_start: dt.datetime, now: dt.datetime
) -> Check:
    """``errors_vs_stable`` on series that :func:`with_request_logs` extended."""
    return _errors_vs_stable(spec, canary.window(rollout_start, now), stable.window(rollout_start, now))


def judge(
    spec: AgentSpec,
    canary: Series | None,
    stable: Series | None,
    *,
    rollout_start: dt.datetime,
    step_start: dt.datetime | None,
    now: dt.datetime,
    end_of_step: bool = False,
) -> list[Check]:
    """Every check of the canary over the rollout so far (minutes in ``(rollout_start, now]``).

    The memory trend, the one check that is not sequential, is judged only at the end of a
    step (``end_of_step``), at most once per step and once at the end of the watch."""
    ro, cfg = spec.rollout, spec.rollout.analysis
    names = _check_names(spec)
    bound = _bound(spec)
    looks = len(ro.steps) + 1
    if canary is None:
        return [Check(n, None, None, None, "no canary data", bound=bound) for n in names]
    canary = canary.window(rollout_start, now)
    stable = stable.window(rollout_start, now) if stable is not None else None
    # how much the environment moves rates from minute to minute, seen on stable
    error_noise = latency_noise = 0.0
    if stable is not None and len(stable):
        error_noise = rate_noise(stable.bad, stable.requests)
        if stable.latency is not None and stable.bounds is not None:
            rows = np.nan_to_num(stable.latency)
            latency_noise = rate_noise(exceeding(rows, stable.bounds, ro.max_latency_p99_ms * 0.5), rows.sum(axis=1))
    checks = [
        _errors_vs_stable(spec, canary, stable),
        _compare_latency(canary, stable, cfg.latency_tolerance, bound),
        _absolute_errors(canary, ro.max_error_rate, bound, error_noise),
        _absolute_latency(canary, ro.max_latency_p99_ms, bound, step_start, latency_noise),
    ]
    if end_of_step:
        checks.append(
            _memory_trend(
                canary,
                rollout_start,
                step_start,
                now,
                cfg.memory_limit,
                cfg.memory_horizon_minutes,
                cfg.alpha / len(names) / looks,
            )
        )
    else:
        checks.append(Check("memory_trend", None, None, cfg.memory_limit, "judged at the end of each step", bound=None))
    for s in cfg.signals:
        checks.append(
            _compare_counts(
                f"signal:{s}",
                s,
                canary,
                stable,
                cfg.relative_error_tolerance,
                cfg.absolute_error_tolerance,
                bound,
                column=s,
            )
        )
    if not canary.has_throttled:
        checks[0].detail += " (the metrics have no 429 counts: 5xx only)"
    return checks


def describe_failure(check: Check) -> str:
    """One line for a failed check, for the decision's reason."""
    words = {
        "errors_vs_stable": "more failed requests than stable",
        "latency_vs_stable": "slower than stable",
        "error_rate": "error rate above the limit",
        "latency_p99_ms": "p99 latency above the limit",
        "memory_trend": "memory heading for the limit",
    }
    head = words.get(check.name, f"more {check.name.removeprefix('signal:')} than stable")
    return f"{head}: {check.detail}"
