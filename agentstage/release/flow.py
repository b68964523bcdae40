"""The release operations behind ``gate``, ``promote``, ``rollout``, ``rollback`` and ``status``.

Each operation loads the stack config, edits it through :class:`StackFile`, re-plans the
stack with the offline engine from the edited config (before anything is written) and checks
the plan diff is what the operation means, then replaces the stack file atomically and records
the decision in the ledger. Nothing here talks to the cloud except the metrics source.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agentstage.errors import AgentstageError
from agentstage.ops.logs import LoggingError
from agentstage.release.analysis import ADVANCE, COMPLETE, HOLD, ROLLBACK, Analysis
from agentstage.release.gates import Evidence, GateReport, evaluate_gates
from agentstage.release.journal import Transaction, load_states, recover
from agentstage.release.ledger import Ledger, iso, now_utc
from agentstage.release.lock import stack_lock
from agentstage.release.manifest import digest
from agentstage.release.metrics import MetricsError, MetricsScope, MetricsSource
from agentstage.release.observed import ObservedError, ObservedService, Observer
from agentstage.release.requestlogs import RequestLogFailures, RequestLogSource
from agentstage.release.runtimes import LATEST, DuplicateResource, TrafficTarget, runtime_of
from agentstage.release.stackfile import StackFile, StackFileError, plain
from agentstage.release.state import HELD, PAUSED, ROLLED_BACK, CanaryState, Observation, decide, initial_state
from components.contract import CLOUD_RUN_SERVICE as SERVICE
from components.contract import LABEL_AGENT, LABEL_MANAGED_BY, MANAGED_BY
from components.spec import AgentSpec, PlatformSpec

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
    "edited_config",
    "plan_stack",
]

Clock = Callable[[], dt.datetime]


class ReleaseError(AgentstageError):
    """A release operation refused or failed; ``code`` is the CLI exit code (1 refused or
    failed, 2 bad input)."""

    def __init__(self, message: str, code: int = 1, *, details: list[str] | None = None) -> None:
        super().__init__(message, details=details or (), exit_code=code)
        self.code = code


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
    """The stack file (for editing) and its validated spec. Bad config -> ReleaseError(code 2).

    The config namespace is the project's name in ``Pulumi.yaml`` (Pulumi's default): the
    agents are ``<namespace>:agents.<name>``, validated like the platform's config."""
    from agentstage.config import ConfigError, platform_from_config
    from agentstage.engine import EngineError, load_project, load_stack_config

    try:
        project = load_project(project_dir)
        values = load_stack_config(project, stack).values
        file = StackFile.load(project.stack_file(stack), project.name)
    except (EngineError, StackFileError) as err:
        raise ReleaseError(str(err), 2) from None
    if f"{project.name}:agents" not in values:
        raise ReleaseError(
            f"stack {stack!r} has no agents in {file.path}: {file.looked_for('agents')}; "
            f"define each agent as {project.name}:agents.<name>",
            2,
        )
    try:
        spec = platform_from_config(values, namespace=project.name)
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
def edited_config(state: StackState, text: str) -> Iterator[Path]:
    """``text`` as the stack's config file, in a temporary directory for the life of the block:
    what a change would make of the stack, planned without touching the real file."""
    with tempfile.TemporaryDirectory(prefix="agentstage-") as tmp:
        path = Path(tmp) / state.path.name
        path.write_text(text, encoding="utf-8")
        yield path


def plan_stack(project_dir: Path, stack: str, config_file: Path | None = None) -> Any:
    """The offline plan of ``stack`` (or of ``config_file`` in its place); a config that does not
    plan is a ReleaseError naming it, with the config issues as details."""
    from agentstage.engine import EngineError, ProgramError, run_plan

    try:
        return run_plan(project_dir, stack, config_file)
    except (EngineError, ProgramError) as err:
        issues = getattr(err, "config_issues", None) or []
        what = "the edited stack config" if config_file else f"stack {stack!r}"
        raise ReleaseError(f"{what} does not plan: {err}", 1, details=issues) from None


def _services(plan: Any, agents: Iterable[str]) -> dict[str, Any]:
    """Agent -> its Cloud Run service in ``plan``, found by the labels the components put on
    it (``agent: <agent>``, ``managed-by: agentstage``), whatever name the program gave it."""
    wanted, out = set(agents), {}
    for r in plan.by_type(SERVICE):
        labels = r.inputs.get("labels") or {}
        agent = labels.get(LABEL_AGENT)
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or agent not in wanted:
            continue
        if agent in out:
            raise ReleaseError(
                f"two Cloud Run services carry the label {LABEL_AGENT}={agent} in the plan of stack {plan.stack!r}: "
                f"{out[agent].inputs.get('name')} and {r.inputs.get('name')}; an agent has one service",
                1,
            )
        out[agent] = r
    return out


