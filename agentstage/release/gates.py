"""The release readiness checklist: each item passed or failed, with its evidence and threshold.

Missing evidence is a failed item, never a pass. Items per candidate agent: the evaluation
report and its scores (per metric, and against the stable release's on the same dataset), the
load test bound to the release by its manifest (latency and errors without health checks, the
expected peak x 10 sustained), memory stability (when a series is given), a rollback measured
to complete in time. Items per stack: the projected monthly cost of every agent within the
budget, alerts present, budget present, policy check passing (``agentstage.policy.run_check``),
and every piece of evidence bound to an agent of the stack.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentstage.release.evidence import EvalReport, LoadTest, RampPoint
from components.spec import PlatformSpec

__all__ = ["GateItem", "GateReport", "Evidence", "evaluate_gates", "ALERT_POLICY", "BUDGET", "COST_ITEM", "TIMER"]

ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"
SERVICE = "gcp:cloudrunv2/service:Service"
#: The name of the stack's cost item; its ``data`` records each agent's cost per request, which
#: later gates read back from the ledger for the agents they do not release.
COST_ITEM = "cost within budget"

#: The clock that times the rollback (tests replace it).
TIMER: Callable[[], float] = time.perf_counter


@dataclass
class GateItem:
    name: str
    ok: bool | None  # None: not applicable (optional evidence not given)
    evidence: str
    threshold: str = ""
    agent: str = ""
    #: the item's figures, machine-readable (recorded in the ledger with the item)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class GateReport:
    stack: str
    candidates: dict[str, str]  # agent -> version
    items: list[GateItem] = field(default_factory=list)
    #: agent -> {"stable": version or None, "percent": traffic the release gets once promoted}
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(i.ok is not False for i in self.items)

    @property
    def failed(self) -> list[GateItem]:
        return [i for i in self.items if i.ok is False]

    def items_of(self, agent: str) -> list[GateItem]:
        """The items that concern ``agent``: its own and the stack's."""
        return [i for i in self.items if i.agent in ("", agent)]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "candidates": self.candidates,
            "passed": self.passed,
            "items": [asdict(i) for i in self.items],
        }


@dataclass
class Evidence:
    evals: list[EvalReport] = field(default_factory=list)
    #: agent (None: given without one) -> the Locust runs given for it (a single run is accepted)
    load_tests: dict[str | None, list[LoadTest] | LoadTest] = field(default_factory=dict)
    memory: dict[str | None, list[tuple[float, float]]] = field(default_factory=dict)
    cost_per_request_usd: float | None = None


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "no value"
    return f"{v:g}{unit}"


def _runs(value: list[LoadTest] | LoadTest | None) -> list[LoadTest]:
    if value is None:
        return []
    return [value] if isinstance(value, LoadTest) else list(value)


def _namespace(project_dir: Path) -> str:
    """The config namespace of the project's keys (its name in ``Pulumi.yaml``), for messages."""
    from agentstage.engine import EngineError, load_project

    try:
        return load_project(project_dir).name
    except EngineError:
        return "agent-platform"


def _agents(spec: PlatformSpec) -> str:
    return ", ".join(sorted(spec.agents))


# --- evaluation -------------------------------------------------------------------------------


