"""Canary analysis: every decision path (advance, complete, hold, roll back, inconclusive)."""

from __future__ import annotations

import datetime as dt

import pytest

from agentstage.release.analysis import ADVANCE, COMPLETE, HOLD, ROLLBACK, analyse, next_step
from agentstage.release.metrics import Point, Series
from components.spec import AgentSpec
from tests.conftest import load_stack

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def spec(**rollout) -> AgentSpec:
    data = load_stack("production")["agent-platform:agents"]["support-bot"]
    data["rollout"].update(rollout)
    return AgentSpec.model_validate(data)


def series(name, requests, errors, latency, minutes=10):
    pts = [Point(NOW - dt.timedelta(minutes=minutes - 1 - i), requests[i], errors[i], latency[i]) for i in range(minutes)]
    return Series(name, pts)


def healthy(name, n=100, lat=800.0, err=0):
    return series(name, [n] * 10, [err] * 10, [lat + (i % 3) * 10 for i in range(10)])


def run(canary, stable, *, started=NOW - dt.timedelta(minutes=15), streak=0, skip=False, **rollout):
    return analyse("support-bot", spec(**rollout), canary=canary, stable=stable, now=NOW, step_started=started,
                   inconclusive_streak=streak, skip_bake=skip)


def test_healthy_canary_after_bake_advances_to_the_next_step():
    r = run(healthy("c"), healthy("s", 2000))
    assert (r.verdict, r.to_percent) == (ADVANCE, 25)
    assert r.reason == "all checks passed (15 of 10 min baked); advance 5% -> 25%"
    assert [c.name for c in r.checks] == ["error_rate", "latency_p99_ms", "latency_vs_stable", "errors_vs_stable"]
    assert all(c.ok for c in r.checks)
    assert r.statistics["latency"]["test"] == "mann-whitney-u" and r.statistics["errors"]["test"] == "two-proportion-z"


def test_last_step_completes():
    r = run(healthy("c"), healthy("s", 2000), canary_percent=50)
    assert (r.verdict, r.to_percent) == (COMPLETE, 100)
    assert r.reason.endswith("the release takes all traffic")


def test_bake_time_not_elapsed_holds():
    r = run(healthy("c"), healthy("s", 2000), started=NOW - dt.timedelta(minutes=4))
    assert r.verdict == HOLD and not r.inconclusive
    assert r.reason == "baking: 4 of 10 min baked"


def test_skip_bake_advances_at_once():
    r = run(healthy("c"), healthy("s", 2000), started=NOW - dt.timedelta(minutes=1), skip=True)
    assert r.verdict == ADVANCE


def test_error_spike_rolls_back_even_while_baking():
    canary = series("c", [100] * 10, [5] * 10, [800.0] * 10)
    r = run(canary, healthy("s", 2000), started=NOW - dt.timedelta(minutes=6))
    assert (r.verdict, r.to_percent) == (ROLLBACK, 0)
    assert r.reason.startswith("error rate 5.00% > 2.00%")
    assert r.checks[0].ok is False and r.checks[0].value == pytest.approx(0.05)


def test_latency_over_threshold_rolls_back():
    canary = series("c", [100] * 10, [0] * 10, [2600.0] * 10)
    r = run(canary, healthy("s", 2000))
    assert r.verdict == ROLLBACK
    assert "p99 latency 2600 ms > 2000 ms" in r.reason


def test_latency_regression_against_stable_rolls_back_below_the_static_threshold():
    canary = series("c", [100] * 10, [0] * 10, [1500.0 + i for i in range(10)])
    r = run(canary, healthy("s", 2000, lat=800.0))
    assert r.verdict == ROLLBACK
    assert r.reason.startswith("latency regression vs stable (median 1504 ms vs 810 ms, Mann-Whitney p=")
    assert r.statistics["latency"]["p_value"] < 0.05


def test_small_significant_latency_difference_within_tolerance_passes():
    canary = series("c", [100] * 10, [0] * 10, [840.0 + i for i in range(10)])
    stable = series("s", [2000] * 10, [0] * 10, [800.0 + i for i in range(10)])
    r = run(canary, stable)
    assert r.statistics["latency"]["significant"] and not r.statistics["latency"]["regression"]
    assert r.verdict == ADVANCE


def test_error_regression_against_stable_rolls_back_below_the_static_threshold():
    canary = series("c", [1000] * 10, [15] * 10, [800.0] * 10)  # 1.5% < 2% threshold
    stable = series("s", [5000] * 10, [5] * 10, [800.0] * 10)   # 0.1%
    r = run(canary, stable)
    assert r.verdict == ROLLBACK
    assert r.reason.startswith("error regression vs stable (1.50% vs 0.10%, two-proportion p=")


def test_too_few_requests_is_inconclusive_and_holds():
    canary = series("c", [3] * 10, [0] * 10, [800.0] * 10)
    r = run(canary, healthy("s", 2000))
    assert r.verdict == HOLD and r.inconclusive
    assert r.reason == "inconclusive (1 of 3): not enough canary data (30 requests in 10 min; need 50 in 3 min)"


def test_no_data_is_inconclusive_never_a_pass():
    r = run(None, None)
    assert r.verdict == HOLD and r.inconclusive
    assert all(c.ok is None for c in r.checks)


def test_no_stable_baseline_is_inconclusive():
    r = run(healthy("c"), None)
    assert r.verdict == HOLD and r.inconclusive
    assert "no stable baseline to compare with (0 requests in 0 min)" in r.reason


def test_too_many_consecutive_inconclusive_rolls_back():
    r = run(None, None, streak=2)
    assert (r.verdict, r.to_percent) == (ROLLBACK, 0)
    assert r.reason.startswith("inconclusive 3 times in a row (limit 3): not enough canary data")


def test_window_starts_at_the_step_start():
    bad_then_good = series("c", [100] * 10, [20] * 5 + [0] * 5, [800.0] * 10)
    r = run(bad_then_good, healthy("s", 2000), started=NOW - dt.timedelta(minutes=5), bake_minutes=5)
    assert r.verdict == ADVANCE  # the errors happened at the previous step
    assert r.window["canary_requests"] == 500


def test_unknown_step_start_needs_a_full_window_of_canary_data():
    short = series("c", [0] * 4 + [100] * 6, [0] * 10, [None] * 4 + [800.0] * 6)
    r = run(short, healthy("s", 2000), started=None)
    assert r.verdict == HOLD and r.reason == "baking: step start unknown; canary served 6 of 10 min"


def test_next_step():
    assert next_step([5, 25, 50, 100], 5) == 25
    assert next_step([5, 25, 50, 100], 30) == 50
    assert next_step([10, 100], 100) == 100


def test_a_missing_error_count_is_missing_data_not_zero_errors():
    """Minutes whose error count is null do not count as minutes with 0 errors."""
    canary = series("c", [100] * 10, [None] * 8 + [0, 0], [800.0] * 10)
    r = run(canary, healthy("s", 2000))
    assert r.verdict == HOLD and r.inconclusive
    assert r.reason == "inconclusive (1 of 3): not enough canary data (200 requests in 2 min; need 50 in 3 min)"