def template_revisions(plan: Any, spec: PlatformSpec) -> dict[str, str]:
    """Agent -> the revision its service's template deploys in ``plan`` (the name is a
    digest of the whole template, so only the program knows it)."""
    out = {}
    for agent, r in _services(plan, spec.agents).items():
        revision = (r.inputs.get("template") or {}).get("revision")
        if isinstance(revision, str):
            out[agent] = revision
    return out


def service_names(plan: Any, spec: PlatformSpec) -> dict[str, str]:
    """Agent -> the name of its Cloud Run service in ``plan``."""
    return {agent: r.inputs.get("name") for agent, r in _services(plan, spec.agents).items()}


def _require_services(found: dict[str, str], agents: Iterable[str], stack: str) -> None:
    """Each of ``agents`` has a service in the plan (``found``: agent -> revision or name)."""
    missing = [a for a in agents if a not in found]
    if missing:
        raise ReleaseError(
            f"no Cloud Run service of {', '.join(missing)} in the plan of stack {stack!r}: the release flow finds an "
            f"agent's service by its labels {LABEL_AGENT}=<agent> and {LABEL_MANAGED_BY}={MANAGED_BY}; deploy it with "
            "CloudRunAgent and labels from components.labels.agent_labels",
            1,
        )


def traffic_of(plan: Any, spec: PlatformSpec, agents: Iterable[str] | None = None) -> dict[str, TrafficTarget]:
    """Agent -> the resource that carries its traffic in ``plan``, whatever its runtime
    (:mod:`agentstage.release.runtimes`)."""
    from agentstage.release.runtimes import traffic_targets

    try:
        return traffic_targets(plan, spec, agents)
    except DuplicateResource as err:
        raise ReleaseError(str(err), 1) from None


def _require_targets(found: dict[str, TrafficTarget], agents: Iterable[str], spec: PlatformSpec, stack: str) -> None:
    """Each of ``agents`` has its traffic-bearing resource in the plan."""
    missing = [a for a in agents if a not in found]
    if not missing:
        return
    if all(runtime_of(spec.agents[a]).runtime == "cloud-run" for a in missing):
        _require_services({}, missing, stack)
    runtime = runtime_of(spec.agents[missing[0]])
    raise ReleaseError(
        f"no {runtime.kind} of {', '.join(missing)} in the plan of stack {stack!r}: the release flow finds an "
        f"agent's traffic by the labels {LABEL_AGENT}=<agent> and {LABEL_MANAGED_BY}={MANAGED_BY} of its resources; "
        f"deploy it with {runtime.component} and labels from components.labels.agent_labels",
        1,
    )


def _traffic_urns(plan: Any, spec: PlatformSpec, agents: list[str]) -> dict[str, TrafficTarget]:
    """URN -> the traffic target of each of ``agents`` in ``plan`` (``spec``: the stack's
    config, for each agent's runtime)."""
    return {t.urn: t for t in traffic_of(plan, spec, agents).values()}


def _resource(plan: Any, urn: str) -> Any:
    return next((r for r in plan.resources if r.urn == urn), None)


def _check_traffic_only(diff: Any, plan: Any, spec: PlatformSpec, agents: list[str], what: str) -> None:
    """The diff must update exactly the traffic-bearing resource of each of ``agents`` (a
    Cloud Run service, an Agent Engine, an endpoint's deployment), and only its traffic."""
    from agentstage.release.runtimes import RUNTIMES

    urns = _traffic_urns(plan, spec, agents)
    wrong = list(diff.creates) + list(diff.deletes)
    for urn, paths in diff.updates.items():
        target = urns.get(urn)
        bad = paths if target is None else RUNTIMES[target.runtime].wrong_paths(paths, _resource(plan, urn))
        if bad:
            wrong.append(f"{urn}: {', '.join(paths)}")
    if wrong or len(diff.updates) != len(agents):
        raise ReleaseError(
            f"refusing the {what}: the plan would change more than the traffic of "
            f"{', '.join(agents)} ({diff.changed} resources changed)",
            1,
            details=wrong,
        )


def _check_no_new_revision(diff: Any, plan: Any, spec: PlatformSpec, agents: list[str]) -> None:
    """Advancing a step or completing a canary moves traffic only: no service (engine,
    endpoint deployment) is created, deleted or given a new template (revision, model)."""
    from agentstage.release.runtimes import AGENT_ENGINE, RUNTIMES
    from components.vertex_deployment import DEPLOYMENT_TYPE

    urns = _traffic_urns(plan, spec, agents)
    kinds = (SERVICE, AGENT_ENGINE, DEPLOYMENT_TYPE)
    wrong = [u for u in list(diff.creates) + list(diff.deletes) if any(k in u for k in kinds)]
    for urn, target in urns.items():
        paths = diff.updates.get(urn, [])
        if RUNTIMES[target.runtime].wrong_paths(paths, _resource(plan, urn)):
            wrong.append(f"{urn}: {', '.join(paths)}")
    if wrong:
        raise ReleaseError(
            "refusing the rollout: moving traffic would change a service's template "
            "(a new revision) or replace a service",
            1,
            details=wrong,
        )


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