def _eval_items(agent: str, spec: PlatformSpec, evidence: Evidence, ns: str) -> list[GateItem]:
    a = spec.agents[agent]
    release = a.release
    thresholds = spec.gates.eval_thresholds(agent)
    mine = [r for r in evidence.evals if r.agent == agent]
    current = [r for r in mine if r.version == release.version]
    items: list[GateItem] = []
    missing_thresholds = GateItem(
        "evaluation thresholds", False, "none configured", f"set {ns}:gates.eval (metric -> minimum score)", agent
    )
    if not current:
        others = [r for r in mine if a.stable is None or r.version != a.stable.version]
        if not others:
            given = (
                ", ".join(sorted({f"{r.agent} {r.version}" if r.version else str(r.agent) for r in evidence.evals}))
                or "none"
            )
            items.append(
                GateItem(
                    "evaluation report",
                    False,
                    f"no report for {agent} {release.version} (reports given for: {given})",
                    "a report of this release",
                    agent,
                )
            )
        else:
            other = others[-1]
            source = f"{Path(other.path).name} ({other.format})"
            if other.version is None:
                items.append(
                    GateItem(
                        "evaluation report",
                        False,
                        f"{source} does not name the release version; bind "
                        f"it with --eval {agent}@{release.version}=FILE",
                        f"version {release.version}",
                        agent,
                    )
                )
            else:
                items.append(
                    GateItem(
                        "evaluation report",
                        False,
                        f"{source} is for {other.version}",
                        f"version {release.version}",
                        agent,
                    )
                )
        return items + ([] if thresholds else [missing_thresholds])
    report = current[-1]
    source = f"{Path(report.path).name} ({report.format})"
    if release.eval_dataset and report.dataset and report.dataset != release.eval_dataset:
        items.append(
            GateItem(
                "evaluation report",
                False,
                f"{source} used dataset {report.dataset}",
                f"dataset {release.eval_dataset}",
                agent,
            )
        )
    else:
        ds = report.dataset or "dataset not stated"
        items.append(
            GateItem(
                "evaluation report", True, f"{source}: {report.version}, {ds}", f"version {release.version}", agent
            )
        )
    if not thresholds:
        items.append(missing_thresholds)
    for metric, minimum in sorted(thresholds.items()):
        score = report.metrics.get(metric)
        if score is None:
            items.append(GateItem(f"eval {metric}", False, f"missing from {source}", f">= {minimum:g}", agent))
        else:
            items.append(GateItem(f"eval {metric}", score >= minimum, f"{score:g}", f">= {minimum:g}", agent))
    return items + _stable_eval_items(agent, spec, report, mine)


def _stable_eval_items(agent: str, spec: PlatformSpec, report: EvalReport, mine: list[EvalReport]) -> list[GateItem]:
    """The candidate's scores against the stable release's, on the same dataset version."""
    a = spec.agents[agent]
    limit = spec.gates.max_eval_regression
    threshold = f"each score >= stable's - {limit:g}, same dataset"
    if a.stable is None:
        return [GateItem("eval vs stable", None, "no stable release to compare with", threshold, agent)]
    stable = a.stable.version
    given = [r for r in mine if r.version == stable]
    if not given:
        return [
            GateItem(
                "eval vs stable",
                None,
                f"no report for stable {stable} given (optional: --eval "
                f"{agent}@{stable}=FILE, on dataset {a.release.eval_dataset or 'the same dataset'})",
                threshold,
                agent,
            )
        ]
    base = given[-1]
    mine_src, base_src = Path(report.path).name, Path(base.path).name
    wanted = a.release.eval_dataset
    problem = None
    if report.dataset is None or base.dataset is None:
        unstated = [n for n, r in ((mine_src, report), (base_src, base)) if r.dataset is None]
        problem = (
            f"not comparable: {' and '.join(unstated)} "
            f"{'does not state its' if len(unstated) == 1 else 'do not state their'} dataset version"
        )
    elif report.dataset != base.dataset:
        problem = (
            f"not comparable: different dataset versions, {report.dataset} ({mine_src}) and {base.dataset} "
            f"({base_src}, stable {stable})"
        )
    elif wanted and base.dataset != wanted:
        problem = f"not comparable: {base_src} used {base.dataset}, the release's eval_dataset is {wanted}"
    if problem:
        return [
            GateItem(
                "eval vs stable", False, problem, f"reports on the same dataset version ({wanted or 'stated'})", agent
            )
        ]
    items = []
    for metric, was in sorted(base.metrics.items()):
        floor = round(was - limit, 10)
        score = report.metrics.get(metric)
        name = f"eval {metric} vs stable"
        if score is None:
            items.append(
                GateItem(
                    name,
                    False,
                    f"missing from {mine_src}; stable {stable} scored {was:g} on {base.dataset}",
                    f">= {floor:g} (stable - {limit:g})",
                    agent,
                )
            )
            continue
        items.append(
            GateItem(
                name,
                score >= floor - 1e-12,
                f"{score:g} vs stable {stable} {was:g} on {base.dataset} ({score - was:+.3g})",
                f">= {floor:g} (stable - {limit:g})",
                agent,
                {"score": score, "stable": was, "dataset": base.dataset},
            )
        )
    return items


# --- load test --------------------------------------------------------------------------------


def _manifest_example(agent: str, version: str) -> str:
    return json.dumps(
        {
            "agent": agent,
            "version": version,
            "url": "<the URL the run called>",
            "started": "<ISO 8601 UTC>",
            "ended": "<ISO 8601 UTC>",
        }
    )


