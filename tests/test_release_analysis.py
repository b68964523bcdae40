"""The canary judge and the rollout state machine, on hand-built minute series: every finding
of the release-trust issue that the judge answers has a test here."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from scipy.stats import norm

from agentstage.release.analysis import ADVANCE, COMPLETE, HOLD, ROLLBACK, judge
from agentstage.release.metrics import DEFAULT_BOUNDS_MS, Series
from agentstage.release.state import AWAITING_DEPLOY, BAKING, HELD, PAUSED, WATCHING, CanaryState, Observation, decide
from components.spec import AgentSpec
from tests.conftest import load_stack

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
BOUNDS = np.asarray(DEFAULT_BOUNDS_MS)


def spec(**analysis) -> AgentSpec:
    raw = load_stack("production")["agent-platform:agents"]["support-bot"]
    raw = {**raw, "rollout": {**raw["rollout"], "analysis": analysis}}
    return AgentSpec.model_validate(raw)


def latency_row(n: float, median: float, sigma: float = 0.5) -> list[float]:
    cdf = norm.cdf((np.log(BOUNDS) - math.log(median)) / sigma)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return list(np.round(probs * n))


def series(
    name: str,
    minutes: int,
    per_minute: float,
    errors: float,
    *,
    median: float = 400,
    start: int = 0,
    throttled: float = 0.0,
    memory=None,
    incident_minute: tuple[int, ...] = (),
    error_minutes=None,
    signals=None,
) -> Series:
    ends = [T0 + dt.timedelta(minutes=start + i + 1) for i in range(minutes)]
    lat = []
    for i in range(minutes):
        lat.append(latency_row(per_minute, 10_000 if i in (incident_minute or ()) else median))
    errs = [
        errors * per_minute if error_minutes is None else (errors * per_minute if i in error_minutes else 0.0)
        for i in range(minutes)
    ]
    return Series.build(
        name,
        ends,
        requests=[per_minute] * minutes,
        errors=errs,
        throttled=[throttled * per_minute] * minutes,
        latency=lat,
        bounds=BOUNDS,
        memory=memory if memory is not None else [0.5] * minutes,
        signals=signals,
    )


def check(checks, name):
    return next(c for c in checks if c.name == name)


# --- the judge ----------------------------------------------------------------------------------


def test_an_identical_canary_passes_every_check_with_little_evidence():
    s = spec()
    checks = judge(
        s,
        series("c", 30, 120, 0.01),
        series("s", 30, 2280, 0.01),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=30),
    )
    by = {c.name: c for c in checks}
    assert by["errors_vs_stable"].ok and by["errors_vs_stable"].evidence < 2
    assert by["latency_vs_stable"].ok and by["error_rate"].ok and by["latency_p99_ms"].ok
    assert by["errors_vs_stable"].bound == 5 / 0.01  # five checks share alpha = 0.01


def test_five_times_the_errors_is_rolled_back_and_the_record_says_why_in_words():
    checks = judge(
        spec(),
        series("c", 10, 120, 0.05),
        series("s", 10, 2280, 0.01),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=10),
    )
    c = check(checks, "errors_vs_stable")
    assert c.ok is False and c.value == pytest.approx(0.05) and c.baseline == pytest.approx(0.01)
    assert c.detail.startswith("canary 5.00% of 1,200 requests vs stable 1.00% of 22,800; evidence of a regression ")
    assert "rolls back at 500x" in c.detail
    assert "conditional binomial" in c.test


def test_five_times_the_errors_at_one_request_a_second_is_rolled_back_after_five_minutes_of_data():
    # a 5% canary at 20 req/s: 60 requests a minute, 3 failed vs stable's 1% of 1,140. The 4x
    # alternative of the grid crosses its bound (1,000x: half of the check's alpha) on the 5th
    # minute; the 2x alternative alone (the judge before the grid) needed 6
    args = dict(rollout_start=T0, step_start=T0)
    stable = series("s", 5, 1140, 0.01)
    at4 = check(
        judge(
            spec(),
            series("c", 4, 60, 0.05),
            stable.window(T0, T0 + dt.timedelta(minutes=4)),
            now=T0 + dt.timedelta(minutes=4),
            **args,
        ),
        "errors_vs_stable",
    )
    at5 = check(
        judge(spec(), series("c", 5, 60, 0.05), stable, now=T0 + dt.timedelta(minutes=5), **args), "errors_vs_stable"
    )
    assert at4.ok is True and at5.ok is False
    assert at5.bound == 500 and "2x/4x" in at5.test


def test_a_canary_as_good_as_stable_gathers_no_evidence_on_either_alternative():
    checks = judge(
        spec(),
        series("c", 60, 60, 0.01),
        series("s", 60, 1140, 0.01),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=60),
    )
    e = check(checks, "errors_vs_stable")
    assert e.ok is True and e.evidence == pytest.approx(0.5)  # both CUSUMs stay at 0: 1x / 2 alternatives


def test_small_counts_are_judged_exactly_not_by_a_normal_approximation():
    # 60 canary requests, 2 errors vs stable's 1%: a pooled z-test calls this significant at 5%;
    # the exact conditional test sees nothing
    checks = judge(
        spec(),
        series("c", 10, 6, 1 / 30),
        series("s", 10, 114, 0.01),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=10),
    )
    assert check(checks, "errors_vs_stable").ok is True


def test_tolerance_is_relative_so_a_reliable_service_still_catches_a_tenfold_regression():
    # stable 0.05% errors, canary 0.5%: far under the old absolute tolerance of 0.5 points
    checks = judge(
        spec(),
        series("c", 20, 1200, 0.005),
        series("s", 20, 10800, 0.0005),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=20),
    )
    assert check(checks, "errors_vs_stable").ok is False


def test_the_absolute_tolerance_keeps_negligible_differences_from_rolling_back():
    # canary 0.02% vs stable 0.01%: twice as many, but 0.01 points apart (< 0.2 points)
    checks = judge(
        spec(),
        series("c", 30, 50_000, 0.0002),
        series("s", 30, 50_000, 0.0001),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=30),
    )
    assert check(checks, "errors_vs_stable").ok is True


def test_429s_count_as_failed_requests():
    checks = judge(
        spec(),
        series("c", 10, 600, 0.0, throttled=0.08),
        series("s", 10, 2000, 0.0, throttled=0.002),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=10),
    )
    assert check(checks, "errors_vs_stable").ok is False
    assert check(checks, "error_rate").ok is False


def test_a_null_error_count_is_missing_data_never_zero_errors():
    c = series("c", 10, 120, 0.05)
    c.errors[:] = np.nan
    checks = judge(
        spec(), c, series("s", 10, 2280, 0.01), rollout_start=T0, step_start=T0, now=T0 + dt.timedelta(minutes=10)
    )
    e = check(checks, "errors_vs_stable")
    assert e.ok is None and e.detail == "no canary error data"


def test_the_p99_is_pooled_from_the_distributions_not_a_mean_of_minute_p99s():
    # a true p99 of 2400 ms at 2 req/s (120 requests a minute): the mean of the per-minute p99s
    # is biased low, the p99 of the merged distribution is not
    from agentstage.release.metrics import histogram

    rng = np.random.default_rng(3)
    median = 2400 / math.exp(2.326 * 0.5)
    rows = [histogram(rng.lognormal(math.log(median), 0.5, 120), BOUNDS) for _ in range(30)]
    ends = [T0 + dt.timedelta(minutes=i + 1) for i in range(30)]
    c = Series.build("c", ends, requests=[120] * 30, errors=[0] * 30, latency=rows, bounds=BOUNDS)
    checks = judge(spec(), c, None, rollout_start=T0, step_start=T0, now=T0 + dt.timedelta(minutes=30))
    p99 = check(checks, "latency_p99_ms")
    assert p99.value == pytest.approx(2400, rel=0.1)
    assert p99.detail.startswith(f"pooled p99 {p99.value:.0f} ms over 3,600 requests")


def test_a_one_minute_ten_second_incident_is_seen_and_three_roll_back():
    args = dict(rollout_start=T0, step_start=T0, now=T0 + dt.timedelta(minutes=10))
    once = judge(spec(), series("c", 10, 600, 0.0, incident_minute=(4,)), series("s", 10, 600, 0.0), **args)
    p99 = check(once, "latency_p99_ms")
    assert p99.value > 2000  # a mean of minute p99s would read about 1.1 s
    lat = check(once, "latency_vs_stable")
    # one minute carries the most evidence one minute may (40% of the bound), no more
    assert lat.ok is True and lat.evidence == pytest.approx(math.exp(0.4 * math.log(500)), rel=1e-6)
    thrice = judge(spec(), series("c", 10, 600, 0.0, incident_minute=(4, 5, 6)), series("s", 10, 600, 0.0), **args)
    assert check(thrice, "latency_vs_stable").ok is False


def test_latency_twenty_percent_slower_is_a_regression_ten_percent_tolerance():
    checks = judge(
        spec(),
        series("c", 20, 600, 0.0, median=480),
        series("s", 20, 1400, 0.0, median=400),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=20),
    )
    lat = check(checks, "latency_vs_stable")
    assert lat.ok is False and lat.value == pytest.approx(480, rel=0.1)


def test_one_burst_minute_never_rolls_back_alone():
    # the canary's instances crash in one minute (30% of its requests fail), fine otherwise
    c = series("c", 20, 600, 0.01)
    c.errors[7] = 180
    checks = judge(
        spec(), c, series("s", 20, 1400, 0.01), rollout_start=T0, step_start=T0, now=T0 + dt.timedelta(minutes=20)
    )
    assert check(checks, "errors_vs_stable").ok is True


def test_signals_are_compared_when_configured():
    sig_c = {"tool-errors": [12.0] * 10}
    sig_s = {"tool-errors": [4.0] * 10}
    s = spec(signals=["tool-errors"])
    checks = judge(
        s,
        series("c", 10, 300, 0.0, signals=sig_c),
        series("s", 10, 900, 0.0, signals=sig_s),
        rollout_start=T0,
        step_start=T0,
        now=T0 + dt.timedelta(minutes=10),
    )
    tool = check(checks, "signal:tool-errors")
    assert tool.ok is False and tool.bound == 6 / 0.01


def test_a_memory_trend_heading_for_the_limit_is_caught_at_the_end_of_a_step():
    leak = [0.5 + 0.004 * i for i in range(40)]  # +24% per hour
    args = dict(rollout_start=T0, step_start=T0, now=T0 + dt.timedelta(minutes=40))
    flat = judge(spec(), series("c", 40, 600, 0.0), series("s", 40, 600, 0.0), end_of_step=True, **args)
    leaking = judge(spec(), series("c", 40, 600, 0.0, memory=leak), series("s", 40, 600, 0.0), end_of_step=True, **args)
    assert check(flat, "memory_trend").ok is True
    m = check(leaking, "memory_trend")
    assert m.ok is False and "per hour" in m.detail
    # between step ends it is not judged (it is the one check that is not sequential)
    assert check(judge(spec(), series("c", 40, 600, 0.0, memory=leak), None, **args), "memory_trend").ok is None


# --- the state machine ----------------------------------------------------------------------------


def state(percent: int = 5, phase: str = AWAITING_DEPLOY, **kw) -> CanaryState:
    return CanaryState("support-bot", "1.4.0", "1.3.2", percent, phase, T0, **kw)


def at(minute: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def baking_since(minute: float) -> CanaryState:
    """The first 5% step, baking since the live split matched at ``minute``."""
    live = at(minute).strftime("%Y-%m-%dT%H:%M:%SZ")
    return state(5, BAKING, step_start=at(minute), rollout_start=T0, steps=({"percent": 5, "live": live},))


def obs(minute: float, matches: bool = True, c=None, s=None, error=None) -> Observation:
    return Observation(at(minute), matches, {"support-bot-1-4-0": 5}, "test", c, s, error)


def test_the_bake_clock_starts_when_the_live_split_matches_not_when_the_config_was_written():
    s0 = state()
    st, r = decide(s0, spec(), obs(5, matches=False))
    assert (st.phase, r.verdict) == (AWAITING_DEPLOY, HOLD) and r.reason.startswith("waiting for deploy")
    st, r = decide(st, spec(), obs(12, matches=True, c=series("c", 0, 0, 0), s=series("s", 0, 0, 0)))
    # the bake clock starts now; the rollout is judged from when the config asked for the canary
    # (it served before the split was seen live; earlier minutes have no canary traffic)
    assert st.phase == BAKING and st.step_start == at(12) and st.rollout_start == T0
    st, r = decide(st, spec(), obs(20, c=series("c", 8, 120, 0.01, start=12), s=series("s", 8, 2280, 0.01, start=12)))
    assert r.verdict == HOLD and r.reason == "baking: 8 of 10 min baked"
    st, r = decide(st, spec(), obs(22, c=series("c", 10, 120, 0.01, start=12), s=series("s", 10, 2280, 0.01, start=12)))
    assert (r.verdict, r.to_percent, st.phase, st.percent) == (ADVANCE, 25, AWAITING_DEPLOY, 25)


def test_a_step_bakes_its_minutes_of_metrics_not_of_wall_time():
    """Cloud Monitoring shows a minute up to 3 min late: at the bake time the step's last minutes
    are not in yet, and a step that advanced then was judged on 7 or 8 of its 10 minutes."""
    st = baking_since(12)

    def seen(minutes: int):  # the step's minutes Monitoring shows so far
        return series("c", minutes, 120, 0.01, start=12), series("s", minutes, 2280, 0.01, start=12)

    c, s = seen(8)
    st, r = decide(st, spec(), obs(22, c=c, s=s))
    assert (r.verdict, st.phase) == (HOLD, BAKING)
    assert r.reason == (
        "baking: 10 of 10 min baked; waiting for the metrics of the step's last minutes (metrics so far end at "
        "2026-05-01T12:20:00Z; Cloud Monitoring shows a minute up to 3 min late, and a step is judged on 10 min "
        "of them)"
    )
    c, s = seen(10)
    st, r = decide(st, spec(), obs(24, c=c, s=s))
    assert (r.verdict, r.to_percent) == (ADVANCE, 25)


def test_an_inconclusive_step_keeps_baking_at_its_share_until_the_evidence_settles():
    """3% failures against stable's 1% for 10 minutes at 60 requests a minute: 48x of the 500x that
    rolls back. Advancing would give a suspect canary five times the traffic; the step bakes on."""
    st = baking_since(0)
    stable = series("s", 30, 1140, 0.01)
    st, r = decide(st, spec(), obs(10, c=series("c", 10, 60, 0.03), s=series("s", 10, 1140, 0.01)))
    assert (r.verdict, st.phase, st.percent) == (HOLD, BAKING, 5)
    assert r.reason == (
        "inconclusive, the step is extended (0 of 60 min): errors_vs_stable is inconclusive: evidence 48x now "
        "(advances below 22x, rolls back at 500x)"
    )
    # then 20 minutes without a failure: the evidence falls back, and the step advances
    settled = series("c", 30, 60, 0.03, error_minutes=range(10))
    st, r = decide(st, spec(), obs(30, c=settled, s=stable))
    assert (r.verdict, r.to_percent) == (ADVANCE, 25)


def test_a_step_inconclusive_past_its_extension_pauses_for_a_person():
    st = baking_since(0)
    c, s = series("c", 10, 60, 0.03), series("s", 10, 1140, 0.01)  # no newer minutes: the evidence stays
    st, r = decide(st, spec(), obs(71, c=c, s=s))
    assert (r.verdict, st.phase) == (HOLD, PAUSED)
    assert r.reason == (
        "paused for a person after 71 min: errors_vs_stable is inconclusive: evidence 48x now (advances below "
        "22x, rolls back at 500x). Advance on this evidence with `agentstage rollout --approve support-bot`, or "
        "roll back with `agentstage rollback`"
    )
    st, r = decide(st, spec(), obs(72, c=c, s=s), approve=True)
    assert r.verdict == ADVANCE and "approved by the operator on this evidence" in r.reason


def test_a_step_whose_last_metrics_never_come_is_judged_on_what_there_is():
    st = baking_since(12)
    c, s = series("c", 7, 120, 0.01, start=12), series("s", 7, 2280, 0.01, start=12)
    st, r = decide(st, spec(), obs(26, c=c, s=s))
    assert r.verdict == HOLD and "waiting for the metrics" in r.reason  # 14 min: within the 5-min bound
    st, r = decide(st, spec(), obs(27, c=c, s=s))
    assert (r.verdict, r.to_percent) == (ADVANCE, 25)  # 840 canary requests in 7 min: enough to judge


def test_the_minute_the_canary_first_served_is_judged():
    # config written at T0, the split seen live at the look at minute 1: the minute that ended
    # then already carried canary traffic and counts
    st, r = decide(state(), spec(), obs(1, matches=True, c=series("c", 0, 0, 0), s=series("s", 0, 0, 0)))
    st, r = decide(st, spec(), obs(6, c=series("c", 6, 60, 0.05), s=series("s", 6, 1140, 0.01)))
    e = next(c for c in r.checks if c.name == "errors_vs_stable")
    assert e.detail.startswith("canary 5.00% of 360 requests")
    assert (r.verdict, st.phase) == (ROLLBACK, "rolled back")  # 6 minutes of x5 at 60 req/min


def test_a_deploy_that_never_goes_live_is_reported_loudly():
    st, r = decide(state(), spec(), obs(25, matches=False))
    assert r.verdict == HOLD
    assert r.reason.startswith("STILL waiting for deploy") and "has `pulumi up` run for this stack?" in r.reason


def test_a_failing_canary_is_rolled_back_even_while_the_next_step_waits_for_deploy():
    st = state(
        50,
        AWAITING_DEPLOY,
        rollout_start=T0,
        steps=({"percent": 25, "requested": None, "live": "2026-05-01T12:00:00Z"},),
    )
    st, r = decide(st, spec(), obs(10, matches=False, c=series("c", 10, 600, 0.15), s=series("s", 10, 1800, 0.01)))
    assert (r.verdict, st.phase, st.percent) == (ROLLBACK, "rolled back", 0)


def test_low_traffic_extends_the_step_then_pauses_for_a_person_never_rolls_back():
    s = spec()
    st = baking_since(0)

    def thin(m):
        return (series("c", m, 1, 0.0), series("s", m, 19, 0.0))  # 20 req/min: 1 to the canary

    st, r = decide(st, s, obs(15, c=thin(15)[0], s=thin(15)[1]))
    assert r.verdict == HOLD and r.reason.startswith("too little data, the step is extended (5 of 60 min)")
    st, r = decide(st, s, obs(75, c=thin(75)[0], s=thin(75)[1]))
    assert (r.verdict, st.phase) == (HOLD, PAUSED)
    assert "agentstage rollout --approve support-bot" in r.reason
    st2, r = decide(st, s, obs(76, c=thin(76)[0], s=thin(76)[1]), approve=True)
    assert r.verdict == ADVANCE and "approved by the operator" in r.reason


def test_after_100_percent_the_release_is_watched_then_completes():
    s = spec()
    st = state(100, AWAITING_DEPLOY, rollout_start=T0, steps=({"percent": 50, "live": "2026-05-01T12:00:00Z"},))
    stable = series("s", 40, 2000, 0.01)  # stable served until 100%
    st, r = decide(st, s, obs(40, c=series("c", 40, 2400, 0.01), s=stable))
    assert st.phase == WATCHING and r.verdict == HOLD
    st, r = decide(st, s, obs(60, c=series("c", 60, 2400, 0.01), s=stable))
    assert r.reason == "watching after 100%: 20 of 30 min watched"
    st, r = decide(st, s, obs(71, c=series("c", 71, 2400, 0.01), s=stable))
    assert (r.verdict, st.phase) == (COMPLETE, "complete")


def test_a_slow_leak_is_rolled_back_at_the_end_of_the_watch():
    s = spec()
    st = state(
        100, WATCHING, step_start=at(40), rollout_start=T0, steps=({"percent": 100, "live": "2026-05-01T12:40:00Z"},)
    )
    leak = [0.5] * 40 + [0.5 + 0.003 * i for i in range(31)]
    st, r = decide(st, s, obs(71, c=series("c", 71, 2400, 0.01, memory=leak), s=series("s", 40, 2000, 0.01)))
    assert r.verdict == ROLLBACK and r.reason.startswith("memory heading for the limit")


def test_metrics_failures_hold_the_rollout_and_say_why_then_it_resumes():
    s = spec()
    st = baking_since(0)
    for i in range(5):
        st, r = decide(st, s, obs(3 + i, error="Cloud Monitoring: 503 unavailable"))
    assert st.phase == HELD and st.metrics_failures == 5
    assert r.reason.startswith("metrics unavailable (5 in a row): Cloud Monitoring: 503 unavailable")
    assert "held after 5 failed reads" in r.reason
    st, r = decide(st, s, obs(9, c=series("c", 9, 120, 0.01), s=series("s", 9, 2280, 0.01)))
    assert (st.phase, st.metrics_failures, r.verdict) == (BAKING, 0, HOLD)


def test_the_state_round_trips_through_json():
    st = state(
        25,
        BAKING,
        step_start=at(3),
        rollout_start=T0,
        metrics_failures=2,
        steps=({"percent": 5, "live": "2026-05-01T12:00:00Z"},),
    )
    assert CanaryState.from_json(st.to_json()) == st


@pytest.mark.parametrize(
    "analysis, message",
    [
        ({"error_tolerance": 0.01}, "no longer exists; use relative_error_tolerance and absolute_error_tolerance"),
        ({"max_inconclusive": 3}, "no longer exists; use max_extension_minutes"),
        ({"signals": ["tool-errorz"]}, "has 'tool-errorz'; allowed: tool-errors, guardrail-blocks"),
        ({"alpha": 1.5}, "is not a probability; allowed: between 0 and 1, e.g. 0.01"),
    ],
)
def test_bad_analysis_settings_name_the_key(analysis, message):
    from agentstage.config import ConfigError, platform_from_config

    config = load_stack("production")
    config["agent-platform:agents"]["support-bot"]["rollout"]["analysis"] = analysis
    with pytest.raises(ConfigError) as err:
        platform_from_config(config)
    assert any(message in issue for issue in err.value.issues), err.value.issues


def test_an_end_of_step_decision_judges_each_check_once_with_signals_configured():
    s = spec(signals=["tool-errors"])
    st = baking_since(0)
    sig = {"tool-errors": [0.0] * 30}
    st, r = decide(
        st, s, obs(30, c=series("c", 30, 120, 0.01, signals=sig), s=series("s", 30, 2280, 0.01, signals=sig))
    )
    names = [c.name for c in r.checks]
    assert r.verdict == ADVANCE
    assert sorted(names) == sorted(set(names)) and {"memory_trend", "signal:tool-errors"} <= set(names)
    assert next(c for c in r.checks if c.name == "memory_trend").ok is True  # judged, not "at the end of each step"