def _decision(
    stack: str, agent: str, spec: AgentSpec, action: str, to_percent: int, reason: str, when: dt.datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "time": iso(when),
        "stack": stack,
        "agent": agent,
        "action": action,
        "release": spec.release.version,
        "stable": spec.stable.version if spec.stable else None,
        "percent": spec.canary_percent if spec.stable else 100,
        "to_percent": to_percent,
        "reason": reason,
        **extra,
    }


# --- rollback ------------------------------------------------------------------------------


def rollback(
    project_dir: Path,
    stack: str,
    agents: list[str] | None = None,
    *,
    clock: Clock = now_utc,
    reason: str = "rolled back by the operator",
) -> Change:
    """All traffic of each canary in flight (or of ``agents``) to its stable revision."""
    with stack_lock(project_dir, stack, "rollback"):
        recovered = recover(project_dir, [stack])
        state = load_state(project_dir, stack)
        targets = _select(state, agents, need_stable=True)
        change = Change(stack, state.path, False, old_text=state.file.original, notes=recovered)
        if not targets:
            change.message = "nothing to roll back: no canary in flight"
            return change
        for agent in targets:
            state.file.set_canary_percent(agent, 0)
        text = state.file.dumps()
        before = plan_stack(state.project_dir, stack)
        with edited_config(state, text) as cfg:
            after = plan_stack(state.project_dir, stack, cfg)
        from agentstage.diff import diff_plans

        change.diff = diff_plans(before, after)
        _check_traffic_only(change.diff, after, state.spec, targets, "rollback")
        when = clock()
        txn = Transaction(state.project_dir, stack)
        txn.write_file(state.path, state.file.original, text)
        states = load_states(state.project_dir, stack)
        for agent in targets:
            spec = state.spec.agents[agent]
            current = _canary_state(states.get(agent), agent, spec, when)
            states[agent] = replace(current, phase=ROLLED_BACK, percent=0, requested_at=when).to_json()
            change.decisions.append(txn.decide(stack, _decision(stack, agent, spec, ROLLBACK, 0, reason, when)))
        txn.set_states(stack, states)
        txn.commit()
        change.wrote, change.new_text = True, text
        change.message = f"all traffic of {', '.join(targets)} on stable"
        return change


def _canary_state(saved: dict[str, Any] | None, agent: str, spec: AgentSpec, now: dt.datetime) -> CanaryState:
    """The persisted state of ``agent``'s canary when it still describes the stack config (same
    release, stable and percent); else a new one, awaiting the deploy of what the config asks."""
    if saved:
        current = CanaryState.from_json(saved)
        if spec.stable is not None and (current.release, current.stable, current.percent) == (
            spec.release.version,
            spec.stable.version,
            spec.canary_percent,
        ):
            return current
    return initial_state(agent, spec, now)


def _select(state: StackState, agents: list[str] | None, *, need_stable: bool) -> list[str]:
    spec = state.spec
    if agents:
        for a in agents:
            if a not in spec.agents:
                raise ReleaseError(
                    f"stack {state.stack!r} has no agent {a!r}; agents: {', '.join(sorted(spec.agents))}", 2
                )
            if need_stable and spec.agents[a].stable is None:
                raise ReleaseError(
                    f"{a} has no stable release in stack {state.stack!r}: there is nothing to roll back to", 1
                )
        return [a for a in agents if not need_stable or spec.agents[a].canary_percent > 0]
    return sorted(a for a, s in spec.agents.items() if in_flight(s))


# --- rollout -------------------------------------------------------------------------------


def observe_target(observer: Observer | None, target: TrafficTarget) -> ObservedService:
    """What ``target`` really serves, read by ``observer`` (or, when it reads several runtimes,
    by its observer of ``target.runtime``). ObservedError when it cannot be read."""
    if observer is None:
        raise ObservedError("no observer")
    for_runtime = getattr(observer, "for_runtime", None)
    if for_runtime is not None:
        observer = for_runtime(target.runtime)
        if observer is None:
            raise ObservedError(f"no observer of runtime {target.runtime} ({target.kind} {target.name})")
    try:
        return observer.observe(target.name)
    except ObservedError as err:
        raise ObservedError(f"{observer.name}: {err}") from None


def _observe(
    observer: Observer | None, target: TrafficTarget, desired: dict[str, int], assume_deployed: bool
) -> tuple[dict[str, int] | None, str, bool]:
    """(live split, where it was read, whether it matches ``desired``)."""
    if assume_deployed:
        return dict(desired), "assumed deployed (--assume-deployed)", True
    if observer is None:
        return None, "no observer", False
    try:
        live = observe_target(observer, target)
    except ObservedError as err:
        return None, str(err), False
    return live.split(), live.source, live.matches(desired)


def _revisions(target: TrafficTarget, spec: AgentSpec) -> tuple[str, str]:
    """The canary's and the stable revision's names."""
    return target.candidate, target.stable or spec.stable_revision_name(target.name)