def _run_problem(run: LoadTest, agent: str, version: str) -> str | None:
    """Why ``run`` is not evidence for ``agent`` ``version`` (None: it is)."""
    m = run.manifest
    if m is None:
        return (
            f"{run.name} has no manifest: write {Path(run.manifest_path).name} beside it, "
            f"{_manifest_example(agent, version)} (docs/release.md, load test manifest)"
        )
    if m.agent != agent:
        return f"{run.name} is a run of {m.agent} {m.version} ({Path(m.path).name}), not of {agent}"
    if m.version != version:
        return f"{run.name} is a run of {agent} {m.version} ({Path(m.path).name}), not of {version}"
    return None


def _pick_run(agent: str, version: str, evidence: Evidence, threshold: str) -> tuple[LoadTest | None, GateItem]:
    """The run that measured ``agent`` ``version``: among the runs bound to the agent, else those
    given without one, the one whose manifest names it."""
    pool = _runs(evidence.load_tests.get(agent)) or _runs(evidence.load_tests.get(None))
    if not pool:
        return None, GateItem(
            "load test", False, "no load test given (--load-test Locust --csv output)", threshold, agent
        )
    named = [r for r in pool if r.manifest is not None and r.manifest.agent == agent]
    if not named:
        if len(pool) == 1:
            return None, GateItem("load test", False, _run_problem(pool[0], agent, version) or "", threshold, agent)
        runs = "; ".join(
            f"{r.name} ({r.manifest.agent} {r.manifest.version})" if r.manifest else f"{r.name} (no manifest)"
            for r in pool
        )
        text = f"none of the {len(pool)} runs given is of {agent}: {runs}"
        if any(r.manifest is None for r in pool):
            text += (
                f"; a run's manifest is PREFIX_manifest.json beside its CSV files, {_manifest_example(agent, version)}"
            )
        return None, GateItem("load test", False, text, threshold, agent)
    exact = [r for r in named if r.manifest is not None and r.manifest.version == version]
    if len(exact) > 1:
        return None, GateItem(
            "load test",
            False,
            f"{len(exact)} runs of {agent} {version} given "
            f"({', '.join(r.name for r in exact)}): give one, --load-test {agent}=PATH",
            threshold,
            agent,
        )
    if not exact:
        return None, GateItem("load test", False, _run_problem(named[-1], agent, version) or "", threshold, agent)
    run = exact[0]
    m = run.manifest
    assert m is not None
    return run, GateItem(
        "load test",
        True,
        f"{run.name}: {agent} {version} at {m.url}, {m.window()} ({Path(m.path).name})",
        threshold,
        agent,
    )


def _load_items(agent: str, spec: PlatformSpec, evidence: Evidence, ns: str) -> list[GateItem]:
    a = spec.agents[agent]
    limits = spec.gates.load_test
    version = a.release.version
    run, bound = _pick_run(agent, version, evidence, f"a run of {agent} {version} (its manifest)")
    if run is None:
        return [bound]
    items = [bound]
    fig = run.figures(a.health_path)
    excluded = sum(r.requests for r in fig.excluded)
    note = f", {a.health_path} excluded" if fig.excluded else ""
    for label, value, limit in (
        ("p50", fig.p50_ms, limits.p50_ms),
        ("p95", fig.p95_ms, limits.p95_ms),
        ("p99", fig.p99_ms, limits.p99_ms),
    ):
        if limit is None:
            continue
        ok = value is not None and value <= limit
        if fig.exact:
            text = f"{_fmt(value, ' ms')} ({run.name}{note})"
        else:
            text = (
                f"<= {_fmt(value, ' ms')} ({run.name}{note}: the highest {label} of {len(fig.kept)} endpoints, an "
                "upper bound; the Aggregated row mixes in the health checks)"
            )
        items.append(GateItem(f"load test {label}", ok, text, f"<= {limit} ms", agent))
    rate = fig.error_rate
    detail = f"{fig.failures}/{fig.requests} failed"
    if fig.excluded:
        detail += f" without {excluded} {a.health_path} requests"
    if run.duration_s:
        detail += f", {run.duration_s:.0f} s, {run.peak_users} users"
    items.append(
        GateItem(
            "load test errors",
            rate is not None and rate < limits.max_error_rate,
            f"{rate:.2%} ({detail})" if rate is not None else f"no requests recorded besides {a.health_path}",
            f"< {limits.max_error_rate:.2%}",
            agent,
        )
    )
    items.append(_peak_item(agent, spec, run, ns))
    return items


