"""The release operations behind ``gate``, ``promote``, ``rollout``, ``rollback`` and ``status``.

Each operation loads the stack config, edits it through :class:`StackFile`, re-plans the
stack with the offline engine from the edited config (before anything is written) and checks
the plan diff is what the operation means, then replaces the stack file atomically and records
the decision in the ledger. Nothing here talks to the cloud except the metrics source.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.contract import CLOUD_RUN_SERVICE as SERVICE
from components.spec import AgentSpec, PlatformSpec
from agentstage.release.analysis import ADVANCE, COMPLETE, HOLD, ROLLBACK, Analysis, analyse
from agentstage.release.gates import Evidence, GateReport, evaluate_gates
from agentstage.release.ledger import Ledger, iso, now_utc
from agentstage.release.lock import stack_lock
from agentstage.release.manifest import digest
from agentstage.release.metrics import MetricsSource
from agentstage.release.stackfile import StackFile, StackFileError, plain

__all__ = [
    "ReleaseError",
    "StackState",
    "load_state",
    "in_flight",
    "agent_state",
    "rollback",
    "rollout_once",
    "promote",
    "gate",
    "status",
]

Clock = Callable[[], dt.datetime]


class ReleaseError(Exception):
    """A release operation refused or failed; ``code`` is the CLI exit code."""

    def __init__(self, message: str, code: int = 1, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []


@dataclass
class StackState:
    project_dir: Path
    stack: str
    file: StackFile
    spec: PlatformSpec

    @property
    def path(self) -> Path:
        return self.file.path


def load_state(project_dir: Path, stack: str) -> StackState:
    """The stack file (for editing) and its validated spec. Bad config -> ReleaseError(code 2)."""
    from agentstage.config import ConfigError, platform_from_config
    from agentstage.engine import EngineError, load_project, load_stack_config

    try:
        project = load_project(project_dir)
        values = load_stack_config(project, stack).values
        file = StackFile.load(project.stack_file(stack))
    except (EngineError, StackFileError) as err:
        raise ReleaseError(str(err), 2) from None
    try:
        spec = platform_from_config(values)
    except ConfigError as err:
        raise ReleaseError(f"invalid stack config for stack {stack!r}:", 2, details=err.issues) from None
    return StackState(project.dir, stack, file, spec)


def in_flight(spec: AgentSpec) -> bool:
    return spec.stable is not None and spec.canary_percent > 0


def agent_state(spec: AgentSpec) -> str:
    if spec.stable is None:
        return "stable"
    if spec.canary_percent == 0:
        return "rolled back"
    return f"canary {spec.canary_percent}%"


# --- planning ------------------------------------------------------------------------------


@contextmanager
def _edited_config(state: StackState, text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentstage-") as tmp:
        path = Path(tmp) / state.path.name
        path.write_text(text, encoding="utf-8")
        yield path


def _plan(project_dir: Path, stack: str, config_file: Path | None = None) -> Any:
    from agentstage.engine import EngineError, ProgramError, run_plan

    try:
        return run_plan(project_dir, stack, config_file)
    except (EngineError, ProgramError) as err:
        issues = getattr(err, "config_issues", None) or []
        what = "the edited stack config" if config_file else f"stack {stack!r}"
        raise ReleaseError(f"{what} does not plan: {err}", 1, details=issues) from None


def template_revisions(plan: Any, spec: PlatformSpec) -> dict[str, str]:
    """Agent -> the revision its service's template deploys in ``plan`` (the name is a
    digest of the whole template, so only the program knows it)."""
    names = {spec.service_name(a): a for a in spec.agents}
    out = {}
    for r in plan.by_type(SERVICE):
        agent = names.get(r.inputs.get("name"))
        revision = (r.inputs.get("template") or {}).get("revision")
        if agent is not None and isinstance(revision, str):
            out[agent] = revision
    return out


def _service_urns(plan: Any, agents: list[str], spec: PlatformSpec) -> dict[str, str]:
    names = {spec.service_name(a): a for a in agents}
    return {r.urn: names[r.inputs.get("name")] for r in plan.by_type(SERVICE) if r.inputs.get("name") in names}


def _check_traffic_only(diff: Any, plan: Any, agents: list[str], spec: PlatformSpec, what: str) -> None:
    """The diff must update exactly the services of ``agents``, and only their traffic."""
    urns = _service_urns(plan, agents, spec)
    wrong = list(diff.creates) + list(diff.deletes)
    for urn, paths in diff.updates.items():
        if urn not in urns or any(not p.startswith("traffics") for p in paths):
            wrong.append(f"{urn}: {', '.join(paths)}")
    if wrong or len(diff.updates) != len(agents):
        raise ReleaseError(
            f"refusing the {what}: the plan would change more than the traffic of "
            f"{', '.join(agents)} ({diff.changed} resources changed)", 1, details=wrong)


def _check_no_new_revision(diff: Any, plan: Any, agents: list[str], spec: PlatformSpec) -> None:
    """Advancing a step or completing a canary moves traffic only: no service is created,
    deleted or given a new template (revision)."""
    urns = _service_urns(plan, agents, spec)
    wrong = [u for u in list(diff.creates) + list(diff.deletes) if SERVICE in u]
    for urn in urns:
        paths = diff.updates.get(urn, [])
        if any(not p.startswith("traffics") for p in paths):
            wrong.append(f"{urn}: {', '.join(paths)}")
    if wrong:
        raise ReleaseError("refusing the rollout: moving traffic would change a service's template "
                           "(a new revision) or replace a service", 1, details=wrong)


@dataclass
class Change:
    """The result of an operation that edits a stack."""

    stack: str
    path: Path
    wrote: bool
    diff: Any = None
    old_text: str = ""
    new_text: str = ""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)
    gates: GateReport | None = None
    message: str = ""
    #: What the operator should know about the change (e.g. a recorded stable revision).
    notes: list[str] = field(default_factory=list)


def _decision(stack: str, agent: str, spec: AgentSpec, action: str, to_percent: int, reason: str,
              when: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "time": iso(when), "stack": stack, "agent": agent, "action": action,
        "release": spec.release.version, "stable": spec.stable.version if spec.stable else None,
        "percent": spec.canary_percent if spec.stable else 100, "to_percent": to_percent,
        "reason": reason, **extra,
    }


# --- rollback ------------------------------------------------------------------------------


def rollback(project_dir: Path, stack: str, agents: list[str] | None = None, *, clock: Clock = now_utc,
             reason: str = "rolled back by the operator") -> Change:
    """All traffic of each canary in flight (or of ``agents``) to its stable revision."""
    with stack_lock(project_dir, stack, "rollback"):
        state = load_state(project_dir, stack)
        targets = _select(state, agents, need_stable=True)
        change = Change(stack, state.path, False, old_text=state.file.original)
        if not targets:
            change.message = "nothing to roll back: no canary in flight"
            return change
        for agent in targets:
            state.file.set_canary_percent(agent, 0)
        text = state.file.dumps()
        before = _plan(state.project_dir, stack)
        with _edited_config(state, text) as cfg:
            after = _plan(state.project_dir, stack, cfg)
        from agentstage.diff import diff_plans

        change.diff = diff_plans(before, after)
        _check_traffic_only(change.diff, after, targets, state.spec, "rollback")
        state.file.save()
        change.wrote, change.new_text = True, text
        ledger = Ledger(state.project_dir, stack)
        when = clock()
        for agent in targets:
            d = _decision(stack, agent, state.spec.agents[agent], ROLLBACK, 0, reason, when)
            ledger.append(d)
            change.decisions.append(d)
        change.message = f"all traffic of {', '.join(targets)} on stable"
        return change


def _select(state: StackState, agents: list[str] | None, *, need_stable: bool) -> list[str]:
    spec = state.spec
    if agents:
        for a in agents:
            if a not in spec.agents:
                raise ReleaseError(f"stack {state.stack!r} has no agent {a!r}; agents: {', '.join(sorted(spec.agents))}", 2)
            if need_stable and spec.agents[a].stable is None:
                raise ReleaseError(
                    f"{a} has no stable release in stack {state.stack!r}: there is nothing to roll back to", 1)
        return [a for a in agents if not need_stable or spec.agents[a].canary_percent > 0]
    return sorted(a for a, s in spec.agents.items() if in_flight(s))


# --- rollout -------------------------------------------------------------------------------


def rollout_once(project_dir: Path, stack: str, source: MetricsSource, *, clock: Clock = now_utc,
                 skip_bake: bool = False, agents: list[str] | None = None) -> Change:
    """Analyse every canary in flight once; advance, hold or roll back each."""
    with stack_lock(project_dir, stack, "rollout"):
        state = load_state(project_dir, stack)
        targets = _select(state, agents, need_stable=False)
        targets = [a for a in targets if in_flight(state.spec.agents[a])]
        change = Change(stack, state.path, False, old_text=state.file.original)
        if not targets:
            change.message = "no canary in flight"
            return change
        ledger = Ledger(state.project_dir, stack)
        before = _plan(state.project_dir, stack)
        candidates = template_revisions(before, state.spec)
        now = source.now()
        for agent in targets:
            spec = state.spec.agents[agent]
            service = state.spec.service_name(agent)
            canary_rev = candidates[agent]
            stable_rev = state.spec.stable_revision(agent)
            bake = dt.timedelta(minutes=spec.rollout.bake_minutes)
            series = source.fetch(service, [canary_rev, stable_rev], now - bake, now)
            result = analyse(
                agent, spec, canary=series.get(canary_rev), stable=series.get(stable_rev), now=now,
                step_started=ledger.step_started(agent, spec.release.version, spec.canary_percent),
                inconclusive_streak=ledger.inconclusive_streak(agent, spec.release.version, spec.canary_percent),
                skip_bake=skip_bake,
            )
            result.window["source"] = source.name
            change.analyses.append(result)
            if result.verdict == ADVANCE:
                state.file.set_canary_percent(agent, result.to_percent)
            elif result.verdict == COMPLETE:
                state.file.drop_stable(agent)
                state.file.set_canary_percent(agent, None)
            elif result.verdict == ROLLBACK:
                state.file.set_canary_percent(agent, 0)
        moved = [a.agent for a in change.analyses if a.verdict != HOLD]
        if moved:
            text = state.file.dumps()
            with _edited_config(state, text) as cfg:
                after = _plan(state.project_dir, stack, cfg)
            from agentstage.diff import diff_plans

            change.diff = diff_plans(before, after)
            rolled = [a.agent for a in change.analyses if a.verdict == ROLLBACK]
            if rolled == moved:
                _check_traffic_only(change.diff, after, moved, state.spec, "rollback")
            else:
                _check_no_new_revision(change.diff, after, moved, state.spec)
            state.file.save()
            change.wrote, change.new_text = True, text
        when = clock()
        for a in change.analyses:
            spec = state.spec.agents[a.agent]
            d = _decision(stack, a.agent, spec, a.verdict, a.to_percent, a.reason, when,
                          checks=[c.__dict__ for c in a.checks], statistics=a.statistics,
                          inconclusive=a.inconclusive, window=a.window, skip_bake=skip_bake)
            ledger.append(d)
            change.decisions.append(d)
        return change


# --- promotion -----------------------------------------------------------------------------

#: What staging and production must agree on (per agent), besides the release.
def _contract(spec: AgentSpec) -> dict[str, Any]:
    return {
        "runtime": spec.runtime,
        "port": spec.port,
        "health_path": spec.health_path,
        "secrets (names)": sorted(spec.secrets),
        "env (names)": sorted(spec.env),
        "features (names)": sorted(spec.features),
    }


def _candidates(src: StackState, dst: StackState, agents: list[str] | None) -> list[str]:
    if agents:
        for a in agents:
            for st in (src, dst):
                if a not in st.spec.agents:
                    raise ReleaseError(f"stack {st.stack!r} has no agent {a!r}; agents: {', '.join(sorted(st.spec.agents))}", 2)
        names = list(agents)
    else:
        missing = sorted(set(src.spec.agents) - set(dst.spec.agents))
        if missing:
            raise ReleaseError(
                f"{', '.join(missing)} run in {src.stack!r} but not in {dst.stack!r}: add new agents to "
                f"{dst.stack!r}'s stack config in a reviewed change, then promote their releases", 1)
        names = sorted(src.spec.agents)
    return [a for a in names if digest(src.spec.agents[a].release) != digest(dst.spec.agents[a].release)]


def _refusals(src: StackState, dst: StackState, agents: list[str]) -> list[str]:
    reasons: list[str] = []
    ledger = Ledger(dst.project_dir, dst.stack)
    for a in agents:
        s, d = src.spec.agents[a], dst.spec.agents[a]
        if in_flight(d):
            reasons.append(f"{a}: a canary is already in flight in {dst.stack!r} ({d.release.version} at "
                           f"{d.canary_percent}% beside {d.stable.version}); finish it with `agentstage rollout` "
                           "or roll it back first")
        conflict = ledger.conflict(a, s.release)
        if conflict:
            reasons.append(f"{a}: {conflict.message()}")
        elif d.release.version == s.release.version:
            reasons.append(f"{a}: {dst.stack!r} runs {d.release.version} with a different manifest than "
                           f"{src.stack!r}; a version is never reused with different contents")
        secure = _secure_paths(src.file.agent(a)["release"])
        if secure:
            reasons.append(
                f"{a}: the release in {src.stack!r} has secure: values ({', '.join(secure)}); Pulumi encrypts them per "
                f"stack, so {dst.stack!r} could not decrypt a copy: keep secrets out of the release manifest (use "
                f"agents.{a}.secrets, Secret Manager references) or set them in {dst.stack!r} with `pulumi config "
                "set --secret`")
        keep = d.stable if d.stable is not None else d.release
        if keep.version == s.release.version:
            reasons.append(f"{a}: {s.release.version} is the stable release of {dst.stack!r} already")
        a_c, b_c = _contract(s), _contract(d)
        for key in a_c:
            if a_c[key] != b_c[key]:
                reasons.append(f"{a}: {src.stack!r} and {dst.stack!r} disagree on {key}: {a_c[key]} vs {b_c[key]}; "
                               "make them agree in a reviewed change before promoting")
    return reasons


def _secure_paths(node: Any, path: str = "release") -> list[str]:
    """The keys under ``node`` (a stack file node) that hold ``secure:`` values."""
    if isinstance(node, dict):
        if set(node) == {"secure"}:
            return [path]
        return [p for k, v in node.items() for p in _secure_paths(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _secure_paths(v, f"{path}[{i}]")]
    return []


def _edit_promotion(src: StackState, dst: StackState, agents: list[str], running: dict[str, str]) -> str:
    """Each agent's current release becomes ``stable`` (unless a stable is kept, after a
    rollback), recorded with the revision it runs as (``running``: agent -> the revision its
    template deploys now); the source's release becomes the candidate at the first step."""
    for a in agents:
        d = dst.spec.agents[a]
        if d.stable is None:
            dst.file.move_release_to_stable(a)
            dst.file.set_stable_revision(a, running[a])
        dst.file.set_release(a, plain(src.file.agent(a)["release"]))
        dst.file.set_canary_percent(a, d.rollout.steps[0])
    return dst.file.dumps()