def _read_request_logs(
    source: RequestLogSource | None,
    platform: PlatformSpec,
    targets: list[str],
    found: dict[str, TrafficTarget],
    now: dt.datetime,
) -> dict[str, RequestLogFailures] | str:
    """The failed requests of every Cloud Run canary in flight that reads its request logs, in
    one listing (service -> failures), or why they could not be read."""
    if source is None:
        return {}
    wanted = {}
    for agent in targets:
        spec = platform.agents[agent]
        if spec.runtime == "cloud-run" and spec.rollout.analysis.request_logs:
            wanted[found[agent].name] = list(_revisions(found[agent], spec))
    if not wanted:
        return {}
    try:
        return source.fetch_all(wanted, now)
    except LoggingError as err:
        return str(err)


def rollout_once(
    project_dir: Path,
    stack: str,
    source: MetricsSource,
    *,
    clock: Clock = now_utc,
    skip_bake: bool = False,
    agents: list[str] | None = None,
    observer: Observer | None = None,
    assume_deployed: bool = False,
    approve: list[str] | None = None,
    request_logs: RequestLogSource | None = None,
) -> Change:
    """Look at every canary in flight once: observe its live split and its metrics, let
    :func:`agentstage.release.state.decide` move it, and write what changed as one transaction.
    With ``request_logs``, a Cloud Run canary's failed requests are also read from its request
    logs, fresher than Monitoring's minutes (``rollout.analysis.request_logs``)."""
    with stack_lock(project_dir, stack, "rollout"):
        recovered = recover(project_dir, [stack])
        state = load_state(project_dir, stack)
        targets = _select(state, agents, need_stable=False)
        targets = [a for a in targets if in_flight(state.spec.agents[a])]
        change = Change(stack, state.path, False, old_text=state.file.original, notes=recovered)
        if not targets:
            change.message = "no canary in flight"
            return change
        for a in approve or []:
            if a not in targets:
                raise ReleaseError(f"--approve {a}: {a} has no canary in flight in stack {stack!r}", 2)
        before = plan_stack(state.project_dir, stack)
        found = traffic_of(before, state.spec, targets)
        _require_targets(found, targets, state.spec, stack)
        now = source.now()
        states = load_states(state.project_dir, stack)
        fresh_all = _read_request_logs(request_logs, state.spec, targets, found, now)
        for agent in targets:
            spec = state.spec.agents[agent]
            target = found[agent]
            service = target.name
            canary_rev, stable_rev = _revisions(target, spec)
            current = _canary_state(states.get(agent), agent, spec, now)
            desired = {
                r: p for r, p in ((stable_rev, 100 - spec.canary_percent), (canary_rev, spec.canary_percent)) if p
            }
            live, live_source, matches = _observe(observer, target, desired, assume_deployed)
            start = current.rollout_start or now - dt.timedelta(minutes=spec.rollout.bake_minutes)
            if skip_bake:
                start = now - dt.timedelta(days=1)  # a replay: judge on every minute there is
            error = None
            try:
                series = source.fetch(service, [canary_rev, stable_rev], start, now, scope=MetricsScope.for_agent(spec))
            except MetricsError as err:
                series, error = {}, str(err)
            fresh = fresh_all if isinstance(fresh_all, str) else fresh_all.get(service)
            obs = Observation(
                now,
                matches,
                live,
                live_source,
                series.get(canary_rev),
                series.get(stable_rev),
                error,
                request_logs=fresh,
                canary_revision=canary_rev,
                stable_revision=stable_rev,
            )
            new, result = decide(current, spec, obs, skip_bake=skip_bake, approve=agent in (approve or []))
            result.window.update({"source": source.name, "canary_revision": canary_rev, "stable_revision": stable_rev})
            states[agent] = new.to_json()
            change.analyses.append(result)
            if result.verdict == ADVANCE:
                state.file.set_canary_percent(agent, result.to_percent)
            elif result.verdict == COMPLETE:
                state.file.drop_stable(agent)
                state.file.set_canary_percent(agent, None)
                states.pop(agent)
            elif result.verdict == ROLLBACK:
                state.file.set_canary_percent(agent, 0)
        txn = Transaction(state.project_dir, stack)
        moved = [a.agent for a in change.analyses if a.verdict != HOLD]
        if moved:
            text = state.file.dumps()
            with edited_config(state, text) as cfg:
                after = plan_stack(state.project_dir, stack, cfg)
            from agentstage.diff import diff_plans

            change.diff = diff_plans(before, after)
            rolled = [a.agent for a in change.analyses if a.verdict == ROLLBACK]
            if rolled == moved:
                _check_traffic_only(change.diff, after, state.spec, moved, "rollback")
            else:
                _check_no_new_revision(change.diff, after, state.spec, moved)
            txn.write_file(state.path, state.file.original, text)
            change.wrote, change.new_text = True, text
        when = clock()
        for a in change.analyses:
            spec = state.spec.agents[a.agent]
            d = _decision(
                stack,
                a.agent,
                spec,
                a.verdict,
                a.to_percent,
                a.reason,
                when,
                checks=[asdict(c) for c in a.checks],
                phase=a.phase,
                window=a.window,
                skip_bake=skip_bake,
                assume_deployed=assume_deployed,
            )
            change.decisions.append(txn.decide(stack, d))
        txn.set_states(stack, states)
        txn.commit()
        return change