def _sustained(points: list[RampPoint], target: float) -> list[list[RampPoint]]:
    """The stretches of consecutive samples at or above ``target`` requests/s."""
    stretches: list[list[RampPoint]] = []
    current: list[RampPoint] = []
    for p in sorted(points, key=lambda p: p.timestamp):
        if p.requests_per_s >= target:
            current.append(p)
        elif current:
            stretches.append(current)
            current = []
    if current:
        stretches.append(current)
    return stretches


def _failure_ratio(stretch: list[RampPoint]) -> float | None:
    """Failures / requests over a stretch: from the cumulative totals when the history has them,
    else from the rates."""
    first, last = stretch[0], stretch[-1]
    if len(stretch) > 1 and None not in (
        first.total_requests,
        first.total_failures,
        last.total_requests,
        last.total_failures,
    ):
        requests = (last.total_requests or 0) - (first.total_requests or 0)
        if requests > 0:
            return max(0.0, (last.total_failures or 0) - (first.total_failures or 0)) / requests
    rps = sum(p.requests_per_s for p in stretch)
    return sum(p.failures_per_s for p in stretch) / rps if rps else None


def _peak_item(agent: str, spec: PlatformSpec, run: LoadTest, ns: str) -> GateItem:
    """The run sustained ``peak_multiple`` x the expected peak, with few failures meanwhile."""
    limits = spec.gates.load_test
    name = f"load test {limits.peak_multiple:g}x peak"
    expected = spec.gates.expected_peak(agent)
    if expected is None:
        return GateItem(
            name,
            False,
            f"no expected peak: set {ns}:gates.peak_requests_per_second.{agent} or gates.monthly_requests.{agent}",
            f"{limits.peak_multiple:g} x the expected peak",
            agent,
        )
    peak, how = expected
    target = peak * limits.peak_multiple
    threshold = (
        f">= {target:.3g} req/s for {limits.sustain_seconds} s, errors < {limits.max_error_rate:.2%} "
        f"({limits.peak_multiple:g} x the expected peak {peak:.3g} req/s: {how})"
    )
    data = {"expected_peak_rps": peak, "target_rps": target}
    if not run.history:
        history = Path(run.path).name[: -len("_stats.csv")] + "_stats_history.csv"
        return GateItem(
            name,
            False,
            f"no {history} beside {run.name}: the run's ramp is unknown (Locust --csv writes it)",
            threshold,
            agent,
            data,
        )
    points, method = run.ramp(spec.agents[agent].health_path)
    stretches = _sustained(points, target)
    highest = max((p.requests_per_s for p in points), default=0.0)
    if not stretches:
        return GateItem(
            name,
            False,
            f"at most {highest:.3g} req/s ({method}), never {target:.3g}",
            threshold,
            agent,
            {**data, "highest_rps": highest},
        )
    best = max(stretches, key=lambda s: (s[-1].timestamp - s[0].timestamp, len(s)))
    duration = best[-1].timestamp - best[0].timestamp
    ratio = _failure_ratio(best)
    low = min(p.requests_per_s for p in best)
    users = sorted({p.users for p in best})
    crowd = f"{users[0]}" if len(users) == 1 else f"{users[0]}-{users[-1]}"
    failed = f"{ratio:.2%} failed" if ratio is not None else "failures unknown"
    ok = duration >= limits.sustain_seconds and ratio is not None and ratio < limits.max_error_rate
    return GateItem(
        name,
        ok,
        f">= {low:.3g} req/s for {duration:.0f} s with {crowd} users, {failed} ({method})",
        threshold,
        agent,
        {**data, "sustained_rps": low, "seconds": duration, "failure_ratio": ratio},
    )


# --- memory -----------------------------------------------------------------------------------