def _gates_on(state: StackState, text: str, cfg: Path, candidates: list[str], evidence: Evidence) -> tuple[GateReport, Any]:
    from agentstage.config import platform_from_config
    from agentstage.engine import load_project, load_stack_config

    plan = _plan(state.project_dir, state.stack, cfg)
    values = load_stack_config(load_project(state.project_dir), state.stack, cfg).values
    spec = platform_from_config(values)
    budget = StackFile(cfg, text).value("budget")
    report = evaluate_gates(project_dir=state.project_dir, stack=state.stack, spec=spec, raw_budget=budget,
                            plan=plan, candidates=candidates, evidence=evidence, config_file=cfg)
    return report, plan


def promote(project_dir: Path, src_stack: str, dst_stack: str, evidence: Evidence, *,
            agents: list[str] | None = None, clock: Clock = now_utc, dry_run: bool = False) -> Change:
    """Copy ``src``'s release manifests into ``dst`` and start their canaries, behind the gates."""
    if src_stack == dst_stack:
        raise ReleaseError("promote needs two different stacks, e.g. `agentstage promote staging production`", 2)
    # both stacks' ledgers are written: hold both locks (in name order; a busy lock fails at once)
    with stack_lock(project_dir, min(src_stack, dst_stack), "promote"), \
            stack_lock(project_dir, max(src_stack, dst_stack), "promote"):
        src, dst = load_state(project_dir, src_stack), load_state(project_dir, dst_stack)
        change = Change(dst_stack, dst.path, False, old_text=dst.file.original)
        candidates = _candidates(src, dst, agents)
        if not candidates:
            change.message = f"nothing to promote: {dst_stack!r} already runs {src_stack!r}'s releases"
            return change
        reasons = _refusals(src, dst, candidates)
        if reasons:
            raise ReleaseError(f"refusing to promote {src_stack} -> {dst_stack}; nothing was changed:", 1, details=reasons)
        before = _plan(dst.project_dir, dst_stack)
        running = template_revisions(before, dst.spec)
        text = _edit_promotion(src, dst, candidates, running)
        with _edited_config(dst, text) as cfg:
            report, after = _gates_on(dst, text, cfg, candidates, evidence)
        from agentstage.diff import diff_plans

        change.gates, change.diff, change.new_text = report, diff_plans(before, after), text
        if not report.passed:
            raise ReleaseError(
                f"refusing to promote {src_stack} -> {dst_stack}: {len(report.failed)} gate(s) failed; nothing was changed:",
                1, details=[f"✗ {(i.agent + ' ') if i.agent else ''}{i.name}: {i.evidence}"
                            + (f" (needs {i.threshold})" if i.threshold else "") for i in report.failed])
        if dry_run:
            return change
        dst.file.save()
        change.wrote = True
        for a in candidates:
            if dst.spec.agents[a].stable is None:
                change.notes.append(
                    f"{a}: recorded stable_revision {running[a]}, the revision the current {dst_stack!r} config deploys; "
                    f"if that config was never applied with `pulumi up` (an agentstage 0.1 deployment, or a change not "
                    f"yet deployed), set stable_revision to the revision that serves {a} now "
                    "(`gcloud run services describe`) before deploying the canary")
        ledger = Ledger(dst.project_dir, dst_stack)
        when = clock()
        for a in candidates:
            old = dst.spec.agents[a]
            new = src.spec.agents[a]
            ledger.record(a, old.stable if old.stable is not None else old.release, when)
            ledger.record(a, new.release, when)
            Ledger(src.project_dir, src_stack).record(a, new.release, when)
            stable = old.stable if old.stable is not None else old.release
            d = {
                "time": iso(when), "stack": dst_stack, "agent": a, "action": "promote",
                "release": new.release.version, "stable": stable.version, "percent": 0,
                "to_percent": old.rollout.steps[0], "from_stack": src_stack, "digest": digest(new.release),
                "reason": f"promoted from {src_stack}; all {len([i for i in report.items if i.agent in ('', a)])} gates passed",
                "gates": [i.__dict__ for i in report.items if i.agent in ("", a)],
            }
            ledger.append(d)
            change.decisions.append(d)
        change.message = ", ".join(f"{a} {src.spec.agents[a].release.version} at {dst.spec.agents[a].rollout.steps[0]}%"
                                   for a in candidates)
        return change


