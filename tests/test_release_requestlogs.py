"""The canary judge's fresh error signal: failed requests read from Cloud Run's request logs
(agentstage.release.requestlogs) with the real google-cloud-logging client against the local
Logging server of tests/logging_fake.py, merged after Cloud Monitoring's newest minute
(analysis.with_request_logs) and used by the state machine to roll back sooner, never to
advance."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import grpc
import numpy as np
import pytest

from agentstage.ops.logs import LoggingError, logging_client
from agentstage.release.analysis import HOLD, ROLLBACK, with_request_logs
from agentstage.release.requestlogs import GRACE, RequestLogFailures, RequestLogSource, failed_requests_filter
from agentstage.release.state import AWAITING_DEPLOY, BAKING, CanaryState, Observation, decide
from tests.logging_fake import entry
from tests.test_release_analysis import T0, at, baking_since, series, spec, state

C, S = "c", "s"


def logged(per_minute: dict[str, dict[int, int]], start: dt.datetime = T0, end: dt.datetime | None = None):
    """Request-log failures: revision -> {minute index (the minute ending at T0 + i + 1): count},
    spread over the minute."""
    times = {}
    for rev, minutes in per_minute.items():
        stamps = []
        for i, n in minutes.items():
            base = (T0 + dt.timedelta(minutes=i)).timestamp()
            stamps += [base + (k + 0.5) * 60 / n for k in range(n)]
        times[rev] = np.asarray(stamps)
    return RequestLogFailures(start, end or at(6), times)


def monitoring(minutes: int, c_rate: float = 0.01, s_rate: float = 0.01):
    """Both revisions' Monitoring minutes: a 5% canary (120 a minute) and stable (2,280)."""
    return series(C, minutes, 120, c_rate), series(S, minutes, 2280, s_rate)


def matching(minutes: int, c_per_min: float, s_per_min: float, extra: dict[str, dict[int, int]]):
    """Logs that hold Monitoring's failures for its minutes, plus ``extra``."""
    out = {C: {i: round(c_per_min) for i in range(minutes)}, S: {i: round(s_per_min) for i in range(minutes)}}
    for rev, more in extra.items():
        out[rev].update(more)
    return out


# --- merging ------------------------------------------------------------------------------------


def test_the_minutes_monitoring_has_not_shown_are_added_from_the_logs_on_its_grid():
    c, s = monitoring(4)  # minutes ending 12:01..12:04
    logs = logged(matching(4, 1.2, 22.8, {C: {4: 3, 5: 2}, S: {4: 1, 5: 0}}))
    merged = with_request_logs(c, s, logs, canary_revision=C, stable_revision=S, share=0.05, since=T0)
    cx, sx, note = merged
    assert cx.ends[4:] == [at(5), at(6)] and sx.ends[4:] == [at(5), at(6)]
    assert list(cx.bad[4:]) == [3, 2] and list(sx.bad[4:]) == [1, 0]
    # the traffic of Monitoring's newest minutes, split by the live share
    assert list(cx.requests[4:]) == pytest.approx([120, 120]) and list(sx.requests[4:]) == pytest.approx([2280, 2280])
    assert np.isnan(cx.memory[4:]).all() and np.isnan(cx.latency[4:]).all()
    assert note == (
        "+2 min from Cloud Run request logs through 12:06Z (Cloud Monitoring through 12:04Z): "
        "5 canary and 1 stable failures"
    )


def test_a_minute_begun_before_the_split_was_live_is_left_out():
    c, s = monitoring(4)
    logs = logged(matching(4, 1.2, 22.8, {C: {4: 3, 5: 2}}))
    cx, _, note = with_request_logs(
        c, s, logs, canary_revision=C, stable_revision=S, share=0.05, since=T0 + dt.timedelta(minutes=4, seconds=30)
    )
    assert cx.ends[4:] == [at(6)] and list(cx.bad[4:]) == [2]
    assert note.startswith("+1 min from Cloud Run request logs through 12:06Z")


def test_only_whole_minutes_the_logs_cover_are_added():
    c, s = monitoring(4)
    logs = logged(matching(4, 1.2, 22.8, {C: {4: 3}}), end=at(5) - dt.timedelta(seconds=1))
    assert with_request_logs(c, s, logs, canary_revision=C, stable_revision=S, share=0.05, since=T0) == (
        "no whole minute in the request logs past Cloud Monitoring's newest (12:04Z)"
    )