def _memory_items(agent: str, spec: PlatformSpec, evidence: Evidence, shared: bool) -> list[GateItem]:
    """``shared``: several agents are released at once, so a series given without an agent
    cannot tell which agent it measured."""
    series = evidence.memory.get(agent)
    limit = spec.gates.max_memory_growth
    if series is None and evidence.memory.get(None) is not None:
        if shared:
            return [
                GateItem(
                    "memory stable",
                    False,
                    "a memory series given without an agent cannot stand for several "
                    f"agents released together: bind it, --memory {agent}=FILE",
                    f"growth <= {limit:.0%}",
                    agent,
                )
            ]
        series = evidence.memory[None]
    if series is None:
        return [
            GateItem(
                "memory stable", None, "no memory series given (optional: --memory)", f"growth <= {limit:.0%}", agent
            )
        ]
    from scipy.stats import linregress

    t = [p[0] for p in series]
    m = [p[1] for p in series]
    fit = linregress(t, m)
    mean = sum(m) / len(m)
    growth = float(fit.slope * (max(t) - min(t)) / mean) if mean else 0.0
    return [
        GateItem(
            "memory stable",
            bool(growth <= limit),
            f"{growth:+.1%} over {max(t) - min(t):.0f} s (trend of {len(m)} points, r={fit.rvalue:.2f})",
            f"growth <= {limit:.0%}",
            agent,
        )
    ]


# --- cost -------------------------------------------------------------------------------------


def _recorded_costs(project_dir: Path, stack: str) -> dict[tuple[str, str], tuple[float, str]]:
    """(agent, version) -> (cost per request, where) measured by earlier gates of ``stack`` (the
    cost item of its ``gate`` and ``promote`` decisions), the latest winning."""
    from agentstage.release.ledger import Ledger

    out: dict[tuple[str, str], tuple[float, str]] = {}
    for d in Ledger(project_dir, stack).decisions():
        for item in d.get("gates") or d.get("items") or []:
            if not isinstance(item, dict) or item.get("name") != COST_ITEM:
                continue
            for agent, row in ((item.get("data") or {}).get("agents") or {}).items():
                if not isinstance(row, dict) or not row.get("measured"):
                    continue
                cpr = row.get("cost_per_request_usd")
                if isinstance(cpr, (int, float)) and not isinstance(cpr, bool) and math.isfinite(cpr) and cpr >= 0:
                    out[(agent, str(row.get("version")))] = (float(cpr), f"ledger: {d.get('action')} {d.get('time')}")
    return out


def _cost_items(
    project_dir: Path,
    stack: str,
    spec: PlatformSpec,
    raw_budget: Any,
    evidence: Evidence,
    candidates: list[str],
    ns: str,
) -> list[GateItem]:
    """The projected monthly cost of every agent of the stack against the budget: the released
    agents at their measured cost, the others at the cost measured for the release they run (an
    ``--eval AGENT@VERSION`` report, else an earlier gate's record in the ledger)."""
    amount = raw_budget.get("monthly_amount") if isinstance(raw_budget, dict) else None
    currency = raw_budget.get("currency", "USD") if isinstance(raw_budget, dict) else "USD"
    problems: list[str] = []
    if amount is None:
        problems.append(f"no budget ({ns}:budget.monthly_amount)")
    elif isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
        problems.append(f"budget monthly_amount {amount!r} is not a positive amount")
        amount = None
    recorded: dict[tuple[str, str], tuple[float, str]] | None = None
    rows: dict[str, dict[str, Any]] = {}
    not_counted: list[str] = []
    for agent in sorted(spec.agents):
        version = spec.agents[agent].release.version
        volume = spec.gates.monthly_requests.get(agent)
        cpr: float | None = None
        source = ""
        measured = True
        if agent in candidates and evidence.cost_per_request_usd is not None:
            if len(candidates) > 1:
                shared = (
                    "--cost-per-request gives one figure for several agents released together: put "
                    "cost_per_request_usd in each agent's evaluation report"
                )
                problems += [] if shared in problems else [shared]
            else:
                cpr, source = evidence.cost_per_request_usd, "--cost-per-request"
        if cpr is None:
            report = next(
                (
                    r
                    for r in reversed(evidence.evals)
                    if r.agent == agent and r.version == version and r.cost_per_request_usd is not None
                ),
                None,
            )
            if report is not None:
                cpr, source = report.cost_per_request_usd, Path(report.path).name
        if cpr is None and agent not in candidates:
            if recorded is None:
                recorded = _recorded_costs(project_dir, stack)
            if (agent, version) in recorded:
                cpr, source = recorded[(agent, version)]
                measured = False
        if agent in candidates:
            if cpr is None:
                problems.append(
                    f"no cost per request of {agent} {version} (cost_per_request_usd in its evaluation "
                    "report, or --cost-per-request)"
                )
            if volume is None:
                problems.append(f"no production volume of {agent} ({ns}:gates.monthly_requests.{agent})")
        elif cpr is None or volume is None:
            why = (
                (f"no measured cost per request: give --eval {agent}@{version}=REPORT with cost_per_request_usd")
                if cpr is None
                else f"no volume: set {ns}:gates.monthly_requests.{agent}"
            )
            not_counted.append(f"{agent} {version} ({why})")
        if cpr is not None and volume is not None:
            rows[agent] = {
                "version": version,
                "cost_per_request_usd": cpr,
                "monthly_requests": volume,
                "monthly_cost": cpr * volume,
                "source": source,
                "measured": measured,
            }
        elif cpr is not None:
            rows[agent] = {"version": version, "cost_per_request_usd": cpr, "source": source, "measured": measured}
    total = sum(r.get("monthly_cost", 0.0) for r in rows.values())
    counted = [a for a, r in rows.items() if "monthly_cost" in r]
    threshold = (
        f"sum <= {float(amount):,.2f} {currency}/month ({ns}:budget.monthly_amount)"
        if amount is not None
        else "sum of cost x volume <= budget"
    )
    data = {"agents": rows, "total": total, "budget": amount, "currency": currency, "not_counted": not_counted}
    parts = [
        f"{a} {rows[a]['version']} {rows[a]['cost_per_request_usd']:g} x {rows[a]['monthly_requests']:,} = "
        f"{rows[a]['monthly_cost']:,.2f} ({rows[a]['source']})"
        for a in counted
    ]
    text = (
        f"{total:,.2f} {currency}/month, {len(counted)} of {len(spec.agents)} agents: " + "; ".join(parts)
        if counted
        else "nothing counted"
    )
    if not_counted:
        text += "; not counted: " + "; ".join(not_counted)
    if problems:
        return [GateItem(COST_ITEM, False, "; ".join(problems) + f" ({text})", threshold, "", data)]
    assert amount is not None
    return [GateItem(COST_ITEM, total <= float(amount), text, threshold, "", data)]


