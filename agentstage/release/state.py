"""The typed state of a canary and the one pure function that moves it.

A canary is in one phase at a time::

    awaiting deploy --(live split matches)--> baking --(baked, enough data, checks pass)--> awaiting deploy (next step)
          ^                                      |                                              |
          |                                   paused (too little traffic: a person decides)     v
          |                                                                          watching (100%, previous revision kept)
          +------ any check fails, at any phase with traffic: rolled back           --(watched)--> complete

The bake clock of a step starts when the *observed* traffic split matches the one the stack
config asks for, never when the config is written. ``decide`` is pure: given the state, the
agent's spec and an :class:`Observation` (the live split, the series, the time) it returns the
next state and the decision. The release flow persists both (see ``flow.py``); the simulation
benchmark (``bench/canary.py``) runs the very same function minute by minute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from agentstage.release.analysis import (
    ADVANCE,
    ADVANCE_SHARE,
    COMPLETE,
    HOLD,
    ROLLBACK,
    Analysis,
    Check,
    describe_failure,
    fresh_errors_vs_stable,
    judge,
    next_step,
    ratio_text,
    with_request_logs,
)
from agentstage.release.ledger import iso, parse_time
from agentstage.release.metrics import Series
from agentstage.release.requestlogs import RequestLogFailures
from components.spec import AgentSpec

__all__ = [
    "CanaryState",
    "Observation",
    "decide",
    "initial_state",
    "AWAITING_DEPLOY",
    "BAKING",
    "WATCHING",
    "PAUSED",
    "HELD",
    "COMPLETE_PHASE",
    "ROLLED_BACK",
    "REQUIRED_CHECKS",
]

AWAITING_DEPLOY, BAKING, WATCHING, PAUSED, HELD = "awaiting deploy", "baking", "watching", "paused", "held"
COMPLETE_PHASE, ROLLED_BACK = "complete", "rolled back"
TERMINAL = (COMPLETE_PHASE, ROLLED_BACK)

#: Checks that must have been judged (not "no data") before a step may advance.
REQUIRED_CHECKS = ("errors_vs_stable", "error_rate", "latency_vs_stable", "latency_p99_ms")


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else iso(t)


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else parse_time(text)


@dataclass(frozen=True)
class CanaryState:
    """Where one agent's canary stands."""

    agent: str
    release: str
    stable: str
    #: the canary's share of traffic the stack config asks for
    percent: int
    phase: str
    #: when ``percent`` was written to the stack config
    requested_at: dt.datetime
    #: when the live split first matched ``percent`` (the bake clock of the step)
    step_start: dt.datetime | None = None
    #: from when the rollout is judged: when the config first asked for the canary (set when the
    #: live split first matched; the canary cannot have served before)
    rollout_start: dt.datetime | None = None
    metrics_failures: int = 0
    #: the live split left the config during this step (a manual change, a failed deploy): its
    #: share before ``step_start`` is unknown
    split_moved: bool = False
    #: the phase before metrics failures held the rollout
    held_from: str | None = None
    steps: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("requested_at", "step_start", "rollout_start"):
            out[key] = _iso(out[key])
        out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CanaryState:
        data = dict(data)
        for key in ("requested_at", "step_start", "rollout_start"):
            data[key] = _time(data.get(key))
        data["steps"] = tuple(data.get("steps") or ())
        return cls(**data)


def initial_state(agent: str, spec: AgentSpec, requested_at: dt.datetime) -> CanaryState:
    """A canary just written to the stack config at its current percent."""
    assert spec.stable is not None
    return CanaryState(
        agent, spec.release.version, spec.stable.version, spec.canary_percent, AWAITING_DEPLOY, requested_at
    )


@dataclass
class Observation:
    """What is true at ``now``: the live split (``live`` revision -> percent, None when it
    could not be read), whether it matches what the config asks for, and the series of both
    revisions since the rollout started (or the error reading them)."""

    now: dt.datetime
    live_matches: bool
    live: dict[str, int] | None = None
    live_source: str = ""
    canary: Series | None = None
    stable: Series | None = None
    metrics_error: str | None = None
    #: failed requests from Cloud Run's request logs, fresher than Monitoring's minutes
    #: (``agentstage.release.requestlogs``), or why they could not be read
    request_logs: RequestLogFailures | str | None = None
    canary_revision: str = ""
    stable_revision: str = ""