def test_without_a_monitoring_minute_the_traffic_cannot_be_sized():
    logs = logged({C: {0: 3}})
    assert with_request_logs(None, None, logs, canary_revision=C, stable_revision=S, share=0.05, since=T0) == (
        "no Cloud Monitoring minute yet to size the traffic with"
    )


def test_logs_missing_the_failures_monitoring_counted_are_not_used():
    """A project that excludes request logs from its buckets shows no failures: never read as a
    healthy canary's minutes."""
    c, s = monitoring(4)
    logs = logged({C: {4: 0}, S: {0: 3}})
    assert with_request_logs(c, s, logs, canary_revision=C, stable_revision=S, share=0.05, since=T0) == (
        "the request logs hold 3 failed requests where Cloud Monitoring counted 96 (since 12:00Z): are request "
        "logs excluded or sampled? judged on Monitoring alone"
    )


# --- the state machine --------------------------------------------------------------------------


def obs_with(minute: float, c, s, logs, matches: bool = True) -> Observation:
    return Observation(
        at(minute), matches, {C: 5}, "test", c, s, request_logs=logs, canary_revision=C, stable_revision=S
    )


def test_a_failing_canary_is_rolled_back_on_the_minutes_only_the_logs_show_yet():
    """4x the failures: three minutes of Monitoring are not enough evidence (180x of the 500x
    that rolls back), the two minutes the logs add are."""
    c, s = monitoring(3, c_rate=0.04)
    logs = logged(matching(3, 4.8, 22.8, {C: {3: 5, 4: 5}, S: {3: 23, 4: 23}}), end=at(5))
    st = baking_since(0.5)
    _, alone = decide(st, spec(), obs_with(5.4, c, s, None))
    assert alone.verdict == HOLD
    new, r = decide(st, spec(), obs_with(5.4, c, s, logs))
    assert (r.verdict, new.percent) == (ROLLBACK, 0)
    assert r.reason.startswith("more failed requests than stable: canary 4.07% of 600 requests vs stable 1.00%")
    assert r.reason.endswith(
        "(+2 min from Cloud Run request logs through 12:05Z (Cloud Monitoring through 12:03Z): "
        "10 canary and 46 stable failures)"
    )
    assert r.window["request_logs"].startswith("+2 min from Cloud Run request logs")


def test_a_healthy_canary_holds_and_the_record_says_what_the_logs_added():
    c, s = monitoring(3)
    logs = logged(matching(5, 1.2, 22.8, {}), end=at(5))
    _, r = decide(baking_since(0.5), spec(), obs_with(5.4, c, s, logs))
    assert r.verdict == HOLD and not any(c.ok is False for c in r.checks)
    assert r.window["request_logs"] == (
        "+2 min from Cloud Run request logs through 12:05Z (Cloud Monitoring through 12:03Z): "
        "2 canary and 46 stable failures"
    )


def test_the_logs_never_advance_a_step_whose_last_minutes_monitoring_has_not_shown():
    c, s = series(C, 8, 120, 0.01, start=12), series(S, 8, 2280, 0.01, start=12)
    logs = RequestLogFailures(
        at(14), at(22), {C: np.zeros(0), S: np.asarray([at(m).timestamp() for m in range(14, 22)])}
    )
    st, r = decide(baking_since(12), spec(), obs_with(22.4, c, s, logs))
    assert (r.verdict, st.phase) == (HOLD, BAKING)
    assert "waiting for the metrics of the step's last minutes" in r.reason


def test_logs_that_could_not_be_read_are_recorded_and_change_nothing():
    c, s = monitoring(3)
    _, r = decide(baking_since(0.5), spec(), obs_with(5.4, c, s, "Cloud Logging, project p: denied"))
    assert r.verdict == HOLD and r.window["request_logs"] == "not read: Cloud Logging, project p: denied"


def test_after_the_split_left_the_config_the_logs_count_only_from_the_steps_start():
    st = baking_since(0.5)
    st, _ = decide(st, spec(), obs_with(1.5, *monitoring(0), None, matches=False))  # someone moved the split
    assert st.phase == AWAITING_DEPLOY and st.split_moved
    st, _ = decide(st, spec(), obs_with(2.4, *monitoring(0), None))  # live again at 12:02:24
    assert st.phase == BAKING
    c, s = monitoring(2)  # Monitoring through 12:02
    logs = logged(matching(6, 1.2, 22.8, {}), end=at(6))
    _, r = decide(st, spec(), obs_with(6.4, c, s, logs))
    # the minute 12:02-12:03 began after the config was written back (12:01:30) but before the
    # split was seen live again (12:02:24): its share is unknown, so it is left out
    assert r.window["request_logs"].startswith("+3 min from Cloud Run request logs through 12:06Z")
    _, r = decide(replace(st, split_moved=False), spec(), obs_with(6.4, c, s, logs))
    assert r.window["request_logs"].startswith("+4 min from Cloud Run request logs through 12:06Z")
    fresh = CanaryState.from_json(st.to_json())
    assert fresh.split_moved and fresh == st