# --- rollback ---------------------------------------------------------------------------------


def _traffic_only(diff: Any, plan: Any, agents: list[str], spec: PlatformSpec) -> str | None:
    """What the rollback diff changes besides the traffic of one traffic-bearing resource per
    agent (a Cloud Run service, an Agent Engine, an endpoint's deployment: see
    :mod:`agentstage.release.runtimes`; None: nothing), the check ``agentstage rollback`` makes
    before it writes."""
    from agentstage.release.runtimes import RUNTIMES, traffic_targets

    urns = {t.urn: t for t in traffic_targets(plan, spec, agents).values()}
    resources = {r.urn: r for r in plan.resources}
    wrong = list(diff.creates) + list(diff.deletes)
    wrong += [
        f"{u}: {', '.join(p)}"
        for u, p in diff.updates.items()
        if u not in urns or RUNTIMES[urns[u].runtime].wrong_paths(p, resources.get(u))
    ]
    if wrong or len(diff.updates) != len(agents):
        return f"the rollback would change more than the traffic ({diff.changed} resources changed: {'; '.join(wrong)})"
    return None


def _time_rollback(
    project_dir: Path, stack: str, config_file: Path | None, agents: list[str], spec: PlatformSpec
) -> tuple[float, str | None]:
    """Seconds the offline part of ``agentstage rollback`` takes for ``agents``, done here the
    way it does it: edit the stack config (every canary at 0%), plan before and after, diff and
    check only traffic changes. Returns the time and what would make the rollback refuse."""
    from agentstage.diff import diff_plans
    from agentstage.engine import load_project, run_plan
    from agentstage.release.stackfile import StackFile

    start = TIMER()
    try:
        project = load_project(project_dir)
        path = config_file or project.stack_file(stack)
        file = StackFile.load(path, project.name)
        before = run_plan(project_dir, stack, config_file)
        for agent in agents:
            file.set_canary_percent(agent, 0)
        with tempfile.TemporaryDirectory(prefix="agentstage-rollback-") as tmp:
            edited = Path(tmp) / Path(path).name
            edited.write_text(file.dumps(), encoding="utf-8")
            after = run_plan(project_dir, stack, edited)
        problem = _traffic_only(diff_plans(before, after), after, agents, spec)
    except Exception as err:  # noqa: BLE001 - a rollback that cannot be planned is the finding
        return TIMER() - start, f"the rollback does not plan: {type(err).__name__}: {err}"
    return TIMER() - start, problem