#: ``--watch`` stops after this many looks in a row without any readable live split.
MAX_BLIND_LOOKS = 5


@dataclass
class WatchResult:
    changes: list[Change]
    rolled_back: bool
    stopped: str


def rollout_watch(
    project_dir: Path,
    stack: str,
    make_source: Callable[[], MetricsSource],
    *,
    clock: Clock = now_utc,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 60,
    max_wait_minutes: float | None = None,
    on_change: Callable[[Change], None] | None = None,
    **kwargs: Any,
) -> WatchResult:
    """``rollout --watch``: look every ``interval`` seconds until every canary completes, rolls
    back or pauses for a person (or ``max_wait_minutes`` pass). ``clock`` and ``sleep`` are
    injectable (the tests and the simulation drive them). A failed metrics read is a recorded
    decision like any other (the state machine holds the canary after several in a row)."""
    changes: list[Change] = []
    started = clock()
    rolled_back = False
    blind = 0  # looks in a row where no live split could be read at all
    while True:
        change = rollout_once(project_dir, stack, make_source(), clock=clock, **kwargs)
        changes.append(change)
        if on_change is not None:
            on_change(change)
        rolled_back |= any(a.verdict == ROLLBACK for a in change.analyses)
        pending = [a for a in change.analyses if a.verdict in (HOLD, ADVANCE) and a.phase not in (PAUSED, HELD)]
        if not pending:
            paused = [a.agent for a in change.analyses if a.phase == PAUSED]
            held = [a.agent for a in change.analyses if a.phase == HELD]
            why = (
                "paused for a person: " + ", ".join(paused)
                if paused
                else "held: metrics unavailable for " + ", ".join(held)
                if held
                else "no canary in flight"
            )
            return WatchResult(changes, rolled_back, why)
        unreadable = [a for a in pending if a.window.get("live_split") is None]
        blind = blind + 1 if unreadable and len(unreadable) == len(pending) else 0
        if blind >= MAX_BLIND_LOOKS:
            return WatchResult(
                changes,
                rolled_back,
                (
                    f"the live traffic split could not be read {blind} times in a row "
                    f"({unreadable[0].window.get('live_source')}); give --observed-file, or --assume-deployed for an "
                    "offline replay"
                ),
            )
        elapsed = (clock() - started).total_seconds()
        if max_wait_minutes is not None and elapsed >= max_wait_minutes * 60:
            return WatchResult(
                changes,
                rolled_back,
                f"--max-wait of {max_wait_minutes:g} min reached; still in flight: "
                + ", ".join(f"{a.agent} at {a.to_percent}% ({a.phase})" for a in pending),
            )
        if kwargs.get("skip_bake") and change.wrote:
            continue  # no bake to wait for: look at the new step at once
        wait = interval if max_wait_minutes is None else min(interval, max_wait_minutes * 60 - elapsed)
        sleep(max(wait, 0))


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
                    raise ReleaseError(
                        f"stack {st.stack!r} has no agent {a!r}; agents: {', '.join(sorted(st.spec.agents))}", 2
                    )
        names = list(agents)
    else:
        missing = sorted(set(src.spec.agents) - set(dst.spec.agents))
        if missing:
            raise ReleaseError(
                f"{', '.join(missing)} run in {src.stack!r} but not in {dst.stack!r}: add new agents to "
                f"{dst.stack!r}'s stack config in a reviewed change, then promote their releases",
                1,
            )
        names = sorted(src.spec.agents)
    return [a for a in names if digest(src.spec.agents[a].release) != digest(dst.spec.agents[a].release)]


def _refusals(src: StackState, dst: StackState, agents: list[str]) -> list[str]:
    reasons: list[str] = []
    ledger = Ledger(dst.project_dir, dst.stack)
    for a in agents:
        s, d = src.spec.agents[a], dst.spec.agents[a]
        if in_flight(d):
            reasons.append(
                f"{a}: a canary is already in flight in {dst.stack!r} ({d.release.version} at "
                f"{d.canary_percent}% beside {d.stable.version}); finish it with `agentstage rollout` "
                "or roll it back first"
            )
        conflict = ledger.conflict(a, s.release)
        if conflict:
            reasons.append(f"{a}: {conflict.message()}")
        elif d.release.version == s.release.version:
            reasons.append(
                f"{a}: {dst.stack!r} runs {d.release.version} with a different manifest than "
                f"{src.stack!r}; a version is never reused with different contents"
            )
        secure = _secure_paths(src.file.agent(a)["release"])
        if secure:
            reasons.append(
                f"{a}: the release in {src.stack!r} has secure: values ({', '.join(secure)}); Pulumi encrypts them per "
                f"stack, so {dst.stack!r} could not decrypt a copy: keep secrets out of the release manifest (use "
                f"agents.{a}.secrets, Secret Manager references) or set them in {dst.stack!r} with `pulumi config "
                "set --secret`"
            )
        keep = d.stable if d.stable is not None else d.release
        if keep.version == s.release.version:
            reasons.append(f"{a}: {s.release.version} is the stable release of {dst.stack!r} already")
        a_c, b_c = _contract(s), _contract(d)
        for key in a_c:
            if a_c[key] != b_c[key]:
                reasons.append(
                    f"{a}: {src.stack!r} and {dst.stack!r} disagree on {key}: {a_c[key]} vs {b_c[key]}; "
                    "make them agree in a reviewed change before promoting"
                )
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


