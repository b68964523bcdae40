"""The release readiness checklist: each item passed or failed, with its evidence and threshold.

Missing evidence is a failed item, never a pass. Items per candidate agent: evaluation scores
(per metric), load test latency and errors, memory stability (when a series is given), cost
per request x production volume within the budget, rollback possible. Items per stack:
alerts present, budget present, policy check passing (``agentstage.policy.run_check``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.spec import PlatformSpec
from agentstage.release.evidence import EvalReport, LoadTest

__all__ = ["GateItem", "GateReport", "Evidence", "evaluate_gates", "ALERT_POLICY", "BUDGET"]

ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"


@dataclass
class GateItem:
    name: str
    ok: bool | None  # None: not applicable (optional evidence not given)
    evidence: str
    threshold: str = ""
    agent: str = ""


@dataclass
class GateReport:
    stack: str
    candidates: dict[str, str]  # agent -> version
    items: list[GateItem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(i.ok is not False for i in self.items)

    @property
    def failed(self) -> list[GateItem]:
        return [i for i in self.items if i.ok is False]

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "candidates": self.candidates, "passed": self.passed,
                "items": [asdict(i) for i in self.items]}


@dataclass
class Evidence:
    evals: list[EvalReport] = field(default_factory=list)
    load_tests: dict[str | None, LoadTest] = field(default_factory=dict)  # agent (None: every agent)
    memory: dict[str | None, list[tuple[float, float]]] = field(default_factory=dict)
    cost_per_request_usd: float | None = None


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "no value"
    return f"{v:g}{unit}"


def _eval_items(agent: str, spec: PlatformSpec, evidence: Evidence) -> list[GateItem]:
    release = spec.agents[agent].release
    thresholds = spec.gates.eval_thresholds(agent)
    reports = [r for r in evidence.evals if r.agent == agent]
    items: list[GateItem] = []
    if not reports:
        given = ", ".join(sorted({str(r.agent) for r in evidence.evals})) or "none"
        return [GateItem("evaluation report", False, f"no report for {agent} {release.version} (reports given for: {given})",
                         "a report of this release", agent)]
    report = reports[-1]
    source = f"{Path(report.path).name} ({report.format})"
    if report.version is None:
        items.append(GateItem("evaluation report", False, f"{source} does not name the release version; bind it with "
                              f"--eval {agent}@{release.version}=FILE", f"version {release.version}", agent))
    elif report.version != release.version:
        items.append(GateItem("evaluation report", False, f"{source} is for {report.version}",
                              f"version {release.version}", agent))
    elif release.eval_dataset and report.dataset and report.dataset != release.eval_dataset:
        items.append(GateItem("evaluation report", False, f"{source} used dataset {report.dataset}",
                              f"dataset {release.eval_dataset}", agent))
    else:
        ds = report.dataset or "dataset not stated"
        items.append(GateItem("evaluation report", True, f"{source}: {report.version}, {ds}",
                              f"version {release.version}", agent))
    if not thresholds:
        items.append(GateItem("evaluation thresholds", False, "none configured",
                              "set agent-platform:gates.eval (metric -> minimum score)", agent))
    for metric, minimum in sorted(thresholds.items()):
        score = report.metrics.get(metric)
        if score is None:
            items.append(GateItem(f"eval {metric}", False, f"missing from {source}", f">= {minimum:g}", agent))
        else:
            items.append(GateItem(f"eval {metric}", score >= minimum, f"{score:g}", f">= {minimum:g}", agent))
    return items


def _load_items(agent: str, spec: PlatformSpec, evidence: Evidence, shared: bool = False) -> list[GateItem]:
    """``shared``: several agents are released at once, so a load test given without an agent
    (``--load-test PATH``) cannot tell which agent it measured."""
    lt = evidence.load_tests.get(agent)
    limits = spec.gates.load_test
    if lt is None and evidence.load_tests.get(None) is not None:
        if shared:
            return [GateItem("load test", False,
                             "a load test given without an agent cannot stand for several agents released together: "
                             f"bind it, --load-test {agent}=PATH", f"a load test of {agent}", agent)]
        lt = evidence.load_tests[None]
    if lt is None:
        return [GateItem("load test", False, "no load test given (--load-test Locust --csv output)",
                         f"p99 <= {limits.p99_ms} ms, errors < {limits.max_error_rate:.0%}", agent)]
    name = Path(lt.path).name
    items = []
    for label, value, limit in (("p50", lt.p50_ms, limits.p50_ms), ("p95", lt.p95_ms, limits.p95_ms),
                                ("p99", lt.p99_ms, limits.p99_ms)):
        if limit is None:
            continue
        ok = value is not None and value <= limit
        items.append(GateItem(f"load test {label}", ok, f"{_fmt(value, ' ms')} ({name})", f"<= {limit} ms", agent))
    rate = lt.error_rate
    detail = f"{lt.failures}/{lt.requests} failed" + (f", {lt.duration_s:.0f} s, {lt.peak_users} users" if lt.duration_s else "")
    items.append(GateItem("load test errors", rate is not None and rate < limits.max_error_rate,
                          f"{rate:.2%} ({detail})" if rate is not None else "no requests recorded",
                          f"< {limits.max_error_rate:.2%}", agent))
    return items


def _memory_items(agent: str, spec: PlatformSpec, evidence: Evidence) -> list[GateItem]:
    series = evidence.memory.get(agent) or evidence.memory.get(None)
    limit = spec.gates.max_memory_growth
    if series is None:
        return [GateItem("memory stable", None, "no memory series given (optional: --memory)", f"growth <= {limit:.0%}", agent)]
    from scipy.stats import linregress

    t = [p[0] for p in series]
    m = [p[1] for p in series]
    fit = linregress(t, m)
    mean = sum(m) / len(m)
    growth = float(fit.slope * (max(t) - min(t)) / mean) if mean else 0.0
    return [GateItem("memory stable", bool(growth <= limit),
                     f"{growth:+.1%} over {max(t) - min(t):.0f} s (trend of {len(m)} points, r={fit.rvalue:.2f})",
                     f"growth <= {limit:.0%}", agent)]


def _cost_items(agent: str, spec: PlatformSpec, raw_budget: Any, evidence: Evidence) -> list[GateItem]:
    report = next((r for r in reversed(evidence.evals) if r.agent == agent), None)
    cpr = evidence.cost_per_request_usd
    if cpr is None and report is not None:
        cpr = report.cost_per_request_usd
    volume = spec.gates.monthly_requests.get(agent)
    amount = raw_budget.get("monthly_amount") if isinstance(raw_budget, dict) else None
    currency = raw_budget.get("currency", "USD") if isinstance(raw_budget, dict) else "USD"
    missing = []
    if cpr is None:
        missing.append("cost per request (cost_per_request_usd in the eval report, or --cost-per-request)")
    if volume is None:
        missing.append(f"production volume (agent-platform:gates.monthly_requests.{agent})")
    if amount is None:
        missing.append("budget (agent-platform:budget.monthly_amount)")
    if missing:
        return [GateItem("cost within budget", False, "missing " + "; ".join(missing), "cost x volume <= budget", agent)]
    projected = cpr * volume
    return [GateItem("cost within budget", projected <= float(amount),
                     f"{cpr:g} {currency}/request x {volume:,} requests = {projected:,.2f} {currency}/month",
                     f"<= {float(amount):,.2f} {currency}/month", agent)]


def _rollback_items(agent: str, spec: PlatformSpec, service: str) -> list[GateItem]:
    a = spec.agents[agent]
    if a.stable is None:
        return [GateItem("rollback possible", False, "no stable release: nothing to roll back to",
                         "a stable revision", agent)]
    return [GateItem("rollback possible", True,
                     f"stable {a.stable.version} (revision {spec.stable_revision(agent)})",
                     "a stable revision", agent)]


def _stack_items(plan: Any, spec: PlatformSpec, candidates: list[str]) -> list[GateItem]:
    items = []
    alerts = plan.by_type(ALERT_POLICY)
    for agent in candidates:
        service = spec.service_name(agent)
        mine = [a for a in alerts if service in json.dumps(a.inputs)]
        items.append(GateItem(
            "alerts present", bool(mine),
            f"{len(mine)} alert policies on service {service}" if mine
            else f"no alert policy on service {service} in the plan ({len(alerts)} in total)",
            "at least one alert policy on the service", agent))
    budgets = plan.by_type(BUDGET)
    items.append(GateItem("budget present", bool(budgets),
                          f"{len(budgets)} billing budget(s) in the plan" if budgets else "no billing budget in the plan",
                          "a billing budget"))
    return items


def _policy_items(project_dir: Path, stack: str, config_file: Path | None, plan: Any) -> list[GateItem]:
    try:
        from agentstage.policy import run_check
    except ImportError as err:
        return [GateItem("policy check", False, f"the policy runner is not available ({err})", "no mandatory violation")]
    try:
        report = run_check(project_dir, stack, config_file=config_file, plan=plan)
    except Exception as err:  # noqa: BLE001 - a gate that cannot run fails, with the reason
        return [GateItem("policy check", False, f"could not run: {type(err).__name__}: {err}", "no mandatory violation")]
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


def _binding_items(spec: PlatformSpec, evidence: Evidence) -> list[GateItem]:
    """Evidence bound to an agent the stack does not have is a mistake (a misspelled name would
    otherwise leave the real agent's item without evidence, silently)."""
    bound = [("--eval", e.agent) for e in evidence.evals if e.agent]
    bound += [("--load-test", a) for a in evidence.load_tests if a]
    bound += [("--memory", a) for a in evidence.memory if a]
    return [
        GateItem("evidence binding", False, f"{option} names agent {agent!r}, which stack {spec.environment!r} does "
                 f"not have (agents: {', '.join(sorted(spec.agents))})", "every bound agent exists")
        for option, agent in bound if agent not in spec.agents
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
    """The checklist for releasing ``candidates`` (agents) as configured in ``spec``/``plan``."""
    report = GateReport(stack, {a: spec.agents[a].release.version for a in candidates})
    report.items += _binding_items(spec, evidence)
    for agent in candidates:
        report.items += _eval_items(agent, spec, evidence)
        report.items += _load_items(agent, spec, evidence, shared=len(candidates) > 1)
        report.items += _memory_items(agent, spec, evidence)
        report.items += _cost_items(agent, spec, raw_budget, evidence)
        report.items += _rollback_items(agent, spec, spec.service_name(agent))
    report.items += _stack_items(plan, spec, candidates)
    report.items += _policy_items(project_dir, stack, config_file, plan)
    return report