def _applied_rollback(project_dir: Path, stack: str) -> tuple[float | None, str]:
    """The last measured ``pulumi up`` of a rollback in the ledger (``applied_seconds``): the
    ``applied`` record ``rollback --apply`` (or a rollout's rolled-back ``--apply``) writes, or
    ``applied_seconds`` on a rollback decision itself (how it was recorded by hand before)."""
    from agentstage.release.apply import APPLIED
    from agentstage.release.ledger import Ledger

    for d in reversed(Ledger(project_dir, stack).decisions()):
        if "applied_seconds" not in d:
            continue
        if d.get("action") == "rollback":
            what = f"the ledger's rollback of {d.get('time')}"
        elif d.get("action") == APPLIED and d.get("deployed_action") == "rollback":
            what = f"the ledger's `pulumi up` of {d.get('time')} (of the rollback of {d.get('deployed_time')})"
        else:
            continue
        value = d["applied_seconds"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} has applied_seconds {json.dumps(value)}, not a duration in seconds")
        return float(value), f"the last rollback's `pulumi up`, {d.get('time')}"
    return None, ""


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _rollback_items(
    project_dir: Path, stack: str, spec: PlatformSpec, candidates: list[str], config_file: Path | None
) -> list[GateItem]:
    limit = spec.gates.max_rollback_seconds
    name = f"rollback within {_duration(limit)}"
    threshold = f"< {limit} s to all traffic on stable (offline edit and plan + `pulumi up`)"
    targets = [a for a in candidates if spec.agents[a].stable is not None]
    items = {
        a: GateItem(name, False, "no stable release: nothing to roll back to", threshold, a)
        for a in candidates
        if a not in targets
    }
    if targets:
        offline, problem = _time_rollback(project_dir, stack, config_file, targets, spec)
        try:
            applied, when = _applied_rollback(project_dir, stack)
        except ValueError as err:
            applied, when, problem = None, "", problem or str(err)
        total = offline + (applied or 0.0)
        for a in targets:
            target = f"to stable {spec.agents[a].stable.version} (revision {spec.stable_revision(a)})"
            if problem:
                items[a] = GateItem(name, False, f"{target}: {problem}", threshold, a, {"offline_seconds": offline})
                continue
            text = (
                f"{target}: {offline:.1f} s offline (edit, plan, diff: traffic of {len(targets)} "
                f"service{'s' if len(targets) > 1 else ''})"
            )
            if applied is None:
                text += "; no `pulumi up` of a rollback measured yet (ledger applied_seconds)"
            else:
                text += f" + {applied:.0f} s ({when}) = {total:.1f} s"
            items[a] = GateItem(
                name,
                total < limit,
                text,
                threshold,
                a,
                {"offline_seconds": offline, "applied_seconds": applied, "total_seconds": total},
            )
    return [items[a] for a in candidates]


# --- stack ------------------------------------------------------------------------------------


def _stack_items(plan: Any, spec: PlatformSpec, candidates: list[str]) -> list[GateItem]:
    items = []
    alerts = plan.by_type(ALERT_POLICY)
    for agent in candidates:
        service = spec.service_name(agent)
        mine = [a for a in alerts if service in json.dumps(a.inputs)]
        items.append(
            GateItem(
                "alerts present",
                bool(mine),
                f"{len(mine)} alert policies on service {service}"
                if mine
                else f"no alert policy on service {service} in the plan ({len(alerts)} in total)",
                "at least one alert policy on the service",
                agent,
            )
        )
    budgets = plan.by_type(BUDGET)
    items.append(
        GateItem(
            "budget present",
            bool(budgets),
            f"{len(budgets)} billing budget(s) in the plan" if budgets else "no billing budget in the plan",
            "a billing budget",
        )
    )
    return items


