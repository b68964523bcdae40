"""How often the canary judge is right: whole rollouts simulated minute by minute.

Each run simulates one Cloud Run service with a stable and a candidate revision and drives
the real release state machine (``agentstage.release.state.decide``, which runs the real
judge) once a minute through a whole 5 -> 25 -> 50 -> 100% rollout and its post-promotion
watch, with the reference production settings.

The world (per minute):
- requests: Poisson at the rate; each goes to the canary with its *live* share of traffic;
- failures (5xx + 429): binomial at 1% x a shared per-minute multiplier (lognormal, sd 0.5:
  a slow model API hurts both revisions), plus per-revision bursts (1% of minutes: 10% of that
  minute's requests fail, an instance crash);
- latency: lognormal per request, median 400 ms, sd 0.5 (log), times a shared per-minute
  factor (lognormal, sd 0.15), bucketed like Cloud Run (1.25x buckets);
- memory: highest instance utilisation, 50% + 0.4% per request in flight per instance
  (10 req/s per instance) + AR(1) noise (sd 0.5%, rho 0.7); a leak adds utilisation in
  proportion to the requests each instance served;
- the live split follows the config after a deploy lag (1 min, or 12 in that scenario);
  Cloud Monitoring data arrives 2 minutes late and 2% of minutes are missing;
- Cloud Run's request logs hold every failed request (its revision and the second it came in);
  the judge looks once a minute, ``GRACE`` (20 s) after a minute ends, and reads the failures
  logged up to the end of that minute (``--monitoring-only``: it reads Monitoring alone).

Scenarios: a healthy canary (identical to stable); failures x1.25 (exactly the tolerated
regression, the edge of the error checks' H0: its rollback rate measures their calibration,
run as many times as the healthy ones); failures x2 and x5; latency +20% and
+100%; failures on 1% and 10% of inputs; a canary that fails only at >= 50% of the traffic
(15% of its requests: it runs out of capacity), also with a 12-minute deploy lag; a slow
memory leak (it would reach the limit about 2.7 h after 100% at 20 req/s).

Printed per rate (2, 20, 200 req/s): the rate of rollbacks (with a Wilson 95% interval and
the number of runs), when they happened (before the canary's *live* share reached 100%, or
after: during the watch), and the median minutes from the end of the first minute the bad
canary served in to the look that rolled it back.

Run: .venv/bin/python bench/canary.py [--runs N] [--healthy-runs N] [--jobs 2] [--seed S] [--monitoring-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone.utc)
MAX_MINUTES = 360
MONITORING_LAG = 2
MISSING = 0.02
BASE_ERRORS = 0.01
MEDIAN_MS, SIGMA = 400.0, 0.5
PER_INSTANCE = 10.0  # requests/s one instance takes before Cloud Run adds another
REQUEST_LOGS = True  # the judge also reads failed requests from the request logs


@dataclass(frozen=True)
class Scenario:
    name: str
    error_factor: float = 1.0
    latency_factor: float = 1.0
    input_failures: float = 0.0
    fails_from: int | None = None  # the canary fails (15%) once its live share is >= this percent
    deploy_lag: int = 1
    leak_per_request: float = 0.0  # utilisation added per request an instance serves
    #: what the judge should do: "complete" or "rollback"; "boundary": a canary exactly at the
    #: tolerated regression (H0's edge), whose rollback rate measures the judge's calibration
    expect: str = "rollback"


LEAK = 0.15 / 3600 / PER_INSTANCE  # +15% per hour at 10 req/s per instance
SCENARIOS = [
    Scenario("healthy", expect="complete"),
    Scenario("healthy, 12-min deploy lag", deploy_lag=12, expect="complete"),
    Scenario("failures x1.25 (H0 boundary)", error_factor=1.25, expect="boundary"),
    Scenario("failures x2", error_factor=2),
    Scenario("failures x5", error_factor=5),
    Scenario("latency +20%", latency_factor=1.2),
    Scenario("latency +100%", latency_factor=2.0),
    Scenario("fails on 1% of inputs", input_failures=0.01),
    Scenario("fails on 10% of inputs", input_failures=0.10),
    Scenario("fails only at 50%", fails_from=50),
    Scenario("fails only at 50%, 12-min lag", fails_from=50, deploy_lag=12),
    Scenario("slow memory leak", leak_per_request=LEAK),
]


def _spec():
    from components.spec import AgentSpec
    from tests.conftest import load_stack

    raw = load_stack("production")["agent-platform:agents"]["support-bot"]
    return AgentSpec.model_validate(raw)


@dataclass
class Outcome:
    verdict: str  # complete | rollback | paused | unfinished
    minute: float  # when the run ended (the look's time, in minutes since the rollout began)
    percent: int  # the config's canary percent when it ended (0 after a rollback: the percent before it)
    phase: str  # phase when it ended (watching -> rolled back during the watch)
    bad_since: int | None  # first minute the canary was worse than stable
    reason: str = ""
    live: int = 0  # the canary's live share of traffic when it ended


def simulate(scenario: Scenario, rate: float, seed: int, spec=None) -> Outcome:
    from scipy.stats import norm

    from agentstage.release.metrics import DEFAULT_BOUNDS_MS, Series
    from agentstage.release.requestlogs import GRACE, LOOKBACK, RequestLogFailures
    from agentstage.release.state import AWAITING_DEPLOY, PAUSED, CanaryState, Observation, decide

    spec = spec or _spec()
    rng = np.random.default_rng(seed)
    bounds = np.asarray(DEFAULT_BOUNDS_MS)
    log_bounds = np.log(bounds)

    def latency_row(n: int, median: float) -> np.ndarray:
        cdf = norm.cdf((log_bounds - math.log(median)) / SIGMA)
        probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        return rng.multinomial(n, probs / probs.sum()).astype(float)

    cols = {rev: {"req": [], "bad": [], "lat": [], "mem": [], "ends": [], "logged": []} for rev in ("canary", "stable")}
    look = GRACE.total_seconds() / 60  # minutes past the minute's end each look happens
    mem_noise = {"canary": 0.0, "stable": 0.0}
    leaked = 0.0
    state = CanaryState("support-bot", "1.4.0", "1.3.2", spec.rollout.steps[0], AWAITING_DEPLOY, T0)
    desired_history = [(0, state.percent)]  # (minute written, percent)
    live_share = 0
    bad_since = None
    last_phase = state.phase
    last_percent = state.percent
    for minute in range(1, MAX_MINUTES + 1):
        ended = T0 + dt.timedelta(minutes=minute)
        now = ended + GRACE
        # the live split: the last config written at least deploy_lag minutes ago
        live_share = 0
        for written, pct in desired_history:
            if minute - written > scenario.deploy_lag or (written == 0 and minute > scenario.deploy_lag):
                live_share = pct
        total = rng.poisson(rate * 60)
        n_c = rng.binomial(total, live_share / 100)
        n_s = total - n_c
        shared = math.exp(rng.normal(0, 0.5) - 0.125)
        lat_shared = math.exp(rng.normal(0, 0.15))
        canary_bad = (
            scenario.error_factor != 1
            or scenario.input_failures
            or scenario.latency_factor != 1
            or scenario.leak_per_request
            or (scenario.fails_from is not None and live_share >= scenario.fails_from)
        )
        if canary_bad and bad_since is None and n_c > 0:
            bad_since = minute
        for rev, n in (("canary", n_c), ("stable", n_s)):
            p = BASE_ERRORS * shared
            median = MEDIAN_MS * lat_shared
            if rev == "canary":
                p = p * scenario.error_factor + scenario.input_failures
                median *= scenario.latency_factor
                if scenario.fails_from is not None and live_share >= scenario.fails_from:
                    p += 0.15
            if rng.random() < 0.01:
                p += 0.10
            bad = rng.binomial(n, min(p, 1.0)) if n else 0
            rps = n / 60
            instances = max(1, math.ceil(rps / PER_INSTANCE))
            in_flight = rps / instances * median / 1000
            mem_noise[rev] = 0.7 * mem_noise[rev] + rng.normal(0, 0.005)
            mem = 0.5 + 0.004 * in_flight + mem_noise[rev]
            if rev == "canary":
                leaked += scenario.leak_per_request * n / instances
                mem += leaked
            c = cols[rev]
            c["ends"].append(ended)
            # the request log: the second each failure came in
            c["logged"].append(ended.timestamp() - 60 + rng.random(bad) * 60 if bad else np.zeros(0))
            missing = rng.random() < MISSING
            c["req"].append(None if missing else float(n))
            c["bad"].append(None if missing else float(bad))
            c["lat"].append(None if missing or n == 0 else latency_row(n, median))
            c["mem"].append(None if missing or n == 0 else min(mem, 1.0))
        # what Monitoring shows now: everything but the last MONITORING_LAG minutes
        seen = len(cols["canary"]["ends"]) - MONITORING_LAG
        series = {}
        for rev in ("canary", "stable"):
            c = cols[rev]
            series[rev] = (
                Series.build(
                    rev,
                    c["ends"][:seen],
                    requests=c["req"][:seen],
                    errors=c["bad"][:seen],
                    throttled=[0.0] * seen,
                    latency=c["lat"][:seen],
                    bounds=bounds,
                    memory=c["mem"][:seen],
                )
                if seen > 0
                else None
            )
        logs = None
        if REQUEST_LOGS:
            start, first = now - LOOKBACK, max(0, minute - int(LOOKBACK.total_seconds() // 60))
            logs = RequestLogFailures(
                start,
                now - GRACE,
                {rev: np.concatenate(cols[rev]["logged"][first:]) for rev in ("canary", "stable")},
            )
        desired = state.percent
        obs = Observation(
            now,
            live_matches=live_share == desired,
            live={"canary": live_share},
            live_source="simulated",
            canary=series["canary"],
            stable=series["stable"],
            request_logs=logs,
            canary_revision="canary",
            stable_revision="stable",
        )
        last_phase, last_percent = state.phase, state.percent
        state, result = decide(state, spec, obs)
        if result.verdict in ("advance", "rollback") and state.percent != desired:
            desired_history.append((minute, state.percent))
        if result.verdict == "rollback":
            return Outcome("rollback", minute + look, last_percent, last_phase, bad_since, result.reason, live_share)
        if result.verdict == "complete":
            return Outcome("complete", minute + look, 100, last_phase, bad_since)
        if state.phase == PAUSED:
            return Outcome("paused", minute + look, state.percent, state.phase, bad_since)
    return Outcome("unfinished", MAX_MINUTES, state.percent, state.phase, bad_since)


def _batch(args: tuple[Scenario, float, list[int], bool]) -> list[Outcome]:
    global REQUEST_LOGS
    scenario, rate, seeds, REQUEST_LOGS = args
    spec = _spec()
    return [simulate(scenario, rate, s, spec) for s in seeds]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def run(
    runs: int,
    healthy_runs: int,
    jobs: int,
    seed: int,
    rates: list[float],
    scenarios: list[Scenario],
    request_logs: bool = True,
) -> list[dict]:
    tasks = []
    for si, sc in enumerate(scenarios):
        n = healthy_runs if sc.expect in ("complete", "boundary") else runs
        for rate in rates:
            seeds = [seed * 1_000_003 + si * 10_007 + int(rate * 13) * 101 + i for i in range(n)]
            chunk = max(1, math.ceil(n / (jobs * 4)))
            for i in range(0, n, chunk):
                tasks.append((sc, rate, seeds[i : i + chunk], request_logs))
    results: dict[tuple[str, float], list[Outcome]] = {}
    done = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for (sc, rate, _, _), outcomes in zip(tasks, pool.map(_batch, tasks)):
            results.setdefault((sc.name, rate), []).extend(outcomes)
            done += 1
            print(f"\r  simulated {done}/{len(tasks)} batches", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    rows = []
    for sc in scenarios:
        for rate in rates:
            outs = results[(sc.name, rate)]
            n = len(outs)
            rolled = [o for o in outs if o.verdict == "rollback"]
            # before the canary took 100% of the traffic: by the live split, not the config (a
            # rollback decided while the config asks for 100% but 50% is still live is before)
            before = [o for o in rolled if o.live < 100]
            watch = [o for o in rolled if o.live >= 100]
            paused = sum(o.verdict == "paused" for o in outs)
            unfinished = sum(o.verdict == "unfinished" for o in outs)
            ttr = [o.minute - o.bad_since for o in rolled if o.bad_since is not None]
            rows.append(
                {
                    "scenario": sc.name,
                    "rate": rate,
                    "runs": n,
                    "expect": sc.expect,
                    "rolled_back": len(rolled),
                    "before_100": len(before),
                    "in_watch": len(watch),
                    "paused": paused,
                    "unfinished": unfinished,
                    "median_minutes_to_rollback": float(np.median(ttr)) if ttr else None,
                    "median_minutes": float(np.median([o.minute for o in outs])),
                }
            )
    return rows


def report(rows: list[dict]) -> None:
    print(
        f"{'scenario':32} {'req/s':>6} {'runs':>5}  {'rolled back (95% CI)':>24} {'before 100%':>12} "
        f"{'in watch':>9} {'paused':>7} {'median min to rollback':>23} {'median run min':>15}"
    )
    for r in rows:
        k, n = r["rolled_back"], r["runs"]
        lo, hi = wilson(k, n)
        ttr = "" if r["median_minutes_to_rollback"] is None else f"{r['median_minutes_to_rollback']:.1f}"
        print(
            f"{r['scenario']:32} {r['rate']:>6g} {n:>5}  {k / n:>8.1%} ({lo:5.1%}-{hi:5.1%}) "
            f"{r['before_100'] / n:>12.1%} {r['in_watch'] / n:>9.1%} {r['paused'] / n:>7.1%} {ttr:>23} "
            f"{r['median_minutes']:>15.0f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="runs per faulty scenario and rate (default 100)")
    ap.add_argument("--healthy-runs", type=int, default=600, help="runs per healthy scenario and rate (default 600)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rates", default="2,20,200", help="request rates, req/s (default 2,20,200)")
    ap.add_argument("--scenario", action="append", help="only these scenarios (repeatable, by name)")
    ap.add_argument(
        "--monitoring-only", action="store_true", help="the judge reads Cloud Monitoring alone (no request logs)"
    )
    args = ap.parse_args()
    scenarios = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    rates = [float(r) for r in args.rates.split(",")]
    started = time.perf_counter()
    rows = run(args.runs, args.healthy_runs, args.jobs, args.seed, rates, scenarios, not args.monitoring_only)
    report(rows)
    print(
        f"\n{sum(r['runs'] for r in rows)} simulated rollouts in {time.perf_counter() - started:.0f} s "
        f"({args.jobs} processes)"
    )


if __name__ == "__main__":
    main()


def synthetic_file(revisions: dict[str, dict], minutes: int = 10, seed: int = 7) -> dict:
    """A metrics file (docs/release.md format) drawn from the same world as the simulation:
    ``revisions`` maps a revision to {"per_minute": requests, "errors": ratio, "median_ms": ms,
    "memory": utilisation}. Used to make the example and test files."""
    from scipy.stats import norm

    from agentstage.release.metrics import DEFAULT_BOUNDS_MS

    rng = np.random.default_rng(seed)
    log_bounds = np.log(np.asarray(DEFAULT_BOUNDS_MS))
    out: dict = {"interval_seconds": 60, "revisions": {}}
    for name, r in revisions.items():
        cdf = norm.cdf((log_bounds - math.log(r["median_ms"])) / SIGMA)
        probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        req = [int(rng.poisson(r["per_minute"])) for _ in range(minutes)]
        out["revisions"][name] = {
            "requests": req,
            "errors": [int(rng.binomial(n, r["errors"])) for n in req],
            "throttled": [0] * minutes,
            "latency_ms": [rng.multinomial(n, probs / probs.sum()).tolist() for n in req],
            "memory_utilization": [round(r.get("memory", 0.5) + float(rng.normal(0, 0.004)), 4) for _ in req],
        }
    return out