#: What a gate run records as an engine's stable revision when it cannot read the engine: the
#: gate plans the promoted config and never writes it.
UNREAD_ENGINE_REVISION = "not-read"


def _running(
    dst: StackState,
    agents: list[str],
    found: dict[str, TrafficTarget],
    observer: Observer | None,
    *,
    for_gate: bool = False,
) -> dict[str, str]:
    """Agent -> what promote records as the revision of the new stable (the release the
    destination runs now), for the agents that get a stable: on Cloud Run the revision its
    template deploys (``stable_revision``); on Agent Engine the id of the revision that serves
    it, read from the observed engine (``agent_engine.stable_revision``); nothing on a Vertex AI
    endpoint, whose deployed-model ids are derived from the release, nor on GKE, whose stable
    track's Deployment agentstage names."""
    out: dict[str, str] = {}
    refused: list[str] = []
    for a in agents:
        d, t = dst.spec.agents[a], found[a]
        if d.stable is not None or t.runtime in ("vertex-endpoint", "gke"):
            continue  # endpoint: derived deployed-model ids; gke: the stable track's Deployment
        if t.runtime != "agent-engine":
            out[a] = t.candidate
            continue
        try:
            seen = observe_target(observer, t)
        except ObservedError as err:
            why = str(err)
        else:
            split = seen.split()
            serving = next(iter(split)) if len(split) == 1 else None
            if serving == LATEST:
                serving = seen.latest
            if serving and seen.ready.get(serving, True):
                out[a] = serving
                continue
            why = f"{seen.source} shows the split {split or 'empty'}, not one active revision serving all traffic"
        if for_gate:
            out[a] = UNREAD_ENGINE_REVISION
            continue
        refused.append(
            f"{a}: runs on Agent Engine, whose revision ids Google assigns: promote records the id of the revision "
            f"that serves {d.release.version} now in agent_engine.stable_revision, read from the observed engine, "
            f"and the observed state is not available ({why}); give --observed-file with the engine's traffic "
            f"(services.{t.name}), or Google credentials to read the Agent Engine API "
            "(`gcloud auth application-default login`). --assume-deployed cannot stand in for it: only the deployed "
            "engine knows the id"
        )
    if refused:
        raise ReleaseError(f"refusing to promote into {dst.stack!r}; nothing was changed:", 1, details=refused)
    return out


def _edit_promotion(src: StackState, dst: StackState, agents: list[str], running: dict[str, str]) -> str:
    """Each agent's current release becomes ``stable`` (unless a stable is kept, after a
    rollback), recorded with the revision it runs as (``running``, from :func:`_running`); the
    source's release becomes the candidate at the first step."""
    for a in agents:
        d = dst.spec.agents[a]
        if d.stable is None:
            dst.file.move_release_to_stable(a)
            if d.runtime == "agent-engine":
                dst.file.set_engine_stable_revision(a, running[a])
            elif a in running:
                dst.file.set_stable_revision(a, running[a])
        dst.file.set_release(a, plain(src.file.agent(a)["release"]))
        dst.file.set_canary_percent(a, d.rollout.steps[0])
    return dst.file.dumps()


def _gates_on(
    state: StackState, text: str, cfg: Path, candidates: list[str], evidence: Evidence
) -> tuple[GateReport, Any]:
    from agentstage.config import platform_from_config
    from agentstage.engine import load_project, load_stack_config

    plan = plan_stack(state.project_dir, state.stack, cfg)
    values = load_stack_config(load_project(state.project_dir), state.stack, cfg).values
    spec = platform_from_config(values, namespace=state.file.namespace)
    budget = StackFile(cfg, text, state.file.namespace).value("budget")
    report = evaluate_gates(
        project_dir=state.project_dir,
        stack=state.stack,
        spec=spec,
        raw_budget=budget,
        plan=plan,
        candidates=candidates,
        evidence=evidence,
        config_file=cfg,
    )
    return report, plan