def gate(project_dir: Path, stack: str, evidence: Evidence, *, from_stack: str | None = None,
         agents: list[str] | None = None) -> GateReport:
    """The readiness checklist: of promoting ``from_stack`` into ``stack`` or, without it, of the
    releases ``stack`` runs (its canaries in flight, else ``agents``, else every agent)."""
    dst = load_state(project_dir, stack)
    if from_stack:
        src = load_state(project_dir, from_stack)
        candidates = _candidates(src, dst, agents)
        if not candidates:
            raise ReleaseError(f"nothing to gate: {stack!r} already runs {from_stack!r}'s releases", 2)
        text = _edit_promotion(src, dst, candidates, template_revisions(_plan(dst.project_dir, stack), dst.spec))
    else:
        if agents:
            _select(dst, agents, need_stable=False)
        candidates = agents or sorted(a for a, s in dst.spec.agents.items() if in_flight(s)) or sorted(dst.spec.agents)
        text = dst.file.original
    with _edited_config(dst, text) as cfg:
        report, _ = _gates_on(dst, text, cfg, candidates, evidence)
    return report


# --- status --------------------------------------------------------------------------------


def status(project_dir: Path, stacks: list[str] | None = None, *, history: int = 3) -> list[dict[str, Any]]:
    """Per stack and agent: releases, traffic, state and the last decisions."""
    from agentstage.engine import EngineError, load_project

    try:
        project = load_project(project_dir)
    except EngineError as err:
        raise ReleaseError(str(err), 2) from None
    if not stacks:
        stacks = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project.stack_config_dir.glob("Pulumi.*.yaml"))
    from components.traffic import traffic_targets

    out = []
    for stack in stacks:
        state = load_state(project_dir, stack)
        ledger = Ledger(state.project_dir, stack)
        try:
            revisions = template_revisions(_plan(state.project_dir, stack), state.spec)
        except ReleaseError:  # status reports what the stack file says; the revision names need a plan
            revisions = {}
        agents = []
        for name, spec in sorted(state.spec.agents.items()):
            conflict = ledger.conflict(name, spec.release)
            agents.append({
                "agent": name,
                "state": agent_state(spec),
                "release": spec.release.version,
                "release_digest": digest(spec.release),
                "stable": spec.stable.version if spec.stable else None,
                "canary_percent": spec.canary_percent if spec.stable else None,
                "steps": spec.rollout.steps,
                "revision": revisions.get(name),
                "stable_revision": state.spec.stable_revision(name),
                "traffic": [{"revision": t.revision, "percent": t.percent, "tag": t.tag}
                            for t in traffic_targets(spec, revisions.get(name, ""), state.spec.stable_revision(name))],
                "ledger_conflict": conflict.message() if conflict else None,
                "decisions": ledger.decisions(name)[-history:] if history else [],
            })
        out.append({"stack": stack, "config": str(state.path), "agents": agents})
    return out