def _minutes(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 60


#: How long past its bake time a step waits for the metrics of its last minutes (Cloud Monitoring
#: shows a minute up to 3 min after it ends; one more for the look interval and one to spare).
METRICS_LAG_MINUTES = 5


def _step_data(series: Series | None, start: dt.datetime, now: dt.datetime) -> tuple[float, int]:
    if series is None:
        return 0.0, 0
    w = series.window(start, now)
    keep = ~np.isnan(w.requests) & (w.requests > 0)
    return float(w.requests[keep].sum()), int(keep.sum())


def _fresh_errors(
    state: CanaryState, spec: AgentSpec, obs: Observation, judge_start: dt.datetime, result: Analysis, skip_bake: bool
) -> Check | None:
    """``errors_vs_stable`` with the minutes only the request logs show yet, while a step bakes
    at a share both revisions serve; None when they cannot be used (the reason goes to the
    decision's window). Only a rollback is ever decided on it: a step advances on Cloud
    Monitoring's minutes alone."""
    logs = obs.request_logs
    if isinstance(logs, str):
        result.window["request_logs"] = f"not read: {logs}"
        return None
    assert logs is not None
    if skip_bake or state.phase not in (BAKING, PAUSED) or not obs.live_matches or state.step_start is None:
        result.window["request_logs"] = "not used: only while a step bakes at its live split"
        return None
    if not 0 < state.percent < 100:
        result.window["request_logs"] = "not used: only while both revisions serve"
        return None
    if not obs.canary_revision or not obs.stable_revision:
        result.window["request_logs"] = "not used: the revisions' names are not known"
        return None
    # Since the config asked for this share, the live share has been between the last step's and
    # this one (a rollout only raises it), so counting those minutes at this share expects *more*
    # canary failures than a healthy canary had: it can only weaken the evidence, never fake it.
    # When the split left the config meanwhile, its share before the step started is unknown.
    since = state.step_start if state.split_moved else state.requested_at
    merged = with_request_logs(
        obs.canary,
        obs.stable,
        logs,
        canary_revision=obs.canary_revision,
        stable_revision=obs.stable_revision,
        share=state.percent / 100,
        since=since,
    )
    if isinstance(merged, str):
        result.window["request_logs"] = f"not used: {merged}"
        return None
    canary, stable, note = merged
    result.window["request_logs"] = note
    check = fresh_errors_vs_stable(spec, canary, stable, rollout_start=judge_start, now=obs.now)
    check.detail += f" ({note})"
    return check


def decide(
    state: CanaryState, spec: AgentSpec, obs: Observation, *, skip_bake: bool = False, approve: bool = False
) -> tuple[CanaryState, Analysis]:
    """The next state of a canary and the decision, from what is observed at ``obs.now``."""
    ro, cfg = spec.rollout, spec.rollout.analysis
    now = obs.now
    result = Analysis(
        state.agent, state.release, state.stable, state.percent, HOLD, state.percent, "", phase=state.phase
    )
    result.window = {
        "now": _iso(now),
        "rollout_start": _iso(state.rollout_start),
        "step_start": _iso(state.step_start),
        "live_split": obs.live,
        "live_source": obs.live_source,
        "desired_percent": state.percent,
    }
    if state.phase in TERMINAL:
        result.reason = f"nothing to do: the canary is {state.phase}"
        return state, result

    # 1. the bake clock: it starts when the live split matches the config
    if obs.live_matches and state.phase in (AWAITING_DEPLOY,):
        phase = WATCHING if state.percent >= 100 else BAKING
        steps = state.steps + ({"percent": state.percent, "requested": _iso(state.requested_at), "live": _iso(now)},)
        # the rollout is judged from when the config asked for the canary, not from this look: the
        # canary served before the split was seen live (up to a look interval earlier), and minutes
        # before it served have no canary traffic, which every check leaves out
        state = replace(
            state, phase=phase, step_start=now, rollout_start=state.rollout_start or state.requested_at, steps=steps
        )
        result.window["step_start"] = _iso(now)
        result.window["rollout_start"] = _iso(state.rollout_start)
    elif not obs.live_matches and state.phase in (BAKING, WATCHING, PAUSED):
        # the live split moved away from the config (a manual change, a failed deploy)
        state = replace(state, phase=AWAITING_DEPLOY, requested_at=now, step_start=None, split_moved=True)
    result.phase = state.phase

    # 2. metrics
    if obs.metrics_error is not None:
        failures = state.metrics_failures + 1
        held = failures >= cfg.max_metrics_failures
        state = replace(
            state,
            metrics_failures=failures,
            held_from=state.held_from or (state.phase if held else None),
            phase=HELD if held else state.phase,
        )
        result.phase = state.phase
        result.reason = (
            f"metrics unavailable ({failures} in a row): {obs.metrics_error}; nothing decided, the canary "
            f"stays at {state.percent}%"
        )
        if held:
            result.reason += (
                f"; held after {cfg.max_metrics_failures} failed reads: the rollout resumes when the "
                "metrics can be read again"
            )
        return state, result
    if state.phase == HELD:
        state = replace(state, phase=state.held_from or AWAITING_DEPLOY, held_from=None)
    state = replace(state, metrics_failures=0)
    result.phase = state.phase

    # 3. the judge, whenever the canary has served traffic
    judge_start = state.rollout_start
    if skip_bake and state.rollout_start is not None and obs.canary is not None and len(obs.canary):
        # a replay (--skip-bake): judge on every minute there is
        judge_start = min(state.rollout_start, obs.canary.ends[0] - dt.timedelta(minutes=1))
    baking = state.phase != AWAITING_DEPLOY
    need = cfg.watch_minutes if state.phase == WATCHING else ro.bake_minutes
    elapsed = _minutes(now - state.step_start) if baking and state.step_start is not None else 0.0
    baked = baking and (skip_bake or elapsed >= need)
    # A step bakes ``need`` minutes of *metrics* at its share, not of wall time: Cloud Monitoring
    # shows a minute up to three minutes after it ends ("data is not visible for up to 180
    # seconds", Google Cloud metrics list, run.googleapis.com), so a step that advanced on the
    # clock alone was judged on its first seven or eight minutes. Its last minutes are waited
    # for, up to METRICS_LAG_MINUTES; past that, the step is judged on what there is (too little
    # data then extends or pauses it below, as for a quiet service).
    judged_through = obs.canary.ends[-1] if obs.canary is not None and len(obs.canary) else None
    catching_up = (
        baked
        and not skip_bake
        and state.step_start is not None
        and (judged_through is None or judged_through < state.step_start + dt.timedelta(minutes=need))
        and elapsed < need + METRICS_LAG_MINUTES
    )
    baked = baked and not catching_up
    if judge_start is not None:
        # the current load level began when the live split last changed; the memory trend is
        # judged once a step is over
        segment = _time(state.steps[-1]["live"]) if state.steps else state.rollout_start
        result.checks = judge(
            spec,
            obs.canary,
            obs.stable,
            rollout_start=judge_start,
            step_start=segment if not skip_bake else judge_start,
            now=now,
            end_of_step=baked,
        )
    failed = [c for c in result.checks if c.ok is False]
    if not failed and judge_start is not None and obs.request_logs is not None:
        fresh = _fresh_errors(state, spec, obs, judge_start, result, skip_bake)
        if fresh is not None and fresh.ok is False:
            result.checks = [fresh if c.name == fresh.name else c for c in result.checks]
            failed = [fresh]
    if failed:
        state = replace(state, phase=ROLLED_BACK, percent=0, requested_at=now)
        result.verdict, result.to_percent, result.phase = ROLLBACK, 0, ROLLED_BACK
        result.reason = "; ".join(describe_failure(c) for c in failed)
        return state, result

    # 4. waiting for the deploy
    if state.phase == AWAITING_DEPLOY:
        waited = _minutes(now - state.requested_at)
        live = ", ".join(f"{r} {p}%" for r, p in (obs.live or {}).items()) or "unknown"
        result.reason = (
            f"waiting for deploy: the config asks for {state.percent}% on {state.release}; live split "
            f"{live} ({obs.live_source or 'no source'}); waited {waited:.0f} min"
        )
        if waited > cfg.deploy_timeout_minutes:
            result.reason = (
                "STILL " + result.reason + f" (more than {cfg.deploy_timeout_minutes} min): has "
                "`pulumi up` run for this stack? the bake time starts only when the split is live"
            )
        return state, result

    # 5. baking / watching / paused
    assert state.step_start is not None
    data_start = state.step_start if not skip_bake else (judge_start or state.step_start)
    c_req, c_pts = _step_data(obs.canary, data_start, now)
    s_req, _ = _step_data(obs.stable, data_start, now)
    result.window.update(
        {"step_minutes": round(elapsed, 1), "canary_requests": c_req, "canary_minutes": c_pts, "stable_requests": s_req}
    )
    what = "watched" if state.phase == WATCHING else "baked"
    if not baked:
        result.reason = (
            f"{'watching after 100%' if state.phase == WATCHING else 'baking'}: {elapsed:.0f} of {need} min {what}"
        )
        if catching_up:
            seen = f"metrics so far end at {_iso(judged_through)}" if judged_through else "no metrics yet"
            result.reason += (
                f"; waiting for the metrics of the step's last minutes ({seen}; Cloud Monitoring shows a "
                f"minute up to 3 min late, and a step is judged on {need} min of them)"
            )
        return state, result
    unjudged = [
        c.name
        for c in result.checks
        if c.ok is None
        and c.name in REQUIRED_CHECKS
        and not (state.phase == WATCHING and c.name.endswith("_vs_stable") and c.value is not None)
    ]
    short = []
    if c_req < cfg.min_requests or c_pts < cfg.min_points:
        short.append(
            f"{c_req:.0f} canary requests in {c_pts} min this step (needs {cfg.min_requests} in {cfg.min_points} min)"
        )
    if state.phase != WATCHING and s_req <= 0:
        short.append("no stable traffic to compare with this step")
    if unjudged:
        short.append("no data for " + ", ".join(unjudged))
    unsure = [
        f"{c.name} is inconclusive: evidence {ratio_text(c.current)} now (advances below "
        f"{ratio_text(c.bound**ADVANCE_SHARE)}, rolls back at {ratio_text(c.bound)})"
        for c in result.checks
        if c.ok and c.current is not None and c.bound and c.current >= c.bound**ADVANCE_SHARE
    ]
    waiting = short + unsure
    if waiting and not approve:
        extra = elapsed - need
        if state.phase == PAUSED or extra > cfg.max_extension_minutes:
            state = replace(state, phase=PAUSED)
            result.phase = PAUSED
            result.reason = (
                f"paused for a person after {elapsed:.0f} min: "
                + "; ".join(waiting)
                + ". Advance on this evidence with `agentstage rollout --approve "
                + state.agent
                + "`, or roll back with `agentstage rollback`"
            )
        else:
            result.reason = (
                f"{'too little data' if short else 'inconclusive'}, the step is extended "
                f"({extra:.0f} of {cfg.max_extension_minutes} min): " + "; ".join(waiting)
            )
        return state, result

    how = "approved by the operator on this evidence" if waiting and approve else f"{elapsed:.0f} min {what}"
    if state.phase == WATCHING:
        state = replace(state, phase=COMPLETE_PHASE)
        result.verdict, result.to_percent, result.phase = COMPLETE, 100, COMPLETE_PHASE
        result.reason = f"all checks passed ({how}); the release takes all traffic and the previous revision leaves"
        return state, result
    target = next_step(ro.steps, state.percent)
    state = replace(state, phase=AWAITING_DEPLOY, percent=target, requested_at=now, step_start=None, split_moved=False)
    result.verdict, result.to_percent, result.phase = ADVANCE, target, AWAITING_DEPLOY
    result.reason = f"all checks passed ({how}); advance {result.percent}% -> {target}%" + (
        f" and watch for {cfg.watch_minutes} min with the previous revision kept" if target >= 100 else ""
    )
    return state, result