def promote(
    project_dir: Path,
    src_stack: str,
    dst_stack: str,
    evidence: Evidence,
    *,
    agents: list[str] | None = None,
    clock: Clock = now_utc,
    dry_run: bool = False,
    observer: Observer | None = None,
    observer_for: Callable[[str, PlatformSpec], Observer | None] | None = None,
) -> Change:
    """Copy ``src``'s release manifests into ``dst`` and start their canaries, behind the gates.

    ``observer`` (or ``observer_for(dst_stack, its spec)``) reads the revision an Agent Engine
    serves now (its id is Google's), recorded as the new stable's; promoting an engine agent
    without observed state is refused."""
    if src_stack == dst_stack:
        raise ReleaseError("promote needs two different stacks, e.g. `agentstage promote staging production`", 2)
    # both stacks' ledgers are written: hold both locks (in name order; a busy lock fails at once)
    with (
        stack_lock(project_dir, min(src_stack, dst_stack), "promote"),
        stack_lock(project_dir, max(src_stack, dst_stack), "promote"),
    ):
        recovered = recover(project_dir, sorted({src_stack, dst_stack}))
        src, dst = load_state(project_dir, src_stack), load_state(project_dir, dst_stack)
        change = Change(dst_stack, dst.path, False, old_text=dst.file.original, notes=recovered)
        candidates = _candidates(src, dst, agents)
        if not candidates:
            change.message = f"nothing to promote: {dst_stack!r} already runs {src_stack!r}'s releases"
            return change
        reasons = _refusals(src, dst, candidates)
        if reasons:
            raise ReleaseError(
                f"refusing to promote {src_stack} -> {dst_stack}; nothing was changed:", 1, details=reasons
            )
        before = plan_stack(dst.project_dir, dst_stack)
        found = traffic_of(before, dst.spec, candidates)
        _require_targets(found, candidates, dst.spec, dst_stack)
        if observer_for is not None:
            observer = observer_for(dst_stack, dst.spec)
        running = _running(dst, candidates, found, observer)
        text = _edit_promotion(src, dst, candidates, running)
        with edited_config(dst, text) as cfg:
            report, after = _gates_on(dst, text, cfg, candidates, evidence)
        from agentstage.diff import diff_plans

        change.gates, change.diff, change.new_text = report, diff_plans(before, after), text
        if not report.passed:
            raise ReleaseError(
                f"refusing to promote {src_stack} -> {dst_stack}: {len(report.failed)} gate(s) failed; nothing was changed:",
                1,
                details=[
                    f"✗ {(i.agent + ' ') if i.agent else ''}{i.name}: {i.evidence}"
                    + (f" (needs {i.threshold})" if i.threshold else "")
                    for i in report.failed
                ],
            )
        if dry_run:
            return change
        change.wrote = True
        for a in candidates:
            if dst.spec.agents[a].stable is None and found[a].runtime == "agent-engine":
                change.notes.append(
                    f"{a}: recorded agent_engine.stable_revision {running[a]}, the Agent Engine revision that serves "
                    f"{dst.spec.agents[a].release.version} now (observed)"
                )
            elif dst.spec.agents[a].stable is None and found[a].runtime == "cloud-run":
                change.notes.append(
                    f"{a}: recorded stable_revision {running[a]}, the revision the current {dst_stack!r} config deploys; "
                    f"if that config was never applied with `pulumi up` (an agentstage 0.1 deployment, or a change not "
                    f"yet deployed), set stable_revision to the revision that serves {a} now "
                    "(`gcloud run services describe`) before deploying the canary"
                )
        when = clock()
        txn = Transaction(dst.project_dir, dst_stack)
        txn.write_file(dst.path, dst.file.original, text)
        states = load_states(dst.project_dir, dst_stack)
        for a in candidates:
            old = dst.spec.agents[a]
            new = src.spec.agents[a]
            stable = old.stable if old.stable is not None else old.release
            txn.record_release(dst_stack, a, stable, iso(when))
            txn.record_release(dst_stack, a, new.release, iso(when))
            txn.record_release(src_stack, a, new.release, iso(when))
            states[a] = CanaryState(
                a, new.release.version, stable.version, old.rollout.steps[0], "awaiting deploy", when
            ).to_json()
            d = {
                "time": iso(when),
                "stack": dst_stack,
                "agent": a,
                "action": "promote",
                "release": new.release.version,
                "stable": stable.version,
                "percent": 0,
                "to_percent": old.rollout.steps[0],
                "from_stack": src_stack,
                "digest": digest(new.release),
                "reason": f"promoted from {src_stack}; all {len([i for i in report.items if i.agent in ('', a)])} gates passed",
                "gates": [i.__dict__ for i in report.items if i.agent in ("", a)],
            }
            change.decisions.append(txn.decide(dst_stack, d))
        txn.set_states(dst_stack, states)
        txn.commit()
        change.message = ", ".join(
            f"{a} {src.spec.agents[a].release.version} at {dst.spec.agents[a].rollout.steps[0]}%" for a in candidates
        )
        return change