def _policy_items(project_dir: Path, stack: str, config_file: Path | None, plan: Any) -> list[GateItem]:
    try:
        from agentstage.policy import run_check
    except ImportError as err:
        return [
            GateItem("policy check", False, f"the policy runner is not available ({err})", "no mandatory violation")
        ]
    try:
        report = run_check(project_dir, stack, config_file=config_file, plan=plan)
    except Exception as err:  # noqa: BLE001 - a gate that cannot run fails, with the reason
        return [
            GateItem("policy check", False, f"could not run: {type(err).__name__}: {err}", "no mandatory violation")
        ]
    violations = list(getattr(report, "violations", []) or [])
    mandatory = getattr(report, "mandatory", None)
    n_mandatory = len(mandatory) if isinstance(mandatory, (list, tuple)) else mandatory
    detail = f"{len(violations)} violation(s)"
    if n_mandatory is not None:
        detail += f", {n_mandatory} mandatory"
    if not report.passed:
        first = violations[0] if violations else None
        if first is not None:
            detail += f"; first: {getattr(first, 'policy', getattr(first, 'policy_name', ''))} {getattr(first, 'message', first)}"
    return [GateItem("policy check", bool(report.passed), detail, "no mandatory violation")]


def _binding_items(spec: PlatformSpec, evidence: Evidence, candidates: list[str]) -> list[GateItem]:
    """Every piece of evidence names an agent of the stack and is used: a misspelt name would
    otherwise leave the real agent's item without evidence, and evidence for an agent that is
    not being released would be skipped, silently."""
    out: list[str] = []
    unknown = f"which stack {spec.environment!r} does not have (agents: {_agents(spec)})"
    released = ", ".join(candidates)
    bound = [("--eval", e.agent) for e in evidence.evals if e.agent]
    bound += [("--load-test", a) for a in evidence.load_tests if a]
    bound += [("--memory", a) for a in evidence.memory if a]
    for option, agent in bound:
        if agent not in spec.agents:
            out.append(f"{option} names agent {agent!r}, {unknown}")
        elif option != "--eval" and agent not in candidates:
            out.append(f"{option} names agent {agent!r}, which is not being released (released: {released})")
    for run in (r for v in evidence.load_tests.values() for r in _runs(v)):
        if run.manifest is not None and run.manifest.agent not in spec.agents:
            out.append(
                f"load test {run.name}: its manifest ({Path(run.manifest.path).name}) names agent "
                f"{run.manifest.agent!r}, {unknown}"
            )
    for e in evidence.evals:
        if not e.agent or e.agent not in spec.agents:
            continue
        a = spec.agents[e.agent]
        source = Path(e.path).name
        if e.agent in candidates:
            used = {a.release.version} | ({a.stable.version} if a.stable else set())
            has_current = any(r.agent == e.agent and r.version == a.release.version for r in evidence.evals)
            if e.version not in used and has_current:
                out.append(
                    f"--eval {source} is for {e.agent} {e.version or '(no version)'}, neither the release being gated "
                    f"({a.release.version}) nor its stable ({a.stable.version if a.stable else 'none'})"
                )
        elif e.version != a.release.version:
            out.append(
                f"--eval {source} is for {e.agent} {e.version or '(no version)'}: {e.agent} is not being "
                f"released and runs {a.release.version} (a report of the release it runs counts its cost)"
            )
    return [
        GateItem("evidence binding", False, text, "every piece of evidence names an agent of the stack and is used")
        for text in out
    ]


def evaluate_gates(
    *,
    project_dir: Path,
    stack: str,
    spec: PlatformSpec,
    raw_budget: Any,
    plan: Any,
    candidates: list[str],
    evidence: Evidence,
    config_file: Path | None = None,
) -> GateReport:
    """The checklist for releasing ``candidates`` (agents) as configured in ``spec``/``plan``
    (``config_file``: the stack config they come from, default the stack's file)."""
    report = GateReport(stack, {a: spec.agents[a].release.version for a in candidates})
    ns = _namespace(project_dir)
    for a in candidates:
        agent = spec.agents[a]
        report.releases[a] = {
            "stable": agent.stable.version if agent.stable else None,
            "percent": agent.canary_percent if agent.stable else 100,
        }
    report.items += _binding_items(spec, evidence, candidates)
    for agent in candidates:
        report.items += _eval_items(agent, spec, evidence, ns)
        report.items += _load_items(agent, spec, evidence, ns)
        report.items += _memory_items(agent, spec, evidence, shared=len(candidates) > 1)
    report.items += _rollback_items(project_dir, stack, spec, candidates, config_file)
    report.items += _cost_items(project_dir, stack, spec, raw_budget, evidence, candidates, ns)
    report.items += _stack_items(plan, spec, candidates)
    report.items += _policy_items(project_dir, stack, config_file, plan)
    return report