def test_the_logs_are_not_used_after_100_percent_or_while_waiting_for_a_deploy():
    c, s = monitoring(3)
    logs = logged(matching(5, 1.2, 22.8, {}), end=at(5))
    _, r = decide(state(5, AWAITING_DEPLOY, rollout_start=T0), spec(), obs_with(5.4, c, s, logs, matches=False))
    assert r.window["request_logs"] == "not used: only while a step bakes at its live split"


# --- reading the logs -----------------------------------------------------------------------------


PROJECT, REGION, SERVICE = "acme-agents-prod", "us-central1", "support-bot"


@pytest.fixture
def fake(logging_server):
    fake, port = logging_server
    fake.requests.clear()
    fake.fail = None
    fake.stalls = 0
    return fake, logging_client(f"127.0.0.1:{port}")


def _entries(now: dt.datetime):
    def req(rev: str, seconds_ago: float, status: int, i: int):
        when = now - dt.timedelta(seconds=seconds_ago)
        return entry(PROJECT, SERVICE, rev, when, insert_id=f"e{i}", status=status, severity="ERROR")

    return [
        req(C, 90, 503, 1),
        req(C, 80, 429, 2),
        req(C, 70, 200, 3),  # served
        req(S, 60, 500, 4),
        req("other", 60, 500, 5),  # a revision not judged
        req(C, 10, 500, 6),  # within the grace: not read yet
        req(C, 700, 500, 7),  # before the lookback
        entry(PROJECT, SERVICE, C, now - dt.timedelta(seconds=50), insert_id="e8", severity="ERROR", text="boom"),
        entry(PROJECT, "another-service", C, now - dt.timedelta(seconds=50), insert_id="e9", status=500),
    ]


def test_the_source_counts_each_revisions_failed_requests_with_one_filter(fake):
    fake_log, client = fake
    now = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
    fake_log.entries = _entries(now)
    got = RequestLogSource(PROJECT, REGION, client=client).fetch(SERVICE, [C, S], now)
    assert (got.start, got.end) == (now - dt.timedelta(minutes=10), now - GRACE)
    assert sorted(now.timestamp() - t for t in got.times[C]) == [80, 90]
    assert [now.timestamp() - t for t in got.times[S]] == [60]
    assert not got.truncated
    (request,) = fake_log.requests
    assert request.filter == failed_requests_filter(PROJECT, REGION, SERVICE, got.start, got.end)
    assert request.filter == (
        'resource.type = "cloud_run_revision" AND resource.labels.service_name = "support-bot" AND '
        'resource.labels.location = "us-central1" AND '
        'logName = "projects/acme-agents-prod/logs/run.googleapis.com%2Frequests" AND '
        'timestamp >= "2026-06-01T09:20:00.000000Z" AND timestamp < "2026-06-01T09:29:40.000000Z" AND '
        "(httpRequest.status >= 500 OR httpRequest.status = 429)"
    )
    assert request.order_by == "timestamp asc" and list(request.resource_names) == [f"projects/{PROJECT}"]


def test_every_canary_in_flight_is_read_with_one_listing(fake):
    fake_log, client = fake
    now = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
    fake_log.entries = _entries(now)
    got = RequestLogSource(PROJECT, REGION, client=client).fetch_all({SERVICE: [C, S], "another-service": [C]}, now)
    assert len(got[SERVICE].times[C]) == 2 and len(got[SERVICE].times[S]) == 1
    assert [now.timestamp() - t for t in got["another-service"].times[C]] == [50]
    (request,) = fake_log.requests
    assert 'resource.labels.service_name = ("another-service" OR "support-bot") AND ' in request.filter


def test_the_source_reads_from_the_rollouts_start_when_later_and_marks_a_truncated_read(fake):
    fake_log, client = fake
    now = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
    fake_log.entries = _entries(now)
    got = RequestLogSource(PROJECT, REGION, client=client, max_entries=2).fetch(
        SERVICE, [C, S], now, since=now - dt.timedelta(seconds=85)
    )
    assert got.start == now - dt.timedelta(seconds=85)
    assert got.truncated and len(got.times[C]) + len(got.times[S]) == 2