def record_gate(project_dir: Path, stack: str, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record a gate run's decisions (one per agent) in the stack's ledger as one transaction,
    under the stack's lock: all of them or none, never interleaved with a rollout's."""
    project_dir = Path(project_dir)
    with stack_lock(project_dir, stack, "gate"):
        recover(project_dir, [stack])
        txn = Transaction(project_dir, stack)
        recorded = [txn.decide(stack, d) for d in decisions]
        txn.commit()
    return recorded


def gate(
    project_dir: Path, stack: str, evidence: Evidence, *, from_stack: str | None = None, agents: list[str] | None = None
) -> GateReport:
    """The readiness checklist: of promoting ``from_stack`` into ``stack`` or, without it, of the
    releases ``stack`` runs (its canaries in flight, else ``agents``, else every agent)."""
    dst = load_state(project_dir, stack)
    if from_stack:
        src = load_state(project_dir, from_stack)
        candidates = _candidates(src, dst, agents)
        if not candidates:
            raise ReleaseError(f"nothing to gate: {stack!r} already runs {from_stack!r}'s releases", 2)
        found = traffic_of(plan_stack(dst.project_dir, stack), dst.spec, candidates)
        _require_targets(found, candidates, dst.spec, stack)
        text = _edit_promotion(src, dst, candidates, _running(dst, candidates, found, None, for_gate=True))
    else:
        if agents:
            _select(dst, agents, need_stable=False)
        candidates = agents or sorted(a for a, s in dst.spec.agents.items() if in_flight(s)) or sorted(dst.spec.agents)
        text = dst.file.original
    with edited_config(dst, text) as cfg:
        report, _ = _gates_on(dst, text, cfg, candidates, evidence)
    return report


# --- status --------------------------------------------------------------------------------


def _desired(spec: AgentSpec, candidate: str, stable: str | None) -> dict[str, int]:
    """The split the stack config asks for (revision -> percent; 0% entries left out)."""
    if spec.stable is None or stable is None:
        return {candidate: 100}
    p = spec.canary_percent
    return {r: q for r, q in ((stable, 100 - p), (candidate, p)) if q}


def status(
    project_dir: Path,
    stacks: list[str] | None = None,
    *,
    history: int = 3,
    observer_for: Callable[[str, PlatformSpec], Observer | None] | None = None,
) -> list[dict[str, Any]]:
    """Per stack and agent: releases, the traffic the config asks for (``traffic``) beside the
    live split (``live``, from ``observer_for(stack, spec)``), the canary's phase and the last
    decisions."""
    from agentstage.engine import EngineError, load_project

    try:
        project = load_project(project_dir)
    except EngineError as err:
        raise ReleaseError(str(err), 2) from None
    if not stacks:
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project.stack_config_dir.glob("Pulumi.*.yaml"))
    from components.traffic import traffic_targets

    out = []
    for stack in stacks:
        state = load_state(project_dir, stack)
        ledger = Ledger(state.project_dir, stack)
        try:
            found = traffic_of(plan_stack(state.project_dir, stack), state.spec)
        except ReleaseError:  # status reports what the stack file says; the revision names need a plan
            found = {}
        revisions = {a: t.candidate for a, t in found.items() if t.candidate}
        services = {a: t.name for a, t in found.items()}
        agents = []
        observer = observer_for(stack, state.spec) if observer_for else None
        canaries = load_states(state.project_dir, stack)
        for name, spec in sorted(state.spec.agents.items()):
            conflict = ledger.conflict(name, spec.release)
            live: dict[str, Any] = {"split": None, "source": "not read"}
            target = found.get(name)
            if observer is not None and target is not None:
                try:
                    seen = observe_target(observer, target)
                    live = {"split": seen.split(), "source": seen.source}
                except ObservedError as err:
                    live = {"split": None, "source": str(err)}
            if spec.runtime in ("agent-engine", "vertex-endpoint", "gke"):
                stable_revision = target.stable if target is not None else None
                traffic = [
                    {"revision": r, "percent": p, "tag": None}
                    for r, p in _desired(spec, revisions.get(name, ""), stable_revision).items()
                ]
            else:
                # without a plan, the service is named as the platform names it
                stable_revision = spec.stable_revision_name(services.get(name) or state.spec.service_name(name))
                traffic = [
                    {"revision": t.revision, "percent": t.percent, "tag": t.tag}
                    for t in traffic_targets(spec, revisions.get(name, ""), stable_revision)
                ]
            agents.append(
                {
                    "agent": name,
                    "runtime": spec.runtime,
                    "state": agent_state(spec),
                    "release": spec.release.version,
                    "release_digest": digest(spec.release),
                    "stable": spec.stable.version if spec.stable else None,
                    "canary_percent": spec.canary_percent if spec.stable else None,
                    "steps": spec.rollout.steps,
                    "service": services.get(name),
                    "revision": revisions.get(name),
                    "stable_revision": stable_revision,
                    "traffic": traffic,
                    "live": live,
                    "phase": (canaries.get(name) or {}).get("phase") if in_flight(spec) else None,
                    "ledger_conflict": conflict.message() if conflict else None,
                    "decisions": ledger.decisions(name)[-history:] if history else [],
                }
            )
        out.append({"stack": stack, "config": str(state.path), "agents": agents})
    return out