def test_a_refusal_of_the_logging_api_is_an_error_that_names_the_project(fake):
    fake_log, client = fake
    fake_log.fail = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(LoggingError) as err:
        RequestLogSource(PROJECT, REGION, client=client).fetch(SERVICE, [C, S], dt.datetime.now(dt.timezone.utc))
    assert str(err.value) == "Cloud Logging, project acme-agents-prod: The caller does not have permission"


# --- the release flow -----------------------------------------------------------------------------


def test_rollout_rolls_a_canary_back_on_the_failures_its_request_logs_show_first(project, fake, tmp_path):
    """The whole look: Monitoring (a metrics file whose last minute ended 3 minutes ago, as Cloud
    Monitoring's lag leaves it) shows a healthy canary; the request logs of the two minutes after
    show it failing. The look rolls it back, and the ledger's record says where the minutes came
    from."""
    import json

    from agentstage.release import flow
    from agentstage.release.ledger import Ledger
    from agentstage.release.metrics import FileSource
    from tests.test_release_flow import DATA, Clock, agent_cfg

    fake_log, client = fake
    clock = Clock(T0)
    spec0 = flow.load_state(project, "production").spec
    logs = RequestLogSource(spec0.project, spec0.region, client=client)
    healthy = json.loads((DATA / "metrics-healthy.json").read_text())
    first = flow.rollout_once(
        project,
        "production",
        FileSource(DATA / "metrics-healthy.json", clock=clock),
        clock=clock,
        assume_deployed=True,
        request_logs=logs,
    )
    (a,) = first.analyses
    assert a.verdict == HOLD and a.phase == BAKING
    canary, stable = a.window["canary_revision"], a.window["stable_revision"]

    clock.advance(6.5)  # 12:06:30: the file's 10 minutes end at 12:-2:30 ... 12:06:30
    revs = {
        name: {**data, **{k: data[k][:6] + [None] * 4 for k in ("requests", "errors", "throttled")}}
        for name, data in healthy["revisions"].items()
    }  # Monitoring has not shown the last 4 minutes yet: its newest ends 12:02:30
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({**healthy, "revisions": revs}))
    rows = healthy["revisions"]
    fake_log.entries = []
    n = 0

    def fail(rev: str, minute_end: dt.datetime, count: int) -> None:
        nonlocal n
        for k in range(count):
            n += 1
            when = minute_end - dt.timedelta(seconds=55 - k * 50 / max(count, 1))
            fake_log.entries.append(entry(spec0.project, "support-bot", rev, when, insert_id=f"f{n}", status=503))

    def ending(i: int) -> dt.datetime:  # the file's minute i
        return clock() - dt.timedelta(minutes=9 - i)

    for i in (4, 5):  # the minutes both sources cover (since 12:00) hold the same failures
        fail(canary, ending(i), rows["support-bot-1-4-0"]["errors"][i])
        fail(stable, ending(i), rows["support-bot-1-3-2"]["errors"][i])
    for i in (6, 7, 8, 9):  # then the canary fails a quarter of its requests
        fail(canary, ending(i), 30)
        fail(stable, ending(i), 8)

    change = flow.rollout_once(
        project, "production", FileSource(path, clock=clock), clock=clock, assume_deployed=True, request_logs=logs
    )
    (a,) = change.analyses
    assert a.verdict == ROLLBACK and change.wrote, (a.reason, a.window)
    assert agent_cfg(project, "production")["rollout"]["canary_percent"] == 0
    assert (
        "(+3 min from Cloud Run request logs through 12:05:30Z (Cloud Monitoring through 12:02:30Z): "
        "90 canary and 24 stable failures)" in a.reason
    )
    (request,) = fake_log.requests[1:]  # one listing per look
    assert 'resource.labels.service_name = "support-bot"' in request.filter
    record = Ledger(project, "production").decisions("support-bot")[-1]
    assert record["action"] == "rollback" and "Cloud Run request logs" in record["reason"]
    # what the on-call reads: the decision as `rollout` prints it
    from rich.console import Console

    from agentstage.release.render import render_change

    console = Console(record=True, width=300)
    render_change(change, console)
    assert (
        "  request logs: +3 min from Cloud Run request logs through 12:05:30Z (Cloud Monitoring through "
        "12:02:30Z): 90 canary and 24 stable failures\n" in console.export_text()
    )
